"""What the recorder keeps of a call on the caller's path, and how it becomes a record.

A `Capture` holds only primitives and the few raw payloads accounting needs
(the non-streaming body, or the kept SSE data payloads). It is journalled as
one JSON line. `build_record` does the rest off the caller's path: parsing
into Decimals, flagging anomalies, attributing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .usage import (
    ABORTED,
    COMPLETED,
    ERROR,
    FAILED,
    CallRecord,
    ResponseFacts,
    facts_from_body,
    facts_from_events,
    request_facts,
)

# Bodies larger than this are not kept for accounting (the caller still gets them).
MAX_KEPT_BODY = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Capture:
    call_id: str
    started_at: float  # epoch seconds (time.time())
    ended_at: float | None
    first_byte_at: float | None
    outcome: str  # completed | aborted | failed (before the HTTP status is considered)
    http_status: int | None
    stream: bool | None  # as the response showed it (text/event-stream), None if no response
    request_body: bytes = b""  # the request JSON (what accounting needs of it is parsed later)
    body: bytes | None = None  # non-streaming response body, when kept
    payloads: tuple[bytes, ...] = ()  # kept SSE data payloads, in order
    saw_done: bool = False
    attempt: int = 0
    key_fingerprint: str | None = None
    key_last4: str | None = None
    project: str | None = None
    end_user: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # anomalies seen by the recorder itself (e.g. body_too_large)


_LINE = json.JSONEncoder(separators=(",", ":"))  # one encoder: json.dumps with options builds one a call


def _b(data: bytes) -> str:
    return data.decode("latin-1")


def encode(capture: Capture) -> bytes:
    """One journal line (ends with a newline)."""
    obj: dict[str, Any] = {
        "i": capture.call_id,
        "s": capture.started_at,
        "e": capture.ended_at,
        "f": capture.first_byte_at,
        "o": capture.outcome,
        "h": capture.http_status,
        "st": capture.stream,
        "q": _b(capture.request_body),
        "a": capture.attempt,
    }
    if capture.body is not None:
        obj["b"] = _b(capture.body)
    if capture.payloads:
        obj["p"] = [_b(p) for p in capture.payloads]
    if capture.saw_done:
        obj["d"] = True
    if capture.key_fingerprint:
        obj["k"] = capture.key_fingerprint
        obj["k4"] = capture.key_last4
    if capture.project is not None:
        obj["pr"] = capture.project
    if capture.end_user is not None:
        obj["u"] = capture.end_user
    if capture.tags:
        obj["t"] = dict(capture.tags)
    if capture.notes:
        obj["n"] = list(capture.notes)
    return _LINE.encode(obj).encode() + b"\n"


def _raw(text: str) -> bytes:
    return text.encode("latin-1")


def decode(line: bytes) -> Capture:
    """The capture of one journal line; ValueError if the line is not one."""
    obj = json.loads(line)
    if not isinstance(obj, dict) or "i" not in obj:
        raise ValueError("not a journal entry")
    return Capture(
        call_id=obj["i"],
        started_at=obj["s"],
        ended_at=obj.get("e"),
        first_byte_at=obj.get("f"),
        outcome=obj["o"],
        http_status=obj.get("h"),
        stream=obj.get("st"),
        request_body=_raw(obj.get("q", "")),
        body=_raw(obj["b"]) if "b" in obj else None,
        payloads=tuple(_raw(p) for p in obj.get("p", ())),
        saw_done=bool(obj.get("d")),
        attempt=int(obj.get("a", 0)),
        key_fingerprint=obj.get("k"),
        key_last4=obj.get("k4"),
        project=obj.get("pr"),
        end_user=obj.get("u"),
        tags=obj.get("t") or {},
        notes=tuple(obj.get("n", ())),
    )


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def build_record(capture: Capture) -> CallRecord:
    """The CallRecord of a capture: parse, flag, decide the status."""
    request = request_facts(capture.request_body)
    if capture.body is not None:
        facts = facts_from_body(capture.body)
    elif capture.payloads or capture.stream:
        facts = facts_from_events(capture.payloads, capture.saw_done)
    else:
        facts = ResponseFacts()
    if capture.notes:
        facts = ResponseFacts(
            **{**{f: getattr(facts, f) for f in ResponseFacts.__slots__}, "anomalies": facts.anomalies + capture.notes}
        )
    status = capture.outcome
    http_status = capture.http_status
    if http_status is not None and http_status >= 400:
        status = ERROR
    elif status == COMPLETED and capture.stream and not capture.saw_done:
        status = FAILED  # the stream ended without [DONE]: the upstream cut it
    refunded = http_status == 503 and (facts.error_code in (None, "upstream_error"))
    stream = capture.stream if capture.stream is not None else request.stream
    return CallRecord(
        call_id=capture.call_id,
        started_at=_when(capture.started_at),  # type: ignore[arg-type]
        status=status,
        model_requested=request.model_requested,
        stream=bool(stream),
        reasoning_effort=request.reasoning_effort,
        include_thoughts=request.include_thoughts,
        tools=request.tools,
        attempt=capture.attempt,
        first_byte_at=_when(capture.first_byte_at),
        ended_at=_when(capture.ended_at),
        http_status=http_status,
        refunded=refunded,
        response=facts,
        key_fingerprint=capture.key_fingerprint,
        key_last4=capture.key_last4,
        project=capture.project,
        end_user=capture.end_user,
        tags=dict(capture.tags),
    )


__all__ = ["Capture", "encode", "decode", "build_record", "ABORTED", "COMPLETED", "FAILED", "MAX_KEPT_BODY"]
