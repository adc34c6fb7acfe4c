"""Call records and the parsing of what the API answered (no I/O).

`CallRecord` is every fact the ledger keeps of one chat call. The functions
here turn response bytes into `ResponseFacts`: JSON is read with
`parse_float=Decimal`, and anything the upstream got wrong (no usage, a
negative or absurd token count, NaN, a number too long to trust) becomes a
named anomaly instead of an amount.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping

# Status of a call, as the ledger records it.
COMPLETED = "completed"  # the response was read to its end
ABORTED = "aborted"  # the caller closed the response before its end
FAILED = "failed"  # the network or the stream broke
ERROR = "error"  # the API answered with an HTTP error
STATUSES = (COMPLETED, ABORTED, FAILED, ERROR)

# One call cannot plausibly use more: the context window is 1M tokens.
MAX_TOKENS = 50_000_000
MAX_CREDITS = Decimal(1_000_000)
MAX_NUMBER_CHARS = 40

USAGE_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "text_tokens",
    "total_tokens",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the upstream reported them; None where not sent."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    text_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ResponseFacts:
    """What accounting keeps of one response body or stream."""

    completion_id: str | None = None
    model_reported: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    credits_charged: Decimal | None = None
    error_code: str | None = None
    error_type: str | None = None
    anomalies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Every fact of one chat call (one HTTP attempt)."""

    call_id: str
    started_at: datetime
    status: str
    model_requested: str | None = None
    stream: bool = True
    reasoning_effort: str | None = None
    include_thoughts: bool | None = None
    tools: str | None = None
    attempt: int = 0
    first_byte_at: datetime | None = None
    ended_at: datetime | None = None
    http_status: int | None = None
    refunded: bool = False
    response: ResponseFacts = field(default_factory=ResponseFacts)
    key_fingerprint: str | None = None
    key_last4: str | None = None
    project: str | None = None
    end_user: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def usage(self) -> Usage | None:
        return self.response.usage

    @property
    def credits_charged(self) -> Decimal | None:
        return self.response.credits_charged

    @property
    def anomalies(self) -> tuple[str, ...]:
        return self.response.anomalies

    def with_anomaly(self, *names: str) -> "CallRecord":
        merged = tuple(dict.fromkeys(self.response.anomalies + names))
        return replace(self, response=replace(self.response, anomalies=merged))


# ---------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model_requested: str | None = None
    stream: bool = True
    reasoning_effort: str | None = None
    include_thoughts: bool | None = None
    tools: str | None = None


def request_values(raw: bytes) -> tuple:
    """RequestFacts' fields as a tuple (model_requested, stream, reasoning_effort, include_thoughts, tools)."""
    try:
        body = _load(raw, _PLAIN, {}) if raw else {}
    except (ValueError, RecursionError):
        return _DEFAULT_REQUEST
    if type(body) is not dict:
        return _DEFAULT_REQUEST
    get = body.get
    model = get("model")
    stream = get("stream", True)  # the API streams when stream is absent
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
    return (
        model if isinstance(model, str) else None,
        stream if isinstance(stream, bool) else True,
        effort if isinstance(effort, str) else None,
        thoughts if isinstance(thoughts, bool) else None,
        ",".join(names) or None if names else None,
    )


_DEFAULT_REQUEST = (None, True, None, None, None)


def request_facts(raw: bytes) -> RequestFacts:
    """The request options accounting reports on; defaults as the API applies them."""
    return RequestFacts(*request_values(raw))


# ---------------------------------------------------------------- response


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


_EXACT_OPTIONS = {"parse_float": Decimal, "parse_constant": _reject_constant}
_EXACT = json.JSONDecoder(**_EXACT_OPTIONS)
_PLAIN = json.JSONDecoder()
_BOM_OR_WIDE = (b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")


def _load(raw: bytes | str, decoder: json.JSONDecoder, options: dict) -> Any:
    """json.loads(raw, **options) through one prepared decoder (json.loads with options builds one a call).

    UTF-8 bytes are decoded here as json.loads would; anything else (a BOM,
    UTF-16 or UTF-32) goes through json.loads itself.
    """
    if isinstance(raw, (bytes, bytearray)):
        if raw.startswith(_BOM_OR_WIDE) or (len(raw) > 1 and not (raw[0] and raw[1])):
            return json.loads(raw, **options)
        raw = raw.decode("utf-8", "surrogatepass")
    try:  # the scanner straight away: decode() adds two regex matches for the whitespace around
        value, end = decoder.scan_once(raw, 0)
    except StopIteration:
        return decoder.decode(raw)  # leading whitespace, or the error decode() raises
    return value if end == len(raw) else decoder.decode(raw)


def loads_exact(raw: bytes | str) -> Any:
    """json.loads with Decimal floats and NaN/Infinity refused (raises ValueError)."""
    return _load(raw, _EXACT, _EXACT_OPTIONS)


def _parse(raw: bytes | str, anomalies: list[str]) -> Any:
    try:
        return loads_exact(raw)
    except _NonFinite:
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


def _usage(obj: Any, anomalies: list[str]) -> tuple | None:
    """Usage's fields as a tuple, or None when no usage was sent."""
    if obj is None:
        return None
    if type(obj) is not dict:
        anomalies.append("bad_usage")
        return None
    details = obj.get("completion_tokens_details")
    details = details if type(details) is dict else {}
    return (
        _token_count(obj.get("prompt_tokens"), "prompt_tokens", anomalies),
        _token_count(obj.get("completion_tokens"), "completion_tokens", anomalies),
        _token_count(details.get("reasoning_tokens"), "reasoning_tokens", anomalies),
        _token_count(details.get("audio_tokens"), "audio_tokens", anomalies),
        _token_count(details.get("text_tokens"), "text_tokens", anomalies),
        _token_count(obj.get("total_tokens"), "total_tokens", anomalies),
    )


def _credits(value: Any, anomalies: list[str]) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        anomalies.append("bad_credits_consumed")
        return None
    amount = Decimal(value)
    if len(str(value)) > MAX_NUMBER_CHARS:
        anomalies.append("number_too_long")
        return None
    if amount < 0 or amount > MAX_CREDITS:
        anomalies.append("absurd_credits_consumed")
        return None
    return amount


def _str(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


# The parsing below works on tuples in ResponseFacts' field order (usage a tuple in Usage's order):
# the ledger writer turns them into rows without building the values (`response_facts` does).
_NO_FACTS = (None, None, None, None, None, None, None)


def _object_values(obj: Any, anomalies: list[str]) -> tuple:
    """ResponseFacts' fields but the anomalies, from one parsed JSON object (a body, an error body or a chunk)."""
    if type(obj) is not dict:
        anomalies.append("malformed_body")
        return _NO_FACTS
    get = obj.get
    error = get("error")
    code = kind = None
    if type(error) is dict:
        code, kind = _str(error.get("code")), _str(error.get("type"))
    finish = None
    choices = get("choices")
    if type(choices) is list:
        for choice in choices:
            if type(choice) is dict and isinstance(choice.get("finish_reason"), str):
                finish = choice["finish_reason"]
    return (
        _str(get("id")),
        _str(get("model")),
        finish,
        _usage(get("usage"), anomalies),
        _credits(get("credits_consumed"), anomalies),
        code,
        kind,
    )


def body_values(raw: bytes) -> tuple:
    """`facts_from_body` as a tuple."""
    anomalies: list[str] = []
    if not raw.strip():
        return (*_NO_FACTS, ("empty_body",))
    obj = _parse(raw, anomalies)
    if anomalies:
        return (*_NO_FACTS, tuple(anomalies))
    return (*_object_values(obj, anomalies), tuple(anomalies))


def events_values(payloads: Iterable[bytes], saw_done: bool) -> tuple:
    """`facts_from_events` as a tuple."""
    anomalies: list[str] = []
    completion_id = model = finish = code = kind = None
    usage: tuple | None = None
    charged: Decimal | None = None
    for payload in payloads:
        if payload.strip() == b"[DONE]":
            continue
        obj = _parse(payload, anomalies)
        if obj is None:
            continue
        seen: list[str] = []
        c_id, c_model, c_finish, c_usage, c_charged, c_code, c_kind = _object_values(obj, seen)
        anomalies.extend(a for a in seen if a not in anomalies)
        completion_id = completion_id or c_id
        model = model or c_model
        finish = c_finish or finish
        code, kind = c_code or code, c_kind or kind
        if c_usage is not None:
            usage = c_usage
        if c_charged is not None:
            charged = c_charged
    if not saw_done:
        anomalies.append("stream_incomplete")
    return completion_id, model, finish, usage, charged, code, kind, tuple(dict.fromkeys(anomalies))


def response_facts(values: tuple) -> ResponseFacts:
    """The ResponseFacts of a tuple from `body_values` or `events_values`."""
    usage = values[3]
    return ResponseFacts(*values[:3], None if usage is None else Usage(*usage), *values[4:])


def facts_from_body(raw: bytes) -> ResponseFacts:
    """Facts from a whole non-streaming body (success or error)."""
    return response_facts(body_values(raw))


def facts_from_events(payloads: Iterable[bytes], saw_done: bool) -> ResponseFacts:
    """Facts from the data payloads of an SSE stream, in order.

    The id and model come from the first chunk that has them, the finish
    reason and usage from the last; `[DONE]` payloads are skipped.
    """
    return response_facts(events_values(payloads, saw_done))


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


# ---------------------------------------------------------------- serialising


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_to_dict(record: CallRecord) -> dict[str, Any]:
    """A JSON-able dict of the record; credits as exact strings."""
    facts = record.response
    return {
        "call_id": record.call_id,
        "started_at": _iso(record.started_at),
        "status": record.status,
        "model_requested": record.model_requested,
        "stream": record.stream,
        "reasoning_effort": record.reasoning_effort,
        "include_thoughts": record.include_thoughts,
        "tools": record.tools,
        "attempt": record.attempt,
        "first_byte_at": _iso(record.first_byte_at),
        "ended_at": _iso(record.ended_at),
        "http_status": record.http_status,
        "refunded": record.refunded,
        "key_fingerprint": record.key_fingerprint,
        "key_last4": record.key_last4,
        "project": record.project,
        "end_user": record.end_user,
        "tags": dict(sorted(record.tags.items())),
        "completion_id": facts.completion_id,
        "model_reported": facts.model_reported,
        "finish_reason": facts.finish_reason,
        "usage": None if facts.usage is None else {f: getattr(facts.usage, f) for f in USAGE_FIELDS},
        "credits_charged": None if facts.credits_charged is None else str(facts.credits_charged),
        "error_code": facts.error_code,
        "error_type": facts.error_type,
        "anomalies": list(facts.anomalies),
    }


def record_from_dict(data: Mapping[str, Any]) -> CallRecord:
    usage = data.get("usage")
    charged = data.get("credits_charged")
    return CallRecord(
        call_id=data["call_id"],
        started_at=_dt(data["started_at"]),  # type: ignore[arg-type]
        status=data["status"],
        model_requested=data.get("model_requested"),
        stream=bool(data.get("stream", True)),
        reasoning_effort=data.get("reasoning_effort"),
        include_thoughts=data.get("include_thoughts"),
        tools=data.get("tools"),
        attempt=int(data.get("attempt", 0)),
        first_byte_at=_dt(data.get("first_byte_at")),
        ended_at=_dt(data.get("ended_at")),
        http_status=data.get("http_status"),
        refunded=bool(data.get("refunded", False)),
        key_fingerprint=data.get("key_fingerprint"),
        key_last4=data.get("key_last4"),
        project=data.get("project"),
        end_user=data.get("end_user"),
        tags=dict(data.get("tags") or {}),
        response=ResponseFacts(
            completion_id=data.get("completion_id"),
            model_reported=data.get("model_reported"),
            finish_reason=data.get("finish_reason"),
            usage=None if usage is None else Usage(**{f: usage.get(f) for f in USAGE_FIELDS}),
            credits_charged=None if charged is None else Decimal(charged),
            error_code=data.get("error_code"),
            error_type=data.get("error_type"),
            anomalies=tuple(data.get("anomalies") or ()),
        ),
    )


def record_digest(record: CallRecord) -> str:
    """A fingerprint of the record's content, to tell a replay from a conflict.

    SHA-256 of the repr of a tuple of the record's fields: primitives, Decimals
    and aware datetimes only, whose reprs are stable across processes and runs
    (no hash seeds, no dict order). Every field of `record_to_dict` is in it.
    """
    facts = record.response
    usage = facts.usage
    content = (
        record.call_id, record.started_at, record.status, record.model_requested, record.stream,
        record.reasoning_effort, record.include_thoughts, record.tools, record.attempt, record.first_byte_at,
        record.ended_at, record.http_status, record.refunded, record.key_fingerprint, record.key_last4,
        record.project, record.end_user, tuple(sorted(record.tags.items())),
        facts.completion_id, facts.model_reported, facts.finish_reason,
        None if usage is None else tuple(getattr(usage, f) for f in USAGE_FIELDS),
        facts.credits_charged, facts.error_code, facts.error_type, tuple(facts.anomalies),
    )
    return hashlib.sha256(repr(content).encode("utf-8", "surrogatepass")).hexdigest()
