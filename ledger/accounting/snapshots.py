"""What one poll of GET /v1/credits found: the snapshot value and the parsing of the body (no I/O).

The API documents integer figures; an answer that is not that shape becomes a
snapshot whose status names the anomaly (only OK snapshots are reconciled),
and so does a figure larger than the ledger's integer column can hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

from ..exactjson import loads
from ..money import MAX_LEDGER_CREDITS
from ..redact import redact

# Snapshot statuses. Only OK snapshots take part in reconciliation.
OK = "ok"
MALFORMED_BODY = "malformed_body"  # not JSON
UNEXPECTED_SHAPE = "unexpected_shape"  # JSON, but not {"code", "msg", "data": {...}}
MISSING_FIGURE = "missing_figure"  # a balance figure is absent
NON_INTEGER_FIGURE = "non_integer_figure"  # the API documents integers
NEGATIVE_FIGURE = "negative_figure"  # total_purchased or total_consumed below 0
ABSURD_FIGURE = "absurd_figure"  # larger than any prepaid balance the ledger can hold
API_ERROR = "api_error"  # HTTP 200 but the body's code is not 200
UNAUTHORIZED = "unauthorized"  # 401: key invalid, disabled, deleted
FORBIDDEN = "forbidden"  # 403: IP not in the key's allowlist
RATE_LIMITED = "rate_limited"  # 429 after every retry
SERVER_ERROR = "server_error"  # 5xx after every retry
HTTP_ERROR = "http_error"  # another HTTP status
UNREACHABLE = "unreachable"  # network error or timeout after every retry
NO_KEY = "no_key"  # the key's environment variable is not set
REFUSED = frozenset({UNAUTHORIZED, FORBIDDEN})

FIGURES = ("balance", "total_purchased", "total_consumed")
MAX_RAW = 16_384  # characters of a raw response kept with its snapshot


@dataclass(frozen=True, slots=True)
class SnapshotPoint:
    id: int
    taken_at: datetime
    balance: Decimal
    total_purchased: Decimal
    total_consumed: Decimal
    answered_at: datetime | None = None  # when the poll's answer came back (taken_at: when it was sent)

    @property
    def invariant_error(self) -> Decimal:
        """balance - (total_purchased - total_consumed): zero on a sound snapshot."""
        return self.balance - (self.total_purchased - self.total_consumed)


@dataclass(frozen=True, slots=True)
class TopUpValue:
    """A rise of total_purchased between two consecutive usable snapshots of an account, dated by the later one."""

    account: str
    detected_at: datetime
    credits: Decimal
    snapshot_id: int  # the later snapshot's


def top_ups_between(account: str, points: Sequence[SnapshotPoint]) -> list[TopUpValue]:
    """The top-ups `points` (an account's usable snapshots, in order) show: each rise of total_purchased.

    A fall is no top-up (reconciliation names it); only the snapshots decide, so every reader finds the same.
    """
    return [TopUpValue(account, b.taken_at, b.total_purchased - a.total_purchased, b.id)
            for a, b in zip(points, points[1:]) if b.total_purchased > a.total_purchased]


@dataclass(frozen=True, slots=True)
class Bracket:
    """The snapshots a period's reconciliation runs between: the last before its start, the first at or after its end.

    Spend between the last poll of one period and the first of the next is in
    both periods' reconciliations, so no boundary hides it.
    """

    start: datetime
    end: datetime
    opening: SnapshotPoint | None
    closing: SnapshotPoint | None

    @property
    def whole(self) -> bool:
        return self.opening is not None and self.closing is not None

    def missing(self) -> str:
        """What is missing, in words ("" when nothing is)."""
        parts = []
        if self.opening is None:
            parts.append(f"no usable snapshot before {_utc(self.start)}")
        if self.closing is None:
            parts.append(f"no usable snapshot at or after {_utc(self.end)}")
        return " and ".join(parts)

    def describe(self) -> str:
        def side(point: SnapshotPoint | None, missing: str) -> str:
            return missing if point is None else f"snapshot {point.id} at {_utc(point.taken_at)}"

        return (f"{side(self.opening, f'(none before {_utc(self.start)})')} to "
                f"{side(self.closing, f'(none at or after {_utc(self.end)})')}")

    def to_dict(self) -> dict[str, Any]:
        def side(point: SnapshotPoint | None) -> dict[str, Any] | None:
            return None if point is None else {"snapshot": point.id, "taken_at": _utc(point.taken_at)}

        return {"opening": side(self.opening), "closing": side(self.closing)}


def _utc(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class BalanceSnapshotValue:
    """What one poll of an account found (stored as a `balance_snapshots` row)."""

    account: str
    taken_at: datetime  # when the answered request was sent
    status: str
    balance: Decimal | None = None
    total_purchased: Decimal | None = None
    total_consumed: Decimal | None = None
    raw_response: str | None = None
    key_fingerprint: str | None = None
    key_label: str | None = None
    detail: str | None = None  # a human-readable reason when not OK
    attempts: int = 0
    received_at: datetime | None = None  # when its answer came back (the poll's figures hold at an instant in between)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def point(self, snapshot_id: int) -> SnapshotPoint | None:
        """The figures of this poll as stored under `snapshot_id`, None where it has none."""
        if self.balance is None or self.total_purchased is None or self.total_consumed is None:
            return None
        return SnapshotPoint(snapshot_id, self.taken_at, self.balance, self.total_purchased, self.total_consumed,
                             self.received_at)


@dataclass(frozen=True, slots=True)
class ParsedCredits:
    status: str
    balance: Decimal | None = None
    total_purchased: Decimal | None = None
    total_consumed: Decimal | None = None
    detail: str | None = None


def parse_credits(raw: bytes) -> ParsedCredits:
    """The figures of a /v1/credits body, or the anomaly that prevents them (no I/O)."""
    try:
        body = loads(raw)
    except (ValueError, RecursionError):
        return ParsedCredits(MALFORMED_BODY, detail="the body is not JSON")
    if not isinstance(body, dict):
        return ParsedCredits(UNEXPECTED_SHAPE, detail="the body is not a JSON object")
    code = body.get("code")
    if code is not None and code != 200:
        return ParsedCredits(API_ERROR, detail=f"code {redact(repr(code))[:40]}: {redact(str(body.get('msg')))[:200]}")
    data = body.get("data")
    if not isinstance(data, dict):
        return ParsedCredits(UNEXPECTED_SHAPE, detail="no 'data' object")
    figures: dict[str, Decimal] = {}
    for name in FIGURES:
        value = data.get(name)
        if value is None:
            return ParsedCredits(MISSING_FIGURE, detail=f"no {name}")
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            return ParsedCredits(NON_INTEGER_FIGURE, detail=f"{name} is not a number: {str(value)[:40]!r}")
        if isinstance(value, Decimal) or len(str(value)) > 30:
            return ParsedCredits(NON_INTEGER_FIGURE, detail=f"{name} is not an integer: {str(value)[:40]}")
        if abs(value) > MAX_LEDGER_CREDITS:
            return ParsedCredits(ABSURD_FIGURE, detail=f"{name} is beyond what the ledger holds: {str(value)[:40]}")
        figures[name] = Decimal(value)
    for name in ("total_purchased", "total_consumed"):
        if figures[name] < 0:
            return ParsedCredits(NEGATIVE_FIGURE, detail=f"{name} is {figures[name]}", **figures)
    return ParsedCredits(OK, **figures)
