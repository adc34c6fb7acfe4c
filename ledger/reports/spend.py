"""The spend report of a period: its groups, total and prior-period adjustments, from the sums made in SQL.

The database sums each group per rate card (`store.spend`); here each group's
US dollars are those sums times their card's rate, exactly, and its share of
the total is its credits over the total's. A closed period's report leaves
out what was recorded after its close and shows the close beside a fresh
digest of its calls: the same digest, whatever was recorded since. Closes
in force that overlap (a ledger closed before the one-calendar rule) are
named on the report: a late call of both may be an adjustment twice.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Sequence

from sqlalchemy.orm import Session

from ..accounting.buckets import on_grid
from ..accounting.closes import AdjustmentWindow, CloseEvent, Overlap, adjustment_windows, is_closed, late_calls, overlapping_closes
from ..accounting.periods import Period, calendar_period, following
from ..accounting.group_keys import GroupKey
from ..errors import ReportError
from ..money import ZERO
from ..store.closes import close_events, close_rows
from ..store.models import PeriodClose
from ..store.retention import Horizon, horizon, retained_ranges
from ..store.spend import Selection, SpendRow, digest_rows, spend_rows, spend_rows_of, usd_per_credit
from .cells import group_label

SHARE_STEP = Decimal("0.000001")
MAX_BUCKETS = 10_000
CALLER_TEXT = frozenset({"project", "user", "tag", "model"})  # keys whose values a caller chose: labelled apart


@dataclass(frozen=True, slots=True)
class Figures:
    """What a group (or the total) spent; amounts exact, USD None where a rate card's rate is unknown."""

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    credits_charged: Decimal = ZERO
    credits_expected: Decimal = ZERO
    findings: int = 0
    usd: Decimal | None = ZERO

    @property
    def difference(self) -> Decimal:
        """Charged minus expected by the rate card (calls with no expected cost count their whole charge)."""
        return self.credits_charged - self.credits_expected

    def __add__(self, other: "Figures") -> "Figures":
        return Figures(
            self.calls + other.calls,
            self.failed_calls + other.failed_calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.credits_charged + other.credits_charged,
            self.credits_expected + other.credits_expected,
            self.findings + other.findings,
            None if self.usd is None or other.usd is None else self.usd + other.usd,
        )


@dataclass(frozen=True, slots=True)
class Group:
    values: tuple[str, ...]  # one per group key, as shown (a day's date, a project, ...)
    figures: Figures
    share: Decimal | None  # of the total's credits charged, 0..1


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Late calls of one closed period, listed in this report (not in its figures)."""

    closed: Period
    figures: Figures
    windows: tuple[AdjustmentWindow, ...]


@dataclass(frozen=True)
class SpendReport:
    period: Period
    keys: tuple[GroupKey, ...]
    account: str | None
    generated_at: datetime
    groups: tuple[Group, ...]
    total: Figures
    adjustments: tuple[Adjustment, ...] = ()
    close: PeriodClose | None = None  # the close in force for exactly this period
    digest: str | None = None  # SHA-256 of the calls counted (figures and adjustments)
    digest_calls: int | None = None
    unknown_cards: tuple[str, ...] = ()  # rate cards of calls whose USD rate the ledger does not hold
    selection: Selection = field(default=None, repr=False)  # type: ignore[assignment]
    adjustment_selection: Selection | None = field(default=None, repr=False)
    calls_gone: Horizon | None = None  # retention deleted raw calls of closed periods in this one (a close's digest stands)
    overlaps: tuple[Overlap, ...] = ()  # closes in force reaching into the period that overlap (adjustments may count twice)

    @property
    def empty(self) -> bool:
        return self.total.calls == 0 and not self.adjustments

    @property
    def adjustment_total(self) -> Figures:
        total = Figures()
        for adjustment in self.adjustments:
            total = total + adjustment.figures
        return total

    @property
    def digest_matches_close(self) -> bool | None:
        if self.close is None or self.digest is None or self.calls_gone is not None:
            return None
        return self.digest == self.close.calls_digest


# ---------------------------------------------------------------- buckets


def buckets(kind: str, period: Period) -> list[Period]:
    """The calendar periods of `kind` (in the period's zone) that meet `period`, in order."""
    try:
        found = [calendar_period(kind, period.start, period.zone)]
        while found[-1].end < period.end:
            if len(found) >= MAX_BUCKETS:
                raise ReportError(f"more than {MAX_BUCKETS} {kind} groups in one report: "
                                  "choose a coarser key (week, month) or a shorter period")
            found.append(following(found[-1]))
    except ValueError as error:  # a bucket past the dates the ledger knows
        raise ReportError(str(error)) from None
    return found


def bucket_bounds(keys: Sequence[GroupKey], period: Period) -> tuple[dict[str, list[datetime]], dict[str, list[Period]]]:
    spans = {k.name: buckets(k.name, period) for k in keys if k.is_time}
    return {name: [b.end for b in found[:-1]] for name, found in spans.items()}, spans


# ---------------------------------------------------------------- folding the sums


def fold(rows: Sequence[SpendRow], keys: Sequence[GroupKey], spans: dict[str, list[Period]],
         rates: dict[str, Decimal]) -> tuple[dict[tuple, Figures], set[str]]:
    """Rows per (group, rate card) -> Figures per group, USD made card by card; and the cards of unknown rate."""
    groups: dict[tuple, Figures] = {}
    unknown: set[str] = set()
    for row in rows:
        values = tuple(spans[k.name][v].label if k.is_time else group_label(v) if k.name in CALLER_TEXT else v
                       for k, v in zip(keys, row.values))
        rate = rates.get(row.rate_card) if row.rate_card is not None else None
        if rate is None:
            unknown.add(row.rate_card or "(none)")
        figures = Figures(row.calls, row.failed_calls, row.prompt_tokens, row.completion_tokens, row.reasoning_tokens,
                          row.credits_charged, row.credits_expected, row.findings,
                          None if rate is None else row.credits_charged * rate)
        groups[values] = groups[values] + figures if values in groups else figures
    return groups, unknown


def share(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole == 0 else (part / whole).quantize(SHARE_STEP, rounding=ROUND_HALF_EVEN)


def _order(keys: Sequence[GroupKey], spans: dict[str, list[Period]]):
    position = {name: {b.label: i for i, b in enumerate(found)} for name, found in spans.items()}

    def sort_key(item):
        values, figures = item
        ordered = tuple(position[k.name][v] if k.is_time else v for k, v in zip(keys, values))
        if keys and keys[0].is_time:
            return (0, ordered)
        return (-figures.credits_charged, ordered)

    return sort_key


def grouped(session: Session, selection: Selection, keys: Sequence[GroupKey], period: Period,
            rates: dict[str, Decimal]) -> tuple[list[tuple[tuple, Figures]], set[str]]:
    """The groups of `keys` over the selection, ordered: by time when the first key is one, else biggest first."""
    bounds, spans = bucket_bounds(keys, period)
    groups, unknown = fold(spend_rows(session, selection, keys, bounds), keys, spans, rates)
    return sorted(groups.items(), key=_order(keys, spans)), unknown


# ---------------------------------------------------------------- the report


def selection_for(session: Session, period: Period, account: str | None = None,
                  pending: Sequence[CloseEvent] = (), projects: frozenset[str] | None = None,
                  ) -> tuple[Selection, Selection | None, list]:
    """The report's calls (late ones out) and its adjustments' (None when there are none).

    `pending`: closes about to be stored, counted as if they were (a close computes its figures so).
    `projects`: only those projects' calls (a viewer limited to them).
    """
    events = [*close_events(session), *pending]
    selection = Selection(period.start, period.end, account, tuple(late_calls(events, period.start, period.end)),
                          projects=projects)
    windows = adjustment_windows(events, period.start, period.end)
    adjustments = (Selection(period.start, period.end, account, (), tuple(windows), projects=projects)
                   if windows else None)
    return selection, adjustments, events


def build_report(
    session: Session,
    period: Period,
    keys: Sequence[GroupKey] = (),
    account: str | None = None,
    *,
    digest: bool | None = None,
    now: datetime | None = None,
    pending: Sequence[CloseEvent] = (),
    projects: frozenset[str] | None = None,
) -> SpendReport:
    """The report of `period` grouped by `keys`. `digest`: None computes it for a closed period only.

    `projects`: the report of only those projects' calls (a dashboard viewer limited to them): it is not the
    closed report of its period, so it carries no close and no digest.
    """
    selection, adjustment_selection, events = selection_for(session, period, account, pending, projects)
    rates = usd_per_credit(session)
    items, unknown = grouped(session, selection, keys, period, rates)
    total = Figures()
    for _, figures in items:
        total = total + figures
    groups = tuple(Group(values, figures, share(figures.credits_charged, total.credits_charged)) for values, figures in items)
    adjustments = []
    if adjustment_selection is not None:
        by_close: dict[int, list[AdjustmentWindow]] = {}
        for window in adjustment_selection.adjustments:
            by_close.setdefault(window.closed.id, []).append(window)
        parts = [replace(adjustment_selection, adjustments=tuple(windows)) for windows in by_close.values()]
        # Every close's late calls in one statement, whatever the number of closes.
        for windows, rows in zip(by_close.values(), spend_rows_of(session, parts, ())):
            found, more = fold(rows, (), {}, rates)
            unknown |= more
            if found:
                adjustments.append(Adjustment(windows[0].closed.period, found[()], tuple(windows)))
    close = None
    closing = is_closed(events, period)
    if closing is not None and account is None and projects is None and closing not in pending:
        close = next(row for row in close_rows(session) if row.id == closing.id)
    report = SpendReport(period, tuple(keys), account, now or datetime.now(timezone.utc), groups, total,
                         tuple(adjustments), close, unknown_cards=tuple(sorted(unknown)),
                         selection=selection, adjustment_selection=adjustment_selection,
                         overlaps=_overlaps(events, period, adjustment_selection))
    gone = calls_gone(session, events, period)
    report = replace(report, calls_gone=gone)
    if gone is not None and close is not None:  # the raw calls are not all there: the close's digest stands
        report = replace(report, digest=close.calls_digest, digest_calls=close.calls)
    elif gone is not None and digest:
        raise ReportError(f"{period.label}: no digest of its calls can be made: {gone.note()}")
    elif projects is not None:
        pass  # some projects' calls: no digest stands for them
    elif digest or (digest is None and close is not None):
        value, count = calls_digest(session, selection, adjustment_selection)
        report = replace(report, digest=value, digest_calls=count)
    return report


def _overlaps(events: Sequence[CloseEvent], period: Period, adjustments: Selection | None) -> tuple[Overlap, ...]:
    """The overlapping closes in force that reach into `period` or whose late calls it lists as adjustments."""
    listed = {w.closed.id for w in adjustments.adjustments} if adjustments is not None else set()
    return tuple(o for o in overlapping_closes(events) if any(
        e.id in listed or (e.period.start < period.end and e.period.end > period.start) for e in (o.first, o.second)))


def calls_gone(session: Session, events: Sequence[CloseEvent], period: Period) -> Horizon | None:
    """The retention horizon when it reaches into `period` (some of its raw calls may be gone), else None.

    ReportError when a bound of the period is off the 15-minute grid where calls are gone: the rollups cannot
    split that bucket, and its raw calls are not all there.
    """
    found = horizon(session)
    if found is None:
        return None
    ranges = retained_ranges(events, found.before)
    for bound in (period.start, period.end):
        if not on_grid(bound) and any(low <= bound < high for low, high in ranges):
            raise ReportError(f"{bound:%Y-%m-%dT%H:%M:%SZ} is off the 15-minute grid where raw calls are gone "
                              f"({found.note()}): give a bound on a quarter hour")
    return found if any(low < period.end and high > period.start for low, high in ranges) else None


def calls_digest(session: Session, selection: Selection, adjustments: Selection | None) -> tuple[str, int]:
    """SHA-256 over `call_id TAB record_digest NEWLINE` of every call counted, in call id order; and how many."""
    streams = [digest_rows(session, selection)]
    if adjustments is not None:
        streams.append(digest_rows(session, adjustments))
    sha = hashlib.sha256()
    count = 0
    for call_id, record in heapq.merge(*streams):
        sha.update(f"{call_id}\t{record}\n".encode())
        count += 1
    return sha.hexdigest(), count
