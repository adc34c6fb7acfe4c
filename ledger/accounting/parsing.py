"""What the API answered, read into facts (no I/O): request options, response bodies and SSE payloads.

JSON is read with Decimal numbers (`ledger.exactjson`), and anything the
upstream got wrong (no usage, a negative or absurd token count, NaN, a number
too long to trust) becomes a named anomaly instead of an amount. Texts are cut
at `MAX_TEXT` characters: an identifier longer than that is not one.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterable

from ..exactjson import NonFiniteNumber, loads, loads_plain
from .records import (
    MAX_CREDITS, MAX_NUMBER_CHARS, MAX_TOKENS, RequestFacts, ResponseFacts, Usage,
    request_facts_of, response_facts_of, usage_of,
)

MAX_TEXT = 200
DEFAULT_REQUEST = RequestFacts()
_NO_FACTS = ResponseFacts()


# ---------------------------------------------------------------- request


def request_facts(raw: bytes) -> RequestFacts:
    """The request options accounting reports on; defaults as the API applies them (it streams when `stream` is absent)."""
    try:
        body = loads_plain(raw) if raw else {}
    except (ValueError, RecursionError):
        return DEFAULT_REQUEST
    if type(body) is not dict:
        return DEFAULT_REQUEST
    get = body.get
    model = get("model")
    stream = get("stream", True)
    effort = get("reasoning_effort")
    thoughts = get("include_thoughts")
    tools = get("tools")
    names = None
    if isinstance(tools, list):
        names = []
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            names.append(name if isinstance(name, str) else "?")
    return request_facts_of((
        _text(model),  # model_requested
        stream if isinstance(stream, bool) else True,  # stream
        _text(effort),  # reasoning_effort
        thoughts if isinstance(thoughts, bool) else None,  # include_thoughts
        _text(",".join(names)) or None if names else None,  # tools
    ))


class _Unreadable(str):
    """The model of a body that cannot be read as JSON: a limit scoped to any model counts the call."""


UNREADABLE_MODEL = _Unreadable("<unreadable>")


def _ignored(_text: str) -> None:
    return None


_MODEL_DECODER = json.JSONDecoder(parse_int=_ignored, parse_float=_ignored, parse_constant=_ignored)


def requested_model(raw: bytes) -> str | None:
    """The model a request body asks for, read as the upstream reads it: the whole body's top-level "model", the
    last of repeated keys, escapes decoded; numbers are not read (no digit limit applies). UNREADABLE_MODEL when
    the body is not a JSON object this can read (nested past the interpreter's depth, not JSON)."""
    try:
        body = _MODEL_DECODER.decode(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return UNREADABLE_MODEL
    if type(body) is not dict:
        return UNREADABLE_MODEL
    model = body.get("model")
    return model if isinstance(model, str) else None


# ---------------------------------------------------------------- response


def _parse(raw: bytes | str, anomalies: list[str]) -> Any:
    try:
        return loads(raw)
    except NonFiniteNumber:
        anomalies.append("non_finite_number")
    except RecursionError:
        anomalies.append("malformed_body")
    except ValueError as exc:  # includes the int-digits limit and bad UTF-8
        anomalies.append("number_too_long" if "digits" in str(exc) else "malformed_body")
    return None


def _token_count(value: Any, name: str, anomalies: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        anomalies.append(f"bad_{name}")
        return None
    if value < 0 or value > MAX_TOKENS:
        anomalies.append(f"absurd_{name}")
        return None
    return value


def _usage(obj: Any, anomalies: list[str]) -> Usage | None:
    """The usage object's counts, or None when no usage was sent."""
    if obj is None:
        return None
    if type(obj) is not dict:
        anomalies.append("bad_usage")
        return None
    details = obj.get("completion_tokens_details")
    details = details if type(details) is dict else {}
    return usage_of((  # Usage's fields in order, each named in its count
        _token_count(obj.get("prompt_tokens"), "prompt_tokens", anomalies),
        _token_count(obj.get("completion_tokens"), "completion_tokens", anomalies),
        _token_count(details.get("reasoning_tokens"), "reasoning_tokens", anomalies),
        _token_count(details.get("audio_tokens"), "audio_tokens", anomalies),
        _token_count(details.get("text_tokens"), "text_tokens", anomalies),
        _token_count(obj.get("total_tokens"), "total_tokens", anomalies),
    ))


def _credits(value: Any, anomalies: list[str]) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        anomalies.append("bad_credits_consumed")
        return None
    if len(str(value)) > MAX_NUMBER_CHARS:
        anomalies.append("number_too_long")
        return None
    amount = Decimal(value)
    if amount < 0 or amount > MAX_CREDITS:
        anomalies.append("absurd_credits_consumed")
        return None
    return amount


def _text(value: Any) -> str | None:
    return plain_text(value[:MAX_TEXT]) if isinstance(value, str) else None


def plain_text(text: str) -> str:
    """A text both databases store: NUL (which PostgreSQL refuses) and lone surrogates (which UTF-8 cannot hold) replaced."""
    if text.isascii():
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")



def _object_facts(obj: Any, anomalies: list[str]) -> ResponseFacts:
    """The facts of one parsed JSON object (a body, an error body or a chunk); its anomalies go to `anomalies`."""
    if type(obj) is not dict:
        anomalies.append("malformed_body")
        return _NO_FACTS
    get = obj.get
    error = get("error")
    code = kind = None
    if type(error) is dict:
        code, kind = _text(error.get("code")), _text(error.get("type"))
    finish = None
    choices = get("choices")
    if type(choices) is list:  # the usage chunk may carry "choices": []: nothing indexes choices[0]
        for choice in choices:
            if type(choice) is dict and isinstance(choice.get("finish_reason"), str):
                finish = _text(choice["finish_reason"])
    return response_facts_of((
        _text(get("id")),  # completion_id
        _text(get("model")),  # model_reported
        finish,  # finish_reason
        _usage(get("usage"), anomalies),  # usage
        _credits(get("credits_consumed"), anomalies),  # credits_charged
        code,  # error_code
        kind,  # error_type
        (),  # anomalies
    ))


def facts_from_body(raw: bytes) -> ResponseFacts:
    """Facts from a whole non-streaming body (success or error)."""
    anomalies: list[str] = []
    if not raw.strip():
        return _NO_FACTS._replace(anomalies=("empty_body",))
    obj = _parse(raw, anomalies)
    if anomalies:
        return _NO_FACTS._replace(anomalies=tuple(anomalies))
    facts = _object_facts(obj, anomalies)
    return facts._replace(anomalies=tuple(anomalies)) if anomalies else facts


def facts_from_events(payloads: Iterable[bytes], saw_done: bool) -> ResponseFacts:
    """Facts from the data payloads of an SSE stream, in order.

    The id and model come from the first chunk that has them, the finish
    reason and usage from the last; `[DONE]` payloads are skipped.
    """
    anomalies: list[str] = []
    completion_id = model = finish = code = kind = None
    usage: Usage | None = None
    charged: Decimal | None = None
    for payload in payloads:
        if payload.strip() == b"[DONE]":
            continue
        obj = _parse(payload, anomalies)
        if obj is None:
            continue
        seen: list[str] = []
        chunk = _object_facts(obj, seen)
        anomalies.extend(a for a in seen if a not in anomalies)
        completion_id = completion_id or chunk.completion_id
        model = model or chunk.model_reported
        finish = chunk.finish_reason or finish
        code, kind = chunk.error_code or code, chunk.error_type or kind
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.credits_charged is not None:
            charged = chunk.credits_charged
    if not saw_done:
        anomalies.append("stream_incomplete")
    return response_facts_of((  # completion_id, model_reported, finish_reason, usage, credits_charged, error_code,
        completion_id, model, finish, usage, charged, code, kind, tuple(dict.fromkeys(anomalies)),  # error_type, anomalies
    ))


def sse_payloads(raw: bytes) -> list[bytes]:
    """The data payloads of a whole SSE body (not incremental; for tests and the demo)."""
    payloads = []
    for event in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if data:
            payloads.append(b"\n".join(data))
    return payloads


def facts_from_sse(raw: bytes) -> ResponseFacts:
    payloads = sse_payloads(raw)
    return facts_from_events(payloads, saw_done=any(p.strip() == b"[DONE]" for p in payloads))
