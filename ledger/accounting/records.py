"""What the ledger knows of one chat call: `CallRecord` and the values it is made of (no I/O).

A call's facts have one name at each stage: the recorder's `RawCapture`, the
writer's `Capture` (ledger.sink.capture), then the `CallRecord` here, priced
into a `calls` row (ledger.store.calls). Records are NamedTuples: the writer
makes one for every call, and a NamedTuple costs what a tuple costs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from functools import partial
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

# Status of a call, as the ledger records it.
COMPLETED = "completed"  # the response was read to its end
ABORTED = "aborted"  # the caller closed the response before its end
FAILED = "failed"  # the network or the stream broke
ERROR = "error"  # the API answered with an HTTP error
REFUSED = "refused"  # a hard budget limit stopped it before it left: never sent, never charged
STATUSES = (COMPLETED, ABORTED, FAILED, ERROR, REFUSED)

# One call cannot plausibly use more: the context window is 1M tokens.
MAX_TOKENS = 50_000_000
MAX_CREDITS = Decimal(1_000_000)
MAX_NUMBER_CHARS = 40

NO_TAGS: Mapping[str, str] = MappingProxyType({})


class Usage(NamedTuple):
    """Token counts as the upstream reported them; None where not sent."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    text_tokens: int | None = None
    total_tokens: int | None = None


# The writer makes these records for every call it settles. A NamedTuple's own __new__ is a Python
# function (with keywords it cost the writer 7 % more instructions a record, BENCHMARKS.md), so each
# hot record has a named constructor here, beside its fields: tuple.__new__ of the fields in order.
usage_of = partial(tuple.__new__, Usage)
USAGE_FIELDS = Usage._fields


class ResponseFacts(NamedTuple):
    """What accounting keeps of one response body or stream."""

    completion_id: str | None = None
    model_reported: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    credits_charged: Decimal | None = None
    error_code: str | None = None
    error_type: str | None = None
    anomalies: tuple[str, ...] = ()


response_facts_of = partial(tuple.__new__, ResponseFacts)  # the writer's constructor (see usage_of)


class RequestFacts(NamedTuple):
    """The request options accounting reports on, with the API's defaults where the request sent none."""

    model_requested: str | None = None
    stream: bool = True
    reasoning_effort: str | None = None
    include_thoughts: bool | None = None
    tools: str | None = None


request_facts_of = partial(tuple.__new__, RequestFacts)  # the writer's constructor (see usage_of)


class CallRecord(NamedTuple):
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
    response: ResponseFacts = ResponseFacts()
    key_fingerprint: str | None = None
    key_last4: str | None = None
    project: str | None = None
    end_user: str | None = None
    tags: Mapping[str, str] = NO_TAGS

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
        return self._replace(response=self.response._replace(anomalies=merged))


call_record_of = partial(tuple.__new__, CallRecord)  # the writer's constructor (see usage_of)


# ---------------------------------------------------------------- as data


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
        "usage": None if facts.usage is None else facts.usage._asdict(),
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
        None if usage is None else tuple(usage),
        facts.credits_charged, facts.error_code, facts.error_type, tuple(facts.anomalies),
    )
    return hashlib.sha256(repr(content).encode("utf-8", "surrogatepass")).hexdigest()
