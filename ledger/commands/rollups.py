"""`rollup verify` and `rollup rebuild`: the rollups compared with the raw calls, and made anew from them."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from ..config import Settings
from ..store import rollups
from ..store.engine import Ledger
from ..terminal import Progress
from . import EXIT_DIFFERS, EXIT_OK


def verify(settings: Settings, out: TextIO, *, start: datetime | None = None, end: datetime | None = None) -> int:
    """Recompute the buckets of [start, end) from the raw calls and compare, from one snapshot: EXIT_DIFFERS
    naming each bucket that differs, else EXIT_OK."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        comparison = rollups.compare(session, start, end)
    for line in rollups.describe_differences(comparison.differences):
        print(line, file=out)
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
    rebuild cut short is resumed by running it again), while writers go on writing."""
    with Ledger(settings.database_url, must_exist=True) as ledger:
        with ledger.session() as session:
            days = rollups.days(session, start, end)
        progress = Progress(len(days), "rollup rebuild (days)", progress_stream)
        rows = 0
        for day_start, day_end in days:
            with ledger.session() as session:
                rows += rollups.rebuild(session, day_start, day_end)
            progress.advance()
        progress.finish()
    if days:
        print(f"rollups rebuilt: {len(days)} day{'s' * (len(days) != 1)} from {days[0][0]:%Y-%m-%dT%H:%MZ} "
              f"to {days[-1][1]:%Y-%m-%dT%H:%MZ}, {rows} rollup rows", file=out)
    else:
        print("rollups rebuilt: no calls in the range", file=out)
    return EXIT_OK
