"""One simulated chat call: the request read as the API reads it, and its answer as a JSON body or SSE events."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterator, NamedTuple, Sequence

from .values import IMAGE_TOKENS, MODELS, TOKENS_PER_MESSAGE, SimError, Usage, dumps


CHUNK_WORDS = ("lorem ", "ipsum ", "dolor ", "sit ")  # one token each; one content chunk
CHUNK_TEXT = "".join(CHUNK_WORDS)
THOUGHT_WORD = "thinking "
MAX_THOUGHT_TOKENS = 64  # reasoning text is a summary: its tokens are counted, not all shown
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChatPlan:
    """One successful call's answer, rendered as a JSON payload or as SSE events."""

    id: str
    created: int
    model: str
    usage: Usage
    finish_reason: str
    include_thoughts: bool
    credits_consumed: Decimal
    show_usage: bool = True
    show_charge: bool = True  # omit_charge: usage sent, credits_consumed not
    malformed: bool = False
    cut_after: int | None = None  # events sent before the connection breaks

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _thought_tokens(self) -> int:
        return min(self.usage.reasoning_tokens, MAX_THOUGHT_TOKENS) if self.include_thoughts else 0

    def payload(self) -> dict[str, Any]:
        full, rest = divmod(self.usage.completion_tokens, len(CHUNK_WORDS))
        message = {"role": "assistant", "content": CHUNK_TEXT * full + "".join(CHUNK_WORDS[:rest])}
        if self._thought_tokens():
            message["reasoning_content"] = THOUGHT_WORD * self._thought_tokens()
        body = {**self._head(), "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": self.finish_reason, "message": message}]}
        if self.show_usage:
            body["usage"] = self.usage.as_json()
            if self.show_charge:
                body["credits_consumed"] = self.credits_consumed
        return body

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return b"data: " + dumps({**self._head(), "choices": [choice]}) + b"\n\n"

    def events(self) -> Iterator[bytes]:
        """Role, thoughts, content (4 tokens a chunk), finish, usage, [DONE]; constant memory."""
        if self.cut_after is not None:  # broken before the usage chunk and [DONE]
            yield from itertools.islice(self._body_events(), self.cut_after)
            return
        yield from self._body_events()
        if self.show_usage:
            tail = {**self._head(), "choices": [], "usage": self.usage.as_json()}
            if self.show_charge:
                tail["credits_consumed"] = self.credits_consumed
            yield b"data: " + dumps(tail) + b"\n\n"
        yield DONE

    def _body_events(self) -> Iterator[bytes]:
        broken = self.malformed
        yield self._chunk({"role": "assistant", "content": ""})
        thoughts = self._thought_tokens()
        for start in range(0, thoughts, len(CHUNK_WORDS)):
            yield self._chunk({"reasoning_content": THOUGHT_WORD * min(len(CHUNK_WORDS), thoughts - start)})
        full, rest = divmod(self.usage.completion_tokens, len(CHUNK_WORDS))
        if full:
            chunk = self._chunk({"content": CHUNK_TEXT})  # rendered once, sent `full` times
            if broken:
                yield _truncated(chunk)
                full, broken = full - 1, False
            yield from itertools.repeat(chunk, full)
        if rest:
            yield self._chunk({"content": "".join(CHUNK_WORDS[:rest])})
        finish = self._chunk({}, self.finish_reason)
        yield _truncated(finish) if broken else finish


def _truncated(event: bytes) -> bytes:
    return event[: len(event) // 2] + b"\n\n"


def id_digits(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y%m%d%H%M%S") + f"{int(now * 1e9) % 10**9:09d}"


class ChatRequest(NamedTuple):
    model: str
    stream: bool
    prompt_tokens: int
    max_tokens: int
    effort: str
    include_thoughts: bool


def parse_request(body: Any, max_output_tokens: int) -> ChatRequest:
    """Validate a chat request the way the platform does (400, 404)."""
    if not isinstance(body, dict):
        raise SimError("invalid_request", "The body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimError("invalid_request", "'model' is required.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimError("invalid_request", "'messages' is required and must be a non-empty array.")
    stream = body.get("stream")
    stream = True if stream is None else stream  # the API streams unless told not to
    include_thoughts = body.get("include_thoughts", True)
    effort = body.get("reasoning_effort") or "high"
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    for name, value, ok in (
        ("stream", stream, isinstance(stream, bool)),
        ("include_thoughts", include_thoughts, isinstance(include_thoughts, bool)),
        ("reasoning_effort", effort, effort in ("low", "high")),
        ("max_tokens", max_tokens, max_tokens is None or (type(max_tokens) is int and max_tokens > 0)),
        ("stream_options", body.get("stream_options"), body.get("stream_options") is None
         or isinstance(body.get("stream_options"), dict)),
    ):
        if not ok:
            raise SimError("invalid_request", f"Invalid value for '{name}': {value!r}.")
    for tool in body.get("tools") or []:
        if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)
                and tool["function"].get("name") == "googleSearch"):
            raise SimError("invalid_request", "Only the googleSearch tool is supported.")
    rates = MODELS.get(model)
    if rates is None:
        raise SimError("model_not_found", f"The model '{model}' does not exist or is not active.")
    if rates.endpoint != "chat":
        raise SimError("model_not_found", f"The model '{model}' is served on /v1/{rates.endpoint}.")
    limit = min(max_tokens or max_output_tokens, max_output_tokens)
    return ChatRequest(model, stream, count_prompt_tokens(messages), limit, effort, include_thoughts)


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """About one token per four characters, a few per message, a fixed amount per media part."""
    total = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise SimError("invalid_request", f"messages[{index}] must be an object with a 'role'.")
        total += TOKENS_PER_MESSAGE
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if not isinstance(parts, list):
            raise SimError("invalid_request", f"messages[{index}].content must be a string or an array.")
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                total += -(-len(part["text"]) // 4)
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                total += IMAGE_TOKENS
            else:
                raise SimError("invalid_request", f"messages[{index}] has an unsupported content part.")
    return max(total, 1)
