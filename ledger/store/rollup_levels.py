"""Which rollup table answers which part of a read: whole UTC days, whole hours, quarter hours, raw edges.

A read names the instants its start conditions cut at (`started`: its
bounds, its time keys' bounds, closed periods' bounds) and those its
recording conditions cut at (`recorded`: cutoffs), and the dimensions its
keys and filters need. A bucket of width W is decided when no `started`
instant falls strictly inside it and no `recorded` instant falls in its
recorded bucket of width W (a call recorded at a cutoff exactly is not
after it, the rest of its bucket is). Widths nest (a day's bounds are an
hour's, an hour's a quarter's), so a bucket undecided at a width is
undecided at every wider one: a call goes to the widest width whose table
has the dimensions and decides its buckets, then finer, then raw (the
15-minute buckets undecided: `spend.rollup_parts`). Of one width, the table
with the fewest dimensions that holds the read's is taken.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import and_, or_

from .rollup_tables import QUARTERLY, TABLES, RollupTable


def table_for(grain, needed: frozenset[str]) -> RollupTable | None:
    """The narrowest table of that width holding every needed dimension (None: none does)."""
    found = [t for t in TABLES if t.grain == grain and needed <= set(t.dims)]
    return min(found, key=lambda t: len(t.dims), default=None)


def _undecided(table: RollupTable, started: Iterable[datetime], recorded: Iterable[datetime]):
    starts = sorted({table.floor(t) for t in started if table.floor(t) != t})
    records = sorted({table.floor(t) for t in recorded})
    return starts, records


def _within(column, buckets: list[datetime], width):
    return [and_(column >= b, column < b + width) for b in buckets]


def _starts_within(table: RollupTable, buckets: list[datetime], width) -> list[datetime]:
    """The bucket starts of `table` inside the wider buckets (an IN list: the index's equality lookups, where a
    range of each, OR'ed beside the read's own range, would have the planner scan the whole range)."""
    found = []
    for bucket in buckets:
        at = bucket
        while at < bucket + width:
            found.append(at)
            at += table.grain
    return found


def _none_decided(table: RollupTable, starts: list[datetime], span: tuple[datetime, datetime] | None) -> bool:
    """Whether every bucket of `table` in the read's span holds a bound (a month's local days at +05:30 leave no UTC
    day whole): the table would be read for nothing."""
    if span is None:
        return False
    low, high = table.ceil(span[0]), table.floor(span[1])
    undecided = set(starts)
    at = low
    while at < high:
        if at not in undecided:
            return False
        at += table.grain
    return True


def levels(started: Iterable[datetime], recorded: Iterable[datetime], needed: frozenset[str],
           span: tuple[datetime, datetime] | None = None) -> list[tuple[RollupTable, list]]:
    """[(table, its extra WHERE)] from the widest to the 15-minute table: each call of the read in exactly one of
    them or in the raw edges (the 15-minute table's undecided buckets). An empty WHERE list: every row. `span`, when
    given, holds every call the read can take: a wider table none of whose buckets in it is whole is left out."""
    started = [t for t in started]
    recorded = [t for t in recorded]
    widths = sorted({t.grain for t in TABLES}, reverse=True)
    chosen = [t for t in (table_for(w, needed) for w in widths) if t is not None]
    assert chosen[-1].grain == QUARTERLY.grain  # call_rollups holds every dimension
    found: list[tuple[RollupTable, list]] = []
    wider: tuple[RollupTable, list, list] | None = None  # the last table chosen, and its undecided buckets
    for table in chosen:
        starts, records = _undecided(table, started, recorded)
        if table is not chosen[-1] and _none_decided(table, starts, span):
            continue  # its calls are all in its undecided buckets: the finer tables take them whole
        model = table.model
        conditions = []
        if wider is not None:
            above, above_starts, above_records = wider
            inside = (([model.bucket_start.in_(_starts_within(table, above_starts, above.grain))] if above_starts else [])
                      + _within(model.recorded_bucket, above_records, above.grain))
            if not inside:
                break  # the wider table decided every bucket: nothing is left for finer ones
            conditions.append(or_(*inside))
        if starts:
            conditions.append(model.bucket_start.not_in(starts))
        if records:
            conditions.append(model.recorded_bucket.not_in(records))
        found.append((table, conditions))
        wider = (table, starts, records)
    return found
