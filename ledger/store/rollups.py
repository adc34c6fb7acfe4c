"""The rollups: exact sums of calls per UTC bucket, recorded bucket and dimensions (`rollup_tables`: the 15-minute
table of every dimension and the wider, narrower ones).

The writer adds the calls it wrote in its own transaction (`add_calls`:
groups by 15-minute bucket, summed again into each wider table, sorted
INSERT ... ON CONFLICT DO UPDATE adding the deltas); `rebuild` makes a range's
rows anew from the raw `calls` (GROUP BY in SQL, the wider tables summed from
its 15-minute groups the writer's way), and `compare` sets each table beside
that recompute from one snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Iterable, NamedTuple, Sequence

from sqlalchemy import BigInteger, Boolean, Integer, String, case, cast, func, literal, literal_column, select, text, type_coerce
from sqlalchemy.orm import Session

from ..accounting.pricing import CLEAN_CLASSES
from ..accounting.records import ERROR, FAILED
from ..money import fmt, from_nano, to_nano
from ..terminal import printable
from .models import Call, CallRollup, UTCDateTime, as_utc
from .rollup_months import compare_months, rebuild_months
from .rollup_tables import (DAY, DAY_TABLES, DIMENSIONS, MEASURES, MONTHLY_USERS, QUARTERLY, TABLES, Keys, RollupTable,
                            coarsen, dims_key, upsert as upsert_table)

BUCKET = timedelta(minutes=15)
FAILED_STATUSES = (ERROR, FAILED)
_TOKENS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


class Dims(NamedTuple):
    key_fingerprint: str | None
    key_last4: str | None
    project: str | None
    end_user: str | None
    model_requested: str | None
    model_reported: str | None
    tags: str | None
    rate_card: str | None
    pricing_class: str
    failed: bool


class Sums(NamedTuple):
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    findings: int
    credits_charged: int  # nano-credits
    credits_expected: int  # nano-credits


class RollupKey(NamedTuple):
    bucket_start: datetime
    recorded_bucket: datetime
    dims_key: str


def bucket_of(moment: datetime) -> datetime:
    """The 15-minute UTC bucket holding `moment` (its start)."""
    moment = as_utc(moment)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def bucket_after(moment: datetime) -> datetime:
    """The first bucket start at or after `moment`."""
    start = bucket_of(moment)
    return start if start == as_utc(moment) else start + BUCKET


# ---------------------------------------------------------------- the writer's deltas


def deltas(rows: Iterable[Sequence], columns: Sequence[str], recorded_at: datetime) -> dict[tuple, list[int]]:
    """{(bucket_start, recorded_bucket, dimension values): sums as a list} of `calls` rows in `columns` order.

    `recorded_at` is the batch's, the one the insert stored for all its rows.
    The writer's hot loop: positions fetched by itemgetter, buckets by the
    quarter hour's epoch seconds (a bucket is cut at whole seconds, far from
    a float's error at microseconds).
    """
    started, status, charged, expected, pricing, dims_of, tokens_of = _positions(tuple(columns))
    recorded_bucket = bucket_of(recorded_at)
    buckets: dict[float, datetime] = {}
    groups: dict[tuple, list[int]] = {}
    for row in rows:
        moment = row[started]
        seconds = moment.timestamp()
        bucket = buckets.get(seconds - seconds % 900)
        if bucket is None:
            bucket = buckets[seconds - seconds % 900] = bucket_of(moment)
        failed = row[status] in FAILED_STATUSES
        key = (bucket, recorded_bucket, (*dims_of(row), failed))
        prompt, completion, reasoning = tokens_of(row)
        charge, expect = row[charged], row[expected]
        sums = groups.get(key)
        if sums is None:
            groups[key] = [
                1, 1 if failed else 0, prompt or 0, completion or 0, reasoning or 0,
                0 if row[pricing] in CLEAN_CLASSES else 1,
                0 if charge is None else _nano(charge), 0 if expect is None else _nano(expect),
            ]
            continue
        sums[0] += 1
        if failed:
            sums[1] += 1
        if prompt:
            sums[2] += prompt
        if completion:
            sums[3] += completion
        if reasoning:
            sums[4] += reasoning
        if row[pricing] not in CLEAN_CLASSES:
            sums[5] += 1
        if charge is not None:
            sums[6] += _nano(charge)
        if expect is not None:
            sums[7] += _nano(expect)
    return groups


def _nano(value) -> int:
    return to_nano(value) if isinstance(value, Decimal) else int(value)


@lru_cache(maxsize=8)
def _positions(columns: tuple[str, ...]) -> tuple:
    at = columns.index
    return (
        at("started_at"), at("status"), at("credits_charged"), at("credits_expected"), at("pricing_class"),
        itemgetter(*(at(name) for name in DIMENSIONS[:-1])), itemgetter(*(at(name) for name in _TOKENS)),
    )


def add_calls(session: Session, rows: Iterable[Sequence], columns: Sequence[str], recorded_at: datetime) -> int:
    """Add `calls` rows the writer has just inserted (recorded at `recorded_at`) to every rollup table, in its
    transaction: how many 15-minute rollup rows.

    The tables are upserted in one order (`TABLES`), each table's groups in
    one order, (bucket_start, recorded_bucket, dims_key), so that writers
    sharing rows lock them in the same order and cannot deadlock.
    """
    groups = deltas(rows, columns, recorded_at)
    if groups:
        upsert(session, groups)
    return len(groups)


def upsert(session: Session, groups: dict[tuple, list[int]] | dict[tuple, Sums]) -> None:
    """Add 15-minute groups {(bucket, recorded bucket, every dimension): sums} to every rollup table."""
    keys = Keys()
    for table, found in coarsen(groups).items():
        upsert_table(session, table, found, keys)


# ---------------------------------------------------------------- recompute, rebuild, compare


def _bucket(column, dialect: str):
    if dialect == "postgresql":
        return type_coerce(func.date_bin(literal_column("interval '15 minutes'"), column,
                                         literal_column("timestamptz '2000-01-01 00:00:00+00'")), UTCDateTime)
    # UTCDateTime's text on SQLite, 'YYYY-MM-DD HH:MM:SS.ffffff': the minutes floored to a quarter hour
    quarter = cast(func.substr(column, 15, 2), Integer).op("/")(15).op("*")(15)
    minutes = func.printf("%02d", quarter)
    return type_coerce(func.substr(column, 1, 14).op("||")(minutes).op("||")(":00.000000"), UTCDateTime)


def _recompute_select(dialect: str, start: datetime | None, end: datetime | None):
    failed = Call.status.in_(FAILED_STATUSES)
    dims = [getattr(Call, name) for name in DIMENSIONS[:-1]] + [type_coerce(failed, Boolean)]
    bucket, recorded = _bucket(Call.started_at, dialect), _bucket(Call.recorded_at, dialect)
    zero = literal(0, BigInteger)
    query = (
        select(
            bucket.label("bucket_start"), recorded.label("recorded_bucket"), literal(None, String).label("dims_key"),
            *dims,
            func.count(), func.sum(case((failed, 1), else_=0)),
            *[func.coalesce(func.sum(getattr(Call, name)), zero) for name in _TOKENS],
            func.sum(case((Call.pricing_class.not_in(sorted(CLEAN_CLASSES)), 1), else_=0)),
            func.coalesce(func.sum(type_coerce(Call.credits_charged, BigInteger)), zero),
            func.coalesce(func.sum(type_coerce(Call.credits_expected, BigInteger)), zero),
        )
        .group_by(bucket, recorded, *dims)
    )
    if start is not None:
        query = query.where(Call.started_at >= start)
    if end is not None:
        query = query.where(Call.started_at < end)
    return query


def _stored_select(table: RollupTable, start: datetime | None, end: datetime | None):
    model = table.model
    query = select(
        model.bucket_start, model.recorded_bucket, model.dims_key,
        *[getattr(model, name) for name in table.dims],
        *[type_coerce(getattr(model, name), BigInteger) for name in MEASURES],
    )
    if start is not None:
        query = query.where(model.bucket_start >= start)
    if end is not None:
        query = query.where(model.bucket_start < end)
    return query


def _grid(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """A range widened to whole buckets."""
    return (None if start is None else bucket_of(start)), (None if end is None else bucket_after(end))


def whole_days(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """A range widened to whole UTC days (the widest buckets made from a day's calls)."""
    day = DAY_TABLES[-1]
    assert day.grain == DAY and all(table.grain <= DAY for table in DAY_TABLES)
    return (None if start is None else day.floor(as_utc(start))), (None if end is None else day.ceil(as_utc(end)))


def _group(row) -> tuple[RollupKey, Dims, Sums]:
    dims = Dims(*row[3:13])
    dims = dims._replace(failed=bool(dims.failed))
    key = RollupKey(row[0], row[1], row[2] if row[2] is not None else dims_key(tuple(dims)))
    return key, dims, Sums(*(int(value) for value in row[13:]))


def recompute(session: Session, start: datetime | None = None, end: datetime | None = None) -> dict[RollupKey, tuple[Dims, Sums]]:
    """The 15-minute rollup rows of the buckets in [start, end) (widened to whole buckets) as the raw calls give them."""
    start, end = _grid(start, end)
    dialect = session.get_bind().dialect.name
    groups = (_group(row) for row in session.execute(_recompute_select(dialect, start, end)))
    return {key: (dims, sums) for key, dims, sums in groups}


def _inside(bucket: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or bucket >= start) and (end is None or bucket < end)


def rebuild(session: Session, start: datetime | None = None, end: datetime | None = None,
            tables: Sequence[RollupTable] = TABLES, months: bool = True) -> int:
    """Make the rollup rows of [start, end) anew from the raw calls: the 15-minute table's whole buckets, the wider
    tables' whole UTC days around them; how many 15-minute rows.

    The wider tables are the 15-minute recompute of the whole days summed
    again (as the writer sums its batch). In the caller's transaction, writers
    kept out of the rollups until it commits (PostgreSQL: EXCLUSIVE lets reads
    go on; SQLite: the DELETE takes the one write lock first, so the recompute
    reads the newest calls): a writer's call is then either in the recompute
    or added after it, once. `tables`: which (a migration builds those it makes). The monthly users' table is
    then made anew for the UTC months the days touch, from the daily users' rows (`rollup_months`), unless
    `months` is false: a rebuild of many days makes each month once after them (`rollup_months.remake_months`).
    """
    months = months and MONTHLY_USERS in tables
    tables = [table for table in DAY_TABLES if table in tables]
    start, end = _grid(start, end)
    wide_start, wide_end = whole_days(start, end)
    if session.get_bind().dialect.name == "postgresql":
        for table in tables + ([MONTHLY_USERS] if months else []):  # the writers' order
            session.execute(text(f"LOCK TABLE {table.name} IN EXCLUSIVE MODE"))
    for table in tables:
        low, high = (start, end) if table is QUARTERLY else (wide_start, wide_end)
        delete = table.model.__table__.delete()
        if low is not None:
            delete = delete.where(table.model.bucket_start >= low)
        if high is not None:
            delete = delete.where(table.model.bucket_start < high)
        session.execute(delete)
    every = {(key.bucket_start, key.recorded_bucket, tuple(dims)): sums
             for key, (dims, sums) in recompute(session, wide_start, wide_end).items()}
    wider = coarsen(every)
    quarter = {key: sums for key, sums in every.items() if _inside(key[0], start, end)}
    wider[QUARTERLY] = quarter
    for table in tables:
        upsert_table(session, table, wider[table])
    if months:
        rebuild_months(session, wide_start, wide_end)
    return len(quarter)


class Difference(NamedTuple):
    """A rollup row that is not what the raw calls give (None: no such row on that side)."""

    key: RollupKey
    dims: tuple  # the table's dimension values (Dims for call_rollups)
    stored: Sums | None
    recomputed: Sums | None
    table: str = QUARTERLY.name


class Comparison(NamedTuple):
    buckets: int  # the 15-minute buckets with calls
    calls: int
    differences: list[Difference]
    skipped: int = 0  # buckets left out: their raw calls were deleted by retention (`skip`)


Ranges = Sequence[tuple[datetime, datetime]]


def _skipped(bucket: datetime, skip: Ranges, width: timedelta = BUCKET) -> bool:
    return any(low < bucket + width and bucket < high for low, high in skip)


def compare(session: Session, start: datetime | None = None, end: datetime | None = None,
            skip: Ranges = ()) -> Comparison:
    """Every rollup table beside the raw calls' recompute, one UTC day at a time, all read from one snapshot when the
    session has not begun (PostgreSQL: REPEATABLE READ; SQLite: BEGIN): the 15-minute table over [start, end) (whole
    buckets), the wider tables over the whole UTC days it touches.

    A stored row whose dims_key is not its dimensions' key is a difference too
    (readers would never find it where it belongs). A bucket that overlaps a
    range of `skip` (whose raw calls retention deleted) is left out, counted
    (15-minute buckets).
    """
    if not session.in_transaction():
        _read_snapshot(session)
    buckets = calls = skipped = 0
    differences: list[Difference] = []
    found = days(session, start, end)
    for day_start, day_end in found:
        day = _compare_range(session, day_start, day_end, skip)
        buckets, calls, skipped = buckets + day.buckets, calls + day.calls, skipped + day.skipped
        differences += day.differences
    if found:  # the months those days touch, beside their daily users' rows summed again
        differences += [Difference(RollupKey(*key), dims, mine and Sums(*mine), theirs and Sums(*theirs), MONTHLY_USERS.name)
                        for key, dims, mine, theirs in compare_months(session, found[0][0], found[-1][1])]
    return Comparison(buckets, calls, differences, skipped)


def _read_snapshot(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:  # pysqlite begins no transaction for reads: each SELECT would read the newest data
        connection = session.connection()
        if not connection.connection.driver_connection.in_transaction:
            connection.exec_driver_sql("BEGIN")


def days(session: Session, start: datetime | None = None, end: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """[start, end) (whole buckets) cut at UTC midnights, from the first call or rollup in it to the last."""
    start, end = _grid(start, end)
    first = min(filter(None, (session.scalar(select(func.min(Call.started_at))),
                              session.scalar(select(func.min(CallRollup.bucket_start))))), default=None)
    last = max(filter(None, (session.scalar(select(func.max(Call.started_at))),
                             session.scalar(select(func.max(CallRollup.bucket_start))))), default=None)
    if first is None or last is None:
        return []
    low = bucket_of(first) if start is None else max(start, bucket_of(first))
    high = bucket_of(last) + BUCKET if end is None else min(end, bucket_of(last) + BUCKET)
    ranges = []
    while low < high:
        midnight = low.replace(hour=0, minute=0) + timedelta(days=1)
        ranges.append((low, min(midnight, high)))
        low = midnight
    return ranges


def _compare_range(session: Session, start: datetime, end: datetime, skip: Ranges = ()) -> Comparison:
    """[start, end), within one UTC day: the 15-minute table over it, the wider ones over its whole day."""
    day_start, day_end = whole_days(start, end)
    every = {(key.bucket_start, key.recorded_bucket, tuple(dims)): sums
             for key, (dims, sums) in recompute(session, day_start, day_end).items()}
    recomputed = coarsen(every)
    recomputed[QUARTERLY] = {key: sums for key, sums in every.items() if _inside(key[0], start, end)}
    differences: list[Difference] = []
    left_out: set[datetime] = set()
    for table in DAY_TABLES:
        low, high = (start, end) if table is QUARTERLY else (day_start, day_end)
        stored: dict[tuple, Sums] = {}
        for row in session.execute(_stored_select(table, low, high)):
            width = len(table.dims)
            dims = tuple(row[3 : 3 + width])
            if table is QUARTERLY:
                dims = Dims(*dims)._replace(failed=bool(dims[-1]))
            if skip and _skipped(row[0], skip, table.grain):
                if table is QUARTERLY:
                    left_out.add(row[0])
                continue
            sums = Sums(*(int(value) for value in row[3 + width :]))
            if row[2] != dims_key(tuple(dims)):
                differences.append(Difference(RollupKey(row[0], row[1], row[2]), dims, sums, None, table.name))
            else:
                stored[(row[0], row[1], tuple(dims))] = sums
        theirs = {}
        for key, sums in recomputed[table].items():
            if skip and _skipped(key[0], skip, table.grain):
                if table is QUARTERLY:
                    left_out.add(key[0])
                continue
            theirs[key] = Sums(*sums)
        for key in sorted(stored.keys() | theirs.keys(), key=lambda k: (k[0], k[1], dims_key(k[2]))):
            mine, recomputed_sums = stored.get(key), theirs.get(key)
            if mine != recomputed_sums:
                dims = Dims(*key[2]) if table is QUARTERLY else key[2]
                differences.append(Difference(RollupKey(key[0], key[1], dims_key(key[2])), dims, mine,
                                              recomputed_sums, table.name))
    quarters = recomputed[QUARTERLY]
    buckets = {key[0] for key in quarters if not (skip and _skipped(key[0], skip))}
    calls = sum(sums.calls for key, sums in quarters.items() if not (skip and _skipped(key[0], skip)))
    return Comparison(len(buckets), calls, differences, len(left_out))


def describe_differences(differences: list[Difference]) -> list[str]:
    """One line per bucket of a table that differs: the calls and credits the rollups hold and the calls give."""
    by_bucket: dict[tuple[str, datetime], list[Difference]] = {}
    for difference in differences:
        by_bucket.setdefault((difference.table, difference.key.bucket_start), []).append(difference)
    lines = []
    for (table, bucket), found in sorted(by_bucket.items(), key=lambda item: (item[0][0] != QUARTERLY.name, item[0])):
        stored = _total([d.stored for d in found])
        recomputed = _total([d.recomputed for d in found])
        lines.append(
            ("" if table == QUARTERLY.name else f"{table} ")
            + f"bucket {bucket:%Y-%m-%dT%H:%MZ}: {len(found)} rollup row{'s' * (len(found) != 1)} differ; "
            f"rollups {stored[0]} calls {fmt(from_nano(stored[1]))} credits charged, "
            f"calls {recomputed[0]} calls {fmt(from_nano(recomputed[1]))} credits charged"
            + _dims_hint(found)
        )
    return lines


def _total(sums: list[Sums | None]) -> tuple[int, int]:
    present = [s for s in sums if s is not None]
    return sum(s.calls for s in present), sum(s.credits_charged for s in present)


_BY_NAME = {table.name: table for table in TABLES}


def _dims_hint(found: list[Difference]) -> str:
    table = _BY_NAME[found[0].table]
    if "project" not in table.dims:
        return ""
    at = table.dims.index("project")
    projects = sorted({printable(str(d.dims[at])) for d in found})
    return f" (projects: {', '.join(projects[:5])}{', ...' if len(projects) > 5 else ''})"
