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

A UTC month is no fixed width: `months` (`rollup_months_parts`) takes a month
of the monthly table whole when the read leaves most of its days whole, and
takes away, from the daily table, the days the read does not take whole
(outside its range, holding a bound, or a left-out period's, when its cutoff
is before the month's end) and the days recorded in a recorded day holding a
cutoff: the finer tables then add those days' share as for any read. Integer
sums subtract exactly.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from typing import Iterable, NamedTuple, Sequence

from sqlalchemy import and_, or_

from .rollup_tables import DAILY, DAY, DAY_TABLES, MONTH, QUARTERLY, TABLES, RollupTable

DAY_FLOOR = DAILY.floor


class Part(NamedTuple):
    """Rows of one rollup table a read sums: `conditions` on its buckets besides the read's own; `sign` -1: their sums
    are taken away; `whole`: taken whole, `conditions` all their time conditions (the read's own not applied)."""

    table: RollupTable
    conditions: list
    sign: int = 1
    whole: bool = False


class Months(NamedTuple):
    """What a read over [start, end) cuts at, for the monthly table: its range and its left-out late calls
    ((start, end, cutoff): the calls started in [start, end) recorded after cutoff are not the read's)."""

    start: datetime
    end: datetime
    late: tuple[tuple[datetime, datetime, datetime], ...] = ()


# Dimensions whose tables a read takes only when it needs them: tag sets are caller text, each a row; a user makes a
# few calls a day, so a table of users is about as wide as the calls below a day (the daily users' table beside the
# daily one for a read by project).
_ONLY_WHEN_NEEDED = ("tags", "end_user")


def table_for(grain, needed: frozenset[str]) -> RollupTable | None:
    """The narrowest table of that width holding every needed dimension (None: none does; of two as narrow, the first
    in TABLES). A table of tags or users is taken only by a read that needs them (`call_rollups` holds every
    dimension)."""
    found = [t for t in TABLES if t.grain == grain and needed <= set(t.dims)
             and (t is QUARTERLY or all(d in needed or d not in t.dims for d in _ONLY_WHEN_NEEDED))]
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
           span: tuple[datetime, datetime] | None = None, months: Months | None = None) -> list[Part]:
    """The parts from the widest to the 15-minute table: each call of the read in exactly one of them, or in the raw
    edges (the 15-minute table's undecided buckets), or added whole and taken away again. An empty WHERE list: every
    row. `span`, when given, holds every call the read can take: a wider table none of whose buckets in it is whole
    is left out. `months`, when given (a read of no time key), lets the monthly table take months whole."""
    started = [t for t in started]
    recorded = [t for t in recorded]
    widths = sorted({t.grain for t in DAY_TABLES}, reverse=True)
    chosen = [t for t in (table_for(w, needed) for w in widths) if t is not None]
    assert chosen[-1].grain == QUARTERLY.grain  # call_rollups holds every dimension
    found, regions = _months(needed, chosen[0], started, recorded, months) if months is not None else ([], None)
    wider: tuple[RollupTable, list, list] | None = None  # the last table chosen, and its undecided buckets
    for table in chosen:
        starts, records = _undecided(table, started, recorded)
        if table is not chosen[-1] and regions is None and _none_decided(table, starts, span):
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
        if regions is not None and wider is None:  # the days the months did not take whole, and no others
            found += [Part(table, [*region, *conditions]) for region in regions(model)]
        else:
            found.append(Part(table, conditions))
        wider = (table, starts, records)
    return found


class _Taken(NamedTuple):
    """A UTC month taken whole: its days taken away (and read again by the finer tables) and those kept, and the
    recorded day from which its calls are taken away too (a left-out period's cutoff in or before it)."""

    start: datetime
    end: datetime
    away: list[datetime]
    kept: list[datetime]
    recorded_from: datetime


def _month_taken(start: datetime, end: datetime, bounded: set[datetime], months: Months) -> _Taken | None:
    """How the UTC month [start, end) is taken whole, None when that would take away a third of its days or more.

    A day is taken away when the read does not take it whole (outside its range, holding a bound). A left-out
    period whose cutoff is before the month's end leaves out some of its calls recorded in it: either the days of
    that period are taken away, or the calls recorded from the cutoff's day on, whichever is fewer days.
    """
    days = _days(start, end)
    away = {d for d in days if d < months.start or d + DAY > months.end or d in bounded}
    recorded_from = end
    for low, high, cutoff in months.late:
        if cutoff >= end or high <= start or low >= end:
            continue  # none of its calls recorded in this month is left out, or none started in it
        inside = {d for d in days if low < d + DAY and d < high}
        after = max(start, DAY_FLOOR(cutoff))
        if len(inside) <= len(_days(after, end)):
            away |= inside
        else:
            recorded_from = min(recorded_from, after)
    kept = [d for d in days if d not in away]
    if len(kept) < 2 * (len(away) + len(_days(recorded_from, end))) + 2:
        return None
    return _Taken(start, end, sorted(away), kept, recorded_from)


def _months(needed: frozenset[str], day: RollupTable, started: list[datetime], recorded: list[datetime],
            months: Months) -> tuple[list[Part], object]:
    """The monthly table's parts (its months taken whole, what they must not hold taken away from the daily table)
    and, for the daily table, a function of its model giving the WHEREs of the rows it must still read (None: no
    month is taken whole, the daily table reads the range as usual).

    Of a month taken whole only the rows recorded in it are taken (the others: late calls, few, read by day).
    Taken away: the days away; the kept days' rows recorded from `recorded_from` on, and those recorded on a day
    holding a cutoff (the finer tables read those rows by their recording).
    """
    month = table_for(MONTH, needed)
    if month is None or day.grain != DAY or len(month.dims) > len(day.dims):
        return [], None
    bounded = {day.floor(t) for t in started if day.floor(t) != t}
    recorded_days = {day.floor(t) for t in recorded}
    low, high = day.floor(months.start), day.ceil(months.end)
    taken: list[_Taken] = []
    read_days: list[datetime] = []  # the days of the range the daily table reads whole
    at = month.floor(months.start)
    while at < months.end:
        end = month.after(at)
        found = _month_taken(at, end, bounded, months)
        if found is not None:
            taken.append(found)
        read_days += [d for d in (_days(at, end) if found is None else found.away) if low <= d < high]
        at = end
    if not taken:
        return [], None
    model, daily = month.model, day.model
    parts = [Part(month, [model.bucket_start.in_([m.start for m in taken]), model.recorded_bucket == model.bucket_start],
                  whole=True)]
    for m in taken:
        if m.away:
            parts.append(Part(day, [daily.bucket_start.in_(m.away), daily.recorded_bucket >= m.start,
                                    daily.recorded_bucket < m.end], -1, True))
        if m.recorded_from < m.end:
            parts.append(Part(day, [daily.bucket_start.in_(m.kept), daily.recorded_bucket >= m.recorded_from,
                                    daily.recorded_bucket < m.end], -1, True))
        recorded_in = sorted(r for r in recorded_days if m.start <= r < m.recorded_from)
        if recorded_in:
            parts.append(Part(day, [daily.bucket_start.in_(m.kept), daily.recorded_bucket.in_(recorded_in)], -1, True))

    def regions(table) -> list[list]:
        found = [[table.bucket_start.in_(read_days)]] if read_days else []
        for m in taken:  # the kept days' rows the month does not hold
            found += [[table.bucket_start.in_(m.kept), table.recorded_bucket < m.start],
                      [table.bucket_start.in_(m.kept), table.recorded_bucket >= m.recorded_from]]
        return found

    return parts, regions


def _days(start: datetime, end: datetime) -> list[datetime]:
    found = []
    while start < end:
        found.append(start)
        start += DAY
    return found


# ---------------------------------------------------------------- a read's ends taken by subtraction


def widths_for(needed: frozenset[str]) -> list:
    """The widths, widest first, of a UTC day at most, whose tables a read needing `needed` takes (`levels`' chain;
    the 15-minute width last: `call_rollups` holds every dimension)."""
    widths = sorted({t.grain for t in DAY_TABLES}, reverse=True)
    return [w for w in widths if table_for(w, needed) is not None]


def _cost(start: datetime, end: datetime, widths: list) -> tuple[int, int]:
    """What `levels` reads for [start, end) cut nowhere else: (its 15-minute buckets, its wider buckets)."""
    if start >= end:
        return 0, 0
    width, finer = widths[0], widths[1:]
    if not finer:  # the 15-minute table: each bucket touched, those off the grid too (their raw edges)
        floor = QUARTERLY.floor
        return (int((QUARTERLY.ceil(end) - floor(start)) / width)), 0
    table = next(t for t in TABLES if t.grain == width)
    low, high = table.ceil(start), table.floor(end)
    if low >= high:
        return _cost(start, end, finer)
    before, after = _cost(start, low, finer), _cost(high, end, finer)
    return before[0] + after[0], before[1] + after[1] + int((high - low) / width)


Span = tuple[datetime, datetime, int]  # [start, end) and its sign


def _sides(low: datetime, high: datetime, sign: int, free_high: bool, widths: list) -> list[list[Span]]:
    """The ways to read [low, high) (its `free` end off the wider grids, the other end fixed): as it is, or widened at
    its free end to a width's bound and that bound's side taken away again (itself read either way, with finer
    widths)."""
    found: list[list[Span]] = [[(low, high, sign)]]
    for at, width in enumerate(widths[:-1]):
        table = next(t for t in TABLES if t.grain == width)
        point = table.ceil(high) if free_high else table.floor(low)
        if point == (high if free_high else low):
            continue
        finer = widths[at + 1:]
        if free_high:
            found += [[(low, point, sign), *rest] for rest in _sides(high, point, -sign, False, finer)]
        else:
            found += [[(point, high, sign), *rest] for rest in _sides(point, low, -sign, True, finer)]
    return found


def ends(start: datetime, end: datetime, needed: frozenset[str]) -> list[Span]:
    """[start, end) as signed ranges whose sums add up to its own, reading the fewest 15-minute buckets (one row a
    call), then the fewest wider ones: an end inside a UTC day may be widened to a bound of a wider table's bucket
    and the part beyond it taken away again (itself read from finer tables, or widened again). In Asia/Kolkata a
    month by user or by project reads 2026-10-31 whole less 18:30Z-24:00Z (22 quarter hours, where 00:00-18:30
    would be 74; by project they are hours of the hourly projects' table and two quarters). Integer
    sums subtract exactly; the read's other conditions (an account, projects, late calls left out) are each call's
    own, so they hold in every range alike."""
    widths = widths_for(needed)
    if start >= end or len(widths) < 2:
        return [(start, end, 1)]
    best, best_cost = [(start, end, 1)], None
    starts = _sides(start, end, 1, False, widths)
    for left in starts:
        low = left[0][0]
        for right in _sides(low, end, 1, True, widths):
            spans = [(low, right[0][1], 1), *left[1:], *right[1:]]
            costs = [_cost(a, b, widths) for a, b, _ in spans]
            cost = (sum(c[0] for c in costs), sum(c[1] for c in costs), len(spans))
            if best_cost is None or cost < best_cost:
                best, best_cost = spans, cost
    return best


# ---------------------------------------------------------------- a time-keyed read's UTC days taken whole


class DaySpan(NamedTuple):
    """A range of a time-keyed read and the signs its rows are summed with: `own` grouped by their own time (the
    time keys' buckets), `day` grouped as their UTC day's reference instant is (`DayPlan.reference`)."""

    start: datetime
    end: datetime
    own: int
    day: int


class DayPlan(NamedTuple):
    spans: list[DaySpan]
    reference: dict[datetime, datetime]  # a UTC day taken whole: the instant whose groups its daily rows go to


def _plus(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def day_spans(start: datetime, end: datetime, bounds: Iterable[datetime], needed: frozenset[str]) -> DayPlan | None:
    """A read of [start, end) grouped by time keys cut at `bounds` (a local day's in Asia/Kolkata: 18:30Z), as UTC
    days taken whole from the daily table where that reads fewer rows, or None (no UTC day is taken whole).

    A UTC day cut by bounds into pieces is read either piece by piece (each grouped by its own time), or whole: its
    daily rows go to the groups of its costliest piece (its reference), and each other piece's rows are taken away
    from those groups and, when the piece is in the read, added to their own: the piece read once, its rows grouped
    both ways. In Kolkata a local day is then its UTC day less 18:30Z-24:00Z plus the day before's 18:30Z-24:00Z:
    per day 2 quarter hours and 5 hours, where reading its pieces is 4 quarter hours and 23 hours."""
    widths = widths_for(needed)
    if DAY not in widths or start >= end or "end_user" in needed:
        # By user the pieces are 15-minute rows, about a call each: at 10,000,000 calls on PostgreSQL the Spend page by
        # user took 1.9x main's time this way (BENCHMARKS.md, "Dashboard (issue 27)"), so users keep `levels`' path.
        return None
    cuts = sorted({b for b in bounds if start < b < end})
    spans: list[DaySpan] = []
    reference: dict[datetime, datetime] = {}
    day = DAY_FLOOR(start)
    while day < end:
        after = day + DAY
        points = sorted({day, after, *(c for c in (start, end, *cuts) if day < c < after)})
        pieces = [(a, b, start <= a and b <= end) for a, b in zip(points, points[1:])]
        costs = [_cost(a, b, widths) for a, b, _ in pieces]
        direct = (0, 0)
        for (_, _, inside), cost in zip(pieces, costs):
            direct = _plus(direct, cost) if inside else direct
        kept = max((i for i, p in enumerate(pieces) if p[2]), key=lambda i: costs[i])
        whole = (0, 1)
        for i, cost in enumerate(costs):
            whole = whole if i == kept else _plus(whole, cost)
        if whole < direct:
            reference[day] = pieces[kept][0]
            spans.append(DaySpan(day, after, 0, 1))
            spans += [DaySpan(a, b, 1 if inside else 0, -1) for i, (a, b, inside) in enumerate(pieces) if i != kept]
        else:
            spans += [DaySpan(a, b, 1, 0) for a, b, inside in pieces if inside]
        day = after
    if not reference:
        return None
    merged: list[DaySpan] = []
    for span in sorted(spans):
        last = merged[-1] if merged else None
        if last is not None and last.end == span.start and (last.own, last.day) == (span.own, span.day):
            merged[-1] = last._replace(end=span.end)
        else:
            merged.append(span)
    return DayPlan(merged, reference)


def day_values(plan: DayPlan, bounds: dict[str, Sequence[datetime]]) -> dict[str, tuple[list[datetime], list[int]]]:
    """{time key: (UTC day starts, values)}, each of `bounds`' keys (its buckets' bounds): a day taken whole, its
    rows' bucket of the key (its reference instant's), as a bucket index over those day starts (one value a run)."""
    days = sorted(plan.reference)
    found = {}
    for name, cuts in bounds.items():
        values = [bisect_right(cuts, plan.reference[day]) for day in days]
        runs = [i for i in range(1, len(days)) if values[i] != values[i - 1]]
        found[name] = ([days[i] for i in runs], [values[0]] + [values[i] for i in runs])
    return found


_FEW_BUCKETS = 48


def starting_in(table: RollupTable | None, started, start: datetime, end: datetime):
    """The rows of `table` (None: raw calls) starting in [start, end): its few bucket starts there as an IN list
    (equality lookups on the index, where OR'ed ranges would have SQLite scan the range around them all), else the
    range."""
    if table is None or table.grain > DAY:
        return and_(started >= start, started < end)
    found, at = [], table.ceil(start)
    while at < end and len(found) <= _FEW_BUCKETS:
        found.append(at)
        at = table.after(at)
    return started.in_(found) if len(found) <= _FEW_BUCKETS else and_(started >= start, started < end)
