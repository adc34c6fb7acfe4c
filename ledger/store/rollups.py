"""The `call_rollups` table: exact sums of calls per 15-minute UTC bucket, recorded bucket and dimensions.

The writer adds the calls it wrote in its own transaction (`add_calls`,
sorted keys, INSERT ... ON CONFLICT DO UPDATE adding the deltas); `rebuild`
makes a range's rows anew from the raw `calls` (GROUP BY in SQL), and
`compare` sets the two side by side from one snapshot. `dims_key` is the one
place that knows how a row's dimensions are encoded.
"""

from __future__ import annotations

import hashlib
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

BUCKET = timedelta(minutes=15)
FAILED_STATUSES = (ERROR, FAILED)
# The dimension columns, in the order dims_key encodes them (`failed` is derived from calls.status).
DIMENSIONS = (
    "key_fingerprint", "key_last4", "project", "end_user", "model_requested", "model_reported", "tags", "rate_card",
    "pricing_class", "failed",
)
# The sums, integers (credits in nano-credits).
MEASURES = (
    "calls", "failed_calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "findings",
    "credits_charged", "credits_expected",
)
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


@lru_cache(maxsize=65536)
def dims_key(values: tuple) -> str:
    """sha256 hex of the dimension values (DIMENSIONS order), each written as `-` (NULL), `T` or `F` (a flag), or
    its length, `:` and itself, joined by `|`: one text a set of values, NULL, "" and false kept apart."""
    text = "|".join(["-" if value is None else _FLAGS[value] if value is True or value is False
                     else f"{len(value)}:{value}" for value in values])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_FLAGS = {True: "T", False: "F"}


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


_COLUMNS = ("bucket_start", "recorded_bucket", "dims_key", *DIMENSIONS, *MEASURES)
_ON_CONFLICT = (
    " ON CONFLICT (bucket_start, recorded_bucket, dims_key) DO UPDATE SET "
    + ", ".join(f"{name} = call_rollups.{name} + excluded.{name}" for name in MEASURES)
)
_SQLITE_UPSERT = f"INSERT INTO call_rollups ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})" + _ON_CONFLICT
# PostgreSQL: one statement a batch, its rows as arrays (a statement a row costs a round trip's work each).
_ARRAY_TYPES = ("timestamptz", "timestamptz", "text", *["text"] * (len(DIMENSIONS) - 1), "boolean", *["bigint"] * len(MEASURES))
_POSTGRES_UPSERT = (
    f"INSERT INTO call_rollups ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%b::{kind}[]" for kind in _ARRAY_TYPES)
    + ") ORDER BY 1, 2, 3" + _ON_CONFLICT
)


def add_calls(session: Session, rows: Iterable[Sequence], columns: Sequence[str], recorded_at: datetime) -> int:
    """Add `calls` rows the writer has just inserted (recorded at `recorded_at`) to the rollups, in its
    transaction: how many rollup rows.

    The groups are upserted in one order, (bucket_start, recorded_bucket,
    dims_key), so that writers sharing rows lock them in the same order and
    cannot deadlock.
    """
    groups = deltas(rows, columns, recorded_at)
    if groups:
        upsert(session, groups)
    return len(groups)


def upsert(session: Session, groups: dict[tuple, list[int]] | dict[tuple, Sums]) -> None:
    """Add each group's sums to its rollup row (made when missing), in key order."""
    ordered = sorted(
        ((bucket, recorded, dims_key(dims), dims, sums) for (bucket, recorded, dims), sums in groups.items()),
        key=lambda group: group[:3],
    )
    postgres = session.get_bind().dialect.name == "postgresql"
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        for at in range(0, len(ordered), _GROUPS_A_STATEMENT):  # a rebuild's day may hold many
            part = ordered[at : at + _GROUPS_A_STATEMENT]
            if postgres:
                cursor.execute(_POSTGRES_UPSERT, [list(column) for column in zip(*[(b, r, k, *d, *s) for b, r, k, d, s in part])])
            else:
                cursor.executemany(_SQLITE_UPSERT, [(_text(b), _text(r), k, *d, *s) for b, r, k, d, s in part])
    finally:
        cursor.close()


_GROUPS_A_STATEMENT = 20_000


def _text(bucket: datetime) -> str:
    """A bucket as SQLAlchemy's SQLite DATETIME stores it (UTC, microseconds always)."""
    return f"{bucket:%Y-%m-%d %H:%M}:00.000000"


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


def _stored_select(start: datetime | None, end: datetime | None):
    query = select(
        CallRollup.bucket_start, CallRollup.recorded_bucket, CallRollup.dims_key,
        *[getattr(CallRollup, name) for name in DIMENSIONS],
        *[type_coerce(getattr(CallRollup, name), BigInteger) for name in MEASURES],
    )
    if start is not None:
        query = query.where(CallRollup.bucket_start >= start)
    if end is not None:
        query = query.where(CallRollup.bucket_start < end)
    return query


def _grid(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """A range widened to whole buckets."""
    return (None if start is None else bucket_of(start)), (None if end is None else bucket_after(end))


def _group(row) -> tuple[RollupKey, Dims, Sums]:
    dims = Dims(*row[3:13])
    dims = dims._replace(failed=bool(dims.failed))
    key = RollupKey(row[0], row[1], row[2] if row[2] is not None else dims_key(tuple(dims)))
    return key, dims, Sums(*(int(value) for value in row[13:]))


def recompute(session: Session, start: datetime | None = None, end: datetime | None = None) -> dict[RollupKey, tuple[Dims, Sums]]:
    """The rollup rows of the buckets in [start, end) (widened to whole buckets) as the raw calls give them."""
    start, end = _grid(start, end)
    dialect = session.get_bind().dialect.name
    groups = (_group(row) for row in session.execute(_recompute_select(dialect, start, end)))
    return {key: (dims, sums) for key, dims, sums in groups}


def rebuild(session: Session, start: datetime | None = None, end: datetime | None = None) -> int:
    """Make the rollup rows of the buckets in [start, end) (whole buckets) anew from the raw calls: how many.

    In the caller's transaction, writers kept out of the rollups until it
    commits (PostgreSQL: EXCLUSIVE lets reads go on; SQLite: the DELETE takes
    the one write lock first, so the recompute reads the newest calls): a
    writer's call is then either in the recompute or added after it, once.
    """
    start, end = _grid(start, end)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE call_rollups IN EXCLUSIVE MODE"))
    delete = CallRollup.__table__.delete()
    if start is not None:
        delete = delete.where(CallRollup.bucket_start >= start)
    if end is not None:
        delete = delete.where(CallRollup.bucket_start < end)
    session.execute(delete)
    groups = recompute(session, start, end)
    if groups:
        upsert(session, {(key.bucket_start, key.recorded_bucket, dims): sums for key, (dims, sums) in groups.items()})
    return len(groups)


class Difference(NamedTuple):
    """A rollup row that is not what the raw calls give (None: no such row on that side)."""

    key: RollupKey
    dims: Dims
    stored: Sums | None
    recomputed: Sums | None


class Comparison(NamedTuple):
    buckets: int  # the 15-minute buckets with calls
    calls: int
    differences: list[Difference]
    skipped: int = 0  # buckets left out: their raw calls were deleted by retention (`skip`)


Ranges = Sequence[tuple[datetime, datetime]]


def _skipped(bucket: datetime, skip: Ranges) -> bool:
    return any(low <= bucket < high for low, high in skip)


def compare(session: Session, start: datetime | None = None, end: datetime | None = None,
            skip: Ranges = ()) -> Comparison:
    """The rollups of [start, end) (whole buckets) beside the raw calls' recompute, one UTC day at a time, all
    read from one snapshot when the session has not begun (PostgreSQL: REPEATABLE READ; SQLite: BEGIN).

    A stored row whose dims_key is not its dimensions' key is a difference too
    (readers would never find it where it belongs). A bucket starting in a
    range of `skip` (whose raw calls retention deleted) is left out, counted.
    """
    if not session.in_transaction():
        _read_snapshot(session)
    buckets = calls = skipped = 0
    differences: list[Difference] = []
    for day_start, day_end in days(session, start, end):
        day = _compare_range(session, day_start, day_end, skip)
        buckets, calls, skipped = buckets + day.buckets, calls + day.calls, skipped + day.skipped
        differences += day.differences
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
    dialect = session.get_bind().dialect.name
    union = _stored_select(start, end).add_columns(literal(1).label("side")).union_all(
        _recompute_select(dialect, start, end).add_columns(literal(0).label("side"))
    )
    stored: dict[RollupKey, tuple[Dims, Sums]] = {}
    recomputed: dict[RollupKey, tuple[Dims, Sums]] = {}
    differences: list[Difference] = []
    left_out: set[datetime] = set()
    for row in session.execute(union):
        key, dims, sums = _group(row[:-1])
        if skip and _skipped(key.bucket_start, skip):
            left_out.add(key.bucket_start)
            continue
        if row[-1]:
            if key.dims_key != dims_key(tuple(dims)):
                differences.append(Difference(key, dims, sums, None))
            else:
                stored[key] = (dims, sums)
        else:
            recomputed[key] = (dims, sums)
    for key in sorted(stored.keys() | recomputed.keys()):
        mine, theirs = stored.get(key), recomputed.get(key)
        if mine is None or theirs is None or mine[1] != theirs[1]:
            differences.append(Difference(key, (mine or theirs)[0], mine and mine[1], theirs and theirs[1]))
    buckets = {key.bucket_start for key in recomputed}
    return Comparison(len(buckets), sum(sums.calls for _, sums in recomputed.values()), differences, len(left_out))


def describe_differences(differences: list[Difference]) -> list[str]:
    """One line per 15-minute bucket that differs: the calls and credits the rollups hold and the calls give."""
    by_bucket: dict[datetime, list[Difference]] = {}
    for difference in differences:
        by_bucket.setdefault(difference.key.bucket_start, []).append(difference)
    lines = []
    for bucket, found in sorted(by_bucket.items()):
        stored = _total([d.stored for d in found])
        recomputed = _total([d.recomputed for d in found])
        lines.append(
            f"bucket {bucket:%Y-%m-%dT%H:%MZ}: {len(found)} rollup row{'s' * (len(found) != 1)} differ; "
            f"rollups {stored[0]} calls {fmt(from_nano(stored[1]))} credits charged, "
            f"calls {recomputed[0]} calls {fmt(from_nano(recomputed[1]))} credits charged"
            + _dims_hint(found)
        )
    return lines


def _total(sums: list[Sums | None]) -> tuple[int, int]:
    present = [s for s in sums if s is not None]
    return sum(s.calls for s in present), sum(s.credits_charged for s in present)


def _dims_hint(found: list[Difference]) -> str:
    projects = sorted({printable(str(d.dims.project)) for d in found})
    return f" (projects: {', '.join(projects[:5])}{', ...' if len(projects) > 5 else ''})"
