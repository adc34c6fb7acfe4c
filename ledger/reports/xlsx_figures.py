"""What the workbook shows, built before a cell is written: each key's groups, the Daily sheet's table and the row
streams of its row-level sheets. The writer (xlsx.py) only formats these; it never queries the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterable, Sequence

from ..accounting.periods import Period
from ..accounting.group_keys import GroupKey
from ..store.call_rows import call_rows, count_rows
from ..store.spend import Selection, usd_per_credit
from .spend import Figures, SpendReport, buckets, grouped

MAX_SERIES = 10  # stacked series on the Daily chart; the rest are "(other)"


@dataclass(frozen=True)
class RowStream:
    """A row-level sheet's rows: `total` of them, in chunks of the named columns, read when the sheet is written."""

    total: int
    rows: Callable[[Sequence[str]], Iterable[Sequence[tuple]]]


@dataclass(frozen=True)
class Daily:
    """Credits charged per local day (`days`, in order), a column per series (the top values of `stack`)."""

    stack: GroupKey | None
    series: list[str]
    days: list[Period]
    table: dict[str, list[Decimal]]  # a day's label: its credits per series


@dataclass(frozen=True)
class WorkbookFigures:
    by_key: list[tuple[GroupKey, list[tuple[tuple, Figures]]]]  # one sheet per key of the report
    daily: Daily
    findings: RowStream
    adjustments: RowStream | None
    calls: RowStream | None

    @property
    def rows(self) -> int:
        """How many rows the row-level sheets hold together (what the progress counts)."""
        return sum(s.total for s in (self.findings, self.adjustments, self.calls) if s is not None)


def row_stream(session, selection: Selection, *, findings_only: bool = False) -> RowStream:
    def rows(names: Sequence[str]) -> Iterable[Sequence[tuple]]:
        return call_rows(session, selection, names, findings_only=findings_only)

    return RowStream(count_rows(session, selection, findings_only=findings_only), rows)


def daily(session, report: SpendReport, rates: dict[str, Decimal]) -> Daily:
    """Each local day's credits charged, by the first non-time key's biggest values (the rest as "(other)")."""
    stack = next((k for k in report.keys if not k.is_time), None)
    keys = (GroupKey("day"),) + ((stack,) if stack else ())
    items, _ = grouped(session, report.selection, keys, report.period, rates)
    return daily_of(items, stack, report.period)


def daily_of(items: Iterable[tuple[tuple, Figures]], stack: GroupKey | None, period: Period) -> Daily:
    """The Daily table of groups by (day, `stack`) (by day alone when `stack` is None)."""
    items = list(items)
    days = buckets("day", period)
    per_value: dict[str, Decimal] = {}
    for values, figures in items:
        if stack:
            per_value[values[1]] = per_value.get(values[1], Decimal(0)) + figures.credits_charged
    top = sorted(per_value, key=lambda v: (-per_value[v], v))[:MAX_SERIES]
    series = top + (["(other)"] if len(per_value) > len(top) else []) if stack else ["credits charged"]
    table = {day.label: [Decimal(0)] * len(series) for day in days}
    for values, figures in items:
        column = 0 if not stack else (top.index(values[1]) if values[1] in top else len(series) - 1)
        table[values[0]][column] += figures.credits_charged
    return Daily(stack, series, days, table)


def workbook_figures(session, report: SpendReport, with_calls: bool) -> WorkbookFigures:
    """Everything the workbook shows beyond the report's own groups and the summary, from one snapshot `session`."""
    rates = usd_per_credit(session)
    by_key = [(key, grouped(session, report.selection, (key,), report.period, rates)[0]) for key in report.keys]
    adjustments = report.adjustment_selection
    return WorkbookFigures(
        by_key, daily(session, report, rates), row_stream(session, report.selection, findings_only=True),
        row_stream(session, adjustments) if adjustments is not None else None,
        row_stream(session, report.selection) if with_calls else None,
    )

