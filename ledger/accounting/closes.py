"""Which calls a report counts, given the period closes (values in, values out).

A close fixes a calendar period's figures at its cutoff: a call of that period
recorded after the cutoff is "late". A late call is never counted in any
report's figures; it is a prior-period adjustment of the first period after
the closed one (same kind, same zone) that was still open when the call was
recorded, so that a period closed later keeps the adjustments it listed when
it was closed. A report in another zone or of another length lists an
adjustment when it holds the start of that period: in every division of
time into reports, each late call is in exactly one. A reopen is a later
row: the period's state is its latest row, and a reopened period counts
its late calls as its own again.

The closes in force form one calendar: one kind of period in one zone, so
they never overlap and each late call has one period to go to. A close of
another kind or zone waits until the calendar in force is reopened. A ledger
closed before that rule may hold closes in force that overlap (a week inside
a month, a month in two zones): `overlapping_closes` names each pair, and
nothing is closed until one of each pair is reopened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from .periods import DAY, MONTH, QUARTER, WEEK, YEAR, Period, following

CLOSE, REOPEN = "close", "reopen"
MAX_FOLLOWING = 400  # periods after a close looked at for its adjustments (a day's closes: over a year)


@dataclass(frozen=True, slots=True)
class CloseEvent:
    """One row of `period_closes`, as the rules need it."""

    id: int
    action: str
    period: Period
    at: datetime  # the close's cutoff, or the instant of the reopen

    @property
    def key(self) -> tuple[datetime, datetime]:
        return self.period.start, self.period.end


@dataclass(frozen=True, slots=True)
class LateCalls:
    """Calls started in [start, end) and recorded after `cutoff`: late for a closed period."""

    start: datetime
    end: datetime
    cutoff: datetime


@dataclass(frozen=True, slots=True)
class AdjustmentWindow:
    """Late calls of `closed` recorded in (recorded_after, recorded_until] are adjustments of `into`."""

    closed: CloseEvent
    into: Period
    recorded_after: datetime
    recorded_until: datetime | None  # None: up to now and on


def _ordered(events: Iterable[CloseEvent]) -> list[CloseEvent]:
    return sorted(events, key=lambda e: (e.at, e.id))


def active_closes(events: Iterable[CloseEvent]) -> list[CloseEvent]:
    """The closes in force: each period whose latest row is a close."""
    latest: dict[tuple[datetime, datetime], CloseEvent] = {}
    for event in _ordered(events):
        latest[event.key] = event
    return [e for e in latest.values() if e.action == CLOSE]


def is_closed(events: Sequence[CloseEvent], period: Period, before: datetime | None = None) -> CloseEvent | None:
    """The close in force for `period` (considering rows from before `before` only, when given)."""
    state = None
    for event in _ordered(events):
        if event.key == (period.start, period.end) and (before is None or event.at < before):
            state = event
    return state if state is not None and state.action == CLOSE else None


def outside_calendar(events: Sequence[CloseEvent], period: Period) -> CloseEvent | None:
    """The first close in force that `period` cannot be closed beside (another kind or zone), or None."""
    others = [c for c in active_closes(events) if (c.period.kind, c.period.zone) != (period.kind, period.zone)]
    return min(others, key=lambda c: (c.period.start, c.id), default=None)


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two closes in force whose periods overlap (made before the one-calendar rule): their late calls count twice."""

    first: CloseEvent
    second: CloseEvent

    def describe(self) -> str:
        a, b = self.first.period, self.second.period
        return (f"{a.label} ({a.zone}) and {b.label} ({b.zone}) are both closed and overlap (closed before closes "
                f"formed one calendar): a late call of both is an adjustment twice; reopen one of them "
                f"(`credit-ledger reopen {b.label} --tz {b.zone} --reason ...` or "
                f"`credit-ledger reopen {a.label} --tz {a.zone} --reason ...`)")

    def as_dict(self) -> dict:
        return {"closes": [{"id": e.id, "period": e.period.label, "zone": e.period.zone} for e in (self.first, self.second)],
                "resolve": self.describe()}


def overlapping_closes(events: Iterable[CloseEvent]) -> list[Overlap]:
    """Each pair of closes in force whose periods overlap."""
    active = sorted(active_closes(events), key=lambda c: (c.period.start, c.period.end, c.id))
    found = []
    for i, first in enumerate(active):
        for second in active[i + 1:]:
            if second.period.start >= first.period.end:
                break
            found.append(Overlap(first, second))
    return found


_PLURAL = {DAY: "days", WEEK: "weeks", MONTH: "months", QUARTER: "quarters", YEAR: "years"}
_WITHIN = {QUARTER: (MONTH, DAY), YEAR: (QUARTER, MONTH, DAY), MONTH: (DAY,)}  # kinds a period is made of


def calendar_refusal(period: Period, close: CloseEvent) -> str:
    """Why `period` is not closed beside `close` (of another calendar), and what to do instead."""
    kind, zone = close.period.kind, close.period.zone
    text = (f"{period.label} ({period.zone}) not closed: the ledger's closes are {_PLURAL[kind]} in {zone} "
            f"({close.period.label} ({zone}) is closed), and closes never overlap nor mix zones; ")
    if zone == period.zone and kind in _WITHIN.get(period.kind, ()):
        return text + f"close the {period.kind}'s {_PLURAL[kind]}, or reopen the closes in force to change the calendar"
    return text + "reopen the closes in force to change the calendar"


def late_calls(events: Sequence[CloseEvent], start: datetime, end: datetime) -> list[LateCalls]:
    """What a report over [start, end) leaves out of its figures: the late calls of every close in force."""
    return [
        LateCalls(max(c.period.start, start), min(c.period.end, end), c.at)
        for c in active_closes(events)
        if c.period.start < end and c.period.end > start
    ]


def adjustment_windows(events: Sequence[CloseEvent], start: datetime, end: datetime) -> list[AdjustmentWindow]:
    """The late calls a report over [start, end) lists as prior-period adjustments.

    For each close in force, the periods after it are followed while they
    have rows of their own; between two of their rows, the late calls' period
    is the first one of those that was open. A window goes to the report
    whose [start, end) holds the start of that period.
    """
    events = list(events)
    by_key: dict[tuple[datetime, datetime], list[CloseEvent]] = {}
    for event in events:
        by_key.setdefault(event.key, []).append(event)
    windows: list[AdjustmentWindow] = []
    for close in active_closes(events):
        if close.period.kind == "range":
            continue
        chain = [following(close.period)]
        while (chain[-1].start, chain[-1].end) in by_key and len(chain) < MAX_FOLLOWING:
            chain.append(following(chain[-1]))
        if chain[0].start >= end:
            continue
        times = sorted({e.at for period in chain for e in by_key.get((period.start, period.end), ()) if e.at > close.at})
        bounds = [close.at, *times]
        for i, low in enumerate(bounds):
            high = bounds[i + 1] if i + 1 < len(bounds) else None
            # A call recorded in (low, high] sees the rows before it: those at or before `low`.
            into = next((p for p in chain if _open_after(by_key.get((p.start, p.end), ()), low)), chain[-1])
            if windows and windows[-1].closed is close and windows[-1].into == into:
                windows[-1] = AdjustmentWindow(close, into, windows[-1].recorded_after, high)
            else:
                windows.append(AdjustmentWindow(close, into, low, high))
    # An adjustment belongs to the instant its period starts: reports that divide time (months, quarters,
    # a year, in whatever zone) then list each late call once, never in none.
    return [w for w in windows if start <= w.into.start < end]


def _open_after(rows: Sequence[CloseEvent], instant: datetime) -> bool:
    state = None
    for row in _ordered(rows):
        if row.at <= instant:
            state = row
    return state is None or state.action != CLOSE
