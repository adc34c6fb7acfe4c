"""The rollup tables, their widths and dimensions, and the writer's sorted upserts into them.

`call_rollups` sums every dimension per 15 minutes (the range edges, verify,
and every report a narrower table cannot answer). The others sum fewer
dimensions per 15 minutes, UTC hour, day or month, with the recording floored
to the same width: far fewer rows than calls where the dimensions they drop
(user, tags, models) spread the calls, or where a user's calls of a month
share a row. Every zone's offset is a multiple of 15 minutes, so a local
period is whole days, whole hours and quarter hours; `rollup_levels` picks,
for a read, which table answers which part.

`dims_key` is the one place that knows how a row's dimensions are encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from hashlib import sha256
from operator import add, itemgetter

from sqlalchemy.orm import Session

from .models import (CallRollup, CallRollupDaily, CallRollupDailyUser, CallRollupHourly, CallRollupHourlyProject,
                     CallRollupHourlyTags, CallRollupMonthlyUser, CallRollupQuarterModels)

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
QUARTER, HOUR, DAY = timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)
# A UTC calendar month: not a fixed width (28 to 31 days); this value only orders it after the day.
MONTH = timedelta(days=31)


@dataclass(frozen=True, eq=False)
class RollupTable:
    """One rollup table: its ORM class, its width (a bucket: 15 minutes, an hour, a UTC day or month) and its
    dimensions (DIMENSIONS order)."""

    model: type
    grain: timedelta
    dims: tuple[str, ...]
    positions: tuple[int, ...] = field(init=False)  # of its dims in DIMENSIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(DIMENSIONS.index(name) for name in self.dims))

    @property
    def name(self) -> str:
        return self.model.__tablename__

    def floor(self, moment: datetime) -> datetime:
        """The start of this table's UTC bucket holding `moment` (aware, UTC)."""
        if self.grain == MONTH:
            return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if self.grain == DAY:
            return moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.grain == HOUR:
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)

    def ceil(self, moment: datetime) -> datetime:
        start = self.floor(moment)
        return start if start == moment else self.after(start)

    def after(self, start: datetime) -> datetime:
        """The bucket after the one starting at `start` (a month: the first of the next)."""
        if self.grain == MONTH:
            return (start + timedelta(days=32)).replace(day=1)
        return start + self.grain

    def project(self, dims: tuple) -> tuple:
        """Its dimension values out of every dimension's (DIMENSIONS order)."""
        return tuple(dims[i] for i in self.positions)


QUARTERLY = RollupTable(CallRollup, QUARTER, DIMENSIONS)
_MODELS = ("model_requested", "model_reported", "rate_card", "pricing_class")
QUARTER_MODELS = RollupTable(CallRollupQuarterModels, QUARTER, _MODELS)
HOURLY = RollupTable(CallRollupHourly, HOUR, _MODELS)
HOURLY_TAGS = RollupTable(CallRollupHourlyTags, HOUR, ("tags", "rate_card"))
DAILY = RollupTable(CallRollupDaily, DAY, ("key_fingerprint", "key_last4", "project", "rate_card"))
DAILY_USERS = RollupTable(CallRollupDailyUser, DAY, ("key_fingerprint", "key_last4", "project", "end_user", "rate_card"))
# The daily table's dimensions per UTC hour: a local period's ends by project, key or account.
HOURLY_PROJECTS = RollupTable(CallRollupHourlyProject, HOUR, DAILY.dims)
# The daily users' table summed again per UTC month (the same dimensions: the same dims_key a row).
MONTHLY_USERS = RollupTable(CallRollupMonthlyUser, MONTH, DAILY_USERS.dims)
# Every table, in the order a writer upserts them (one order: two writers cannot deadlock across tables).
# The daily tables last of those of a UTC day at most (`rollups.whole_days`); of two tables of one width and as many
# dimensions, a read takes the first (the hourly models' before the hourly projects': fewer rows an hour).
TABLES = (QUARTERLY, QUARTER_MODELS, HOURLY, HOURLY_TAGS, HOURLY_PROJECTS, DAILY, DAILY_USERS, MONTHLY_USERS)
WIDER = TABLES[1:]
# The tables of a fixed width, a UTC day at most: made from a day's calls alone (the monthly one from the days').
DAY_TABLES = tuple(table for table in TABLES if table.grain <= DAY)


def _key(values: tuple) -> str:
    """sha256 hex of the dimension values (a table's dims order), each written as `-` (NULL), `T` or `F` (a flag),
    or its length, `:` and itself, joined by `|`: one text a set of values, NULL, "" and false kept apart."""
    digest = _SHA256.copy()  # a copy of a begun sha256: OpenSSL's digest is not looked up again for each key
    digest.update("|".join(map(_part, values)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


dims_key = lru_cache(maxsize=65536)(_key)  # the readers' and rebuilds' (the same values recur across their calls)


class Keys(dict):
    """{dimension values: dims_key}, made as asked, for one batch's tables (the monthly users' values are the daily
    users'): a dict lookup each, and none kept beyond the batch (at `spread` nearly every 15-minute group's values
    are new, and a process-wide cache of them only grows what the garbage collector walks)."""

    def __missing__(self, values: tuple) -> str:
        found = self[values] = _key(values)
        return found


_SHA256 = sha256()
_FLAGS = {None: "-", True: "T", False: "F"}


class _Parts(dict):
    """Each value's part of the text, kept for the values that recur (projects, users, models): a lookup in C."""

    def __missing__(self, value: str) -> str:
        if len(self) > 65536:
            self.clear()
            self.update(_FLAGS)
        found = self[value] = f"{len(value)}:{value}"
        return found


_PARTS = _Parts(_FLAGS)
_part = _PARTS.__getitem__


def _projection(positions: tuple[int, ...]):
    """A function of every dimension's values (DIMENSIONS order) giving a table's, as a tuple (C's itemgetter)."""
    if len(positions) == 1:
        (at,) = positions
        return lambda dims: (dims[at],)
    return itemgetter(*positions)


def coarsen(groups: dict[tuple, list[int]]) -> dict[RollupTable, dict[tuple, list[int]]]:
    """The 15-minute groups {(bucket, recorded bucket, every dimension): sums} summed again into each other table's,
    in TABLES order (a month's table from its day's table of the same dimensions: fewer groups).

    The buckets of each table are floored once a (bucket, recorded bucket)
    pair of the groups (a batch holds few); a group is then one key and one
    dict lookup a table. A group's first sums are shared between the tables,
    never changed in place (a sum of two is a new list)."""
    found = {QUARTERLY: groups}
    for source, tables in _PLAN:
        found.update(_summed(found[source], source, tables))
    return {table: found[table] for table in TABLES}


def _summed(groups: dict[tuple, list[int]], source: RollupTable,
            tables: tuple[RollupTable, ...]) -> dict[RollupTable, dict[tuple, list[int]]]:
    """`source`'s groups summed again into each of `tables` (of dimensions among the source's, buckets as wide or
    wider)."""
    projections = [None if table.dims == source.dims else _projection(tuple(map(source.dims.index, table.dims)))
                   for table in tables]
    floors = [table.floor for table in tables]
    intos: list[dict] = [{} for _ in tables]
    spans: dict[tuple[datetime, datetime], list[tuple[datetime, datetime]]] = {}
    for (bucket, recorded, dims), sums in groups.items():
        span = spans.get((bucket, recorded))
        if span is None:
            span = spans[bucket, recorded] = [(floor(bucket), floor(recorded)) for floor in floors]
        for project, into, (start, seen) in zip(projections, intos, span):
            key = (start, seen, dims if project is None else project(dims))
            total = into.get(key)
            into[key] = sums if total is None else list(map(add, total, sums))
    return dict(zip(tables, intos))


def _plan(tables: tuple[RollupTable, ...]) -> tuple[tuple[RollupTable, tuple[RollupTable, ...]], ...]:
    """((source, the tables summed from its groups), ...), sources first, of `tables` (the 15-minute one first): a
    table of a day or less from the 15-minute groups, a wider one from a day's table of the same dimensions when
    there is one (a month's users' from the day's: fewer groups), else from the 15-minute groups too."""
    quarterly, wider = tables[0], tables[1:]

    def source(table: RollupTable) -> RollupTable:
        if table.grain > DAY:
            return next((day for day in wider if day.grain == DAY and day.dims == table.dims), quarterly)
        return quarterly

    sources = {table: source(table) for table in wider}
    return tuple((s, tuple(t for t in wider if sources[t] is s))
                 for s in (quarterly, *wider) if s in sources.values())


_PLAN = _plan(TABLES)


def _statements(table: RollupTable) -> tuple[str, str]:
    columns = ("bucket_start", "recorded_bucket", "dims_key", *table.dims, *MEASURES)
    conflict = (" ON CONFLICT (bucket_start, recorded_bucket, dims_key) DO UPDATE SET "
                + ", ".join(f"{name} = {table.name}.{name} + excluded.{name}" for name in MEASURES))
    sqlite = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})" + conflict
    # PostgreSQL: one statement a batch, its rows as binary arrays (a statement a row costs a round trip's work each).
    kinds = ("timestamptz", "timestamptz", "text", *["boolean" if d == "failed" else "text" for d in table.dims],
             *["bigint"] * len(MEASURES))
    postgres = (f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest("
                + ", ".join(f"%b::{kind}[]" for kind in kinds) + ") ORDER BY 1, 2, 3" + conflict)
    return sqlite, postgres


_STATEMENTS = {table: _statements(table) for table in TABLES}
_KEY = itemgetter(0, 1, 2)  # (bucket, recorded bucket, dims_key): the one order of every writer's upserts
_GROUPS_A_STATEMENT = 20_000


def upsert(session: Session, table: RollupTable, groups: dict, keys: Keys | None = None) -> None:
    """Add each group's sums {(bucket, recorded bucket, the table's dimension values): sums} to its row of `table`
    (made when missing), in key order: (bucket, recorded bucket, dims_key). `keys`: the batch's, shared by its tables.

    Each row is made once, with the values as the statement binds them
    (SQLite: the buckets as texts of one width, which sort as the moments
    do; the flag as 0 or 1, which SQLite stores for it, where a bool would
    go through sqlite3's adapter lookup), and sorted in place."""
    if not groups:
        return
    keys = Keys() if keys is None else keys
    sqlite, postgres_sql = _STATEMENTS[table]
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        rows = [(bucket, recorded, keys[dims], *dims, *sums) for (bucket, recorded, dims), sums in groups.items()]
    elif table.dims[-1] == "failed":  # DIMENSIONS order: the flag last
        rows = [(_text(bucket), _text(recorded), keys[dims], *dims[:-1], 1 if dims[-1] else 0, *sums)
                for (bucket, recorded, dims), sums in groups.items()]
    else:
        rows = [(_text(bucket), _text(recorded), keys[dims], *dims, *sums)
                for (bucket, recorded, dims), sums in groups.items()]
    rows.sort(key=_KEY)
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        for at in range(0, len(rows), _GROUPS_A_STATEMENT):  # a rebuild's day may hold many
            part = rows[at : at + _GROUPS_A_STATEMENT]
            if postgres:
                cursor.execute(postgres_sql, [list(column) for column in zip(*part)])
            else:
                cursor.executemany(sqlite, part)
    finally:
        cursor.close()


@lru_cache(maxsize=4096)
def _text(bucket: datetime) -> str:
    """A bucket as SQLAlchemy's SQLite DATETIME stores it (UTC, microseconds always; a batch's few buckets recur)."""
    return f"{bucket:%Y-%m-%d %H:%M}:00.000000"
