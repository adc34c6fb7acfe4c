"""`rollup verify` and `rollup rebuild`: the rollups compared with the raw calls, and made anew from them."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from ..config import Settings
from ..errors import LedgerError
from ..store import rollup_months, rollups
from ..store.retention import gone_ranges, horizon
from ..store.engine import Ledger
from ..terminal import Progress
from . import EXIT_DIFFERS, EXIT_OK


def verify(settings: Settings, out: TextIO, *, start: datetime | None = None, end: datetime | None = None) -> int:
    """Recompute the buckets of [start, end) from the raw calls and compare, from one snapshot: EXIT_DIFFERS
    naming each bucket that differs, else EXIT_OK."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        gone, found = gone_ranges(session), horizon(session)
        comparison = rollups.compare(session, start, end, gone)
    for line in rollups.describe_differences(comparison.differences):
        print(line, file=out)
    if comparison.skipped and found is not None:
        print(f"skipped {comparison.skipped} bucket{'s' * (comparison.skipped != 1)} of closed periods before "
              f"{found.before:%Y-%m-%dT%H:%M:%SZ}: retention deleted their raw calls (calls_days = {found.calls_days}), "
              "the rollups hold their sums", file=out)
    if comparison.differences:
        buckets = len({d.key.bucket_start for d in comparison.differences})
        print(f"rollups differ from the calls in {buckets} bucket{'s' * (buckets != 1)}: "
              "`credit-ledger rollup rebuild --from ... --to ...` makes them anew", file=out)
        return EXIT_DIFFERS
    print(f"rollups match the calls: {comparison.buckets} buckets, {comparison.calls} calls", file=out)
    return EXIT_OK


def rebuild(settings: Settings, out: TextIO, *, start: datetime | None = None, end: datetime | None = None,
            progress_stream: TextIO | None = None) -> int:
    """Make the rollups of [start, end) anew from the raw calls, a UTC day a transaction (each whole, so a
    rebuild cut short is resumed by running it again), then the monthly users' rows of the months those days
    touch from their days' rows, a month a transaction, while writers go on writing."""
    with Ledger(settings.database_url, must_exist=True) as ledger:
        with ledger.session() as session:
            _refuse_gone(session, start, end)
            days = rollups.days(session, start, end)
        progress = Progress(len(days), "rollup rebuild (days)", progress_stream)
        rows = 0
        for day_start, day_end in days:
            with ledger.session() as session:
                rows += rollups.rebuild(session, day_start, day_end, months=False)
            progress.advance()
        for month_start, month_end in rollup_months.month_ranges(days):
            with ledger.session() as session:
                rollup_months.remake_months(session, month_start, month_end)
        progress.finish()
    if days:
        print(f"rollups rebuilt: {len(days)} day{'s' * (len(days) != 1)} from {days[0][0]:%Y-%m-%dT%H:%MZ} "
              f"to {days[-1][1]:%Y-%m-%dT%H:%MZ}, {rows} rollup rows", file=out)
    else:
        print("rollups rebuilt: no calls in the range", file=out)
    return EXIT_OK


def _refuse_gone(session, start: datetime | None, end: datetime | None) -> None:
    """A rebuild of buckets whose raw calls retention deleted would erase their sums: refused, naming them. The
    wider tables are rebuilt over whole UTC days, so the range is widened to them."""
    low, high = rollups.whole_days(start, end)
    overlap = [(a, b) for a, b in gone_ranges(session) if (high is None or a < high) and (low is None or b > low)]
    if overlap:
        last = max(b for _, b in overlap)
        raise LedgerError(
            f"rollup rebuild refused: retention deleted the raw calls of closed periods from "
            f"{min(a for a, _ in overlap):%Y-%m-%dT%H:%MZ} to {last:%Y-%m-%dT%H:%MZ}, and a rebuild would erase "
            f"their sums; rebuild from {rollups.whole_days(last, last)[1]:%Y-%m-%dT%H:%MZ} on (--from)")
