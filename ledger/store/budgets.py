"""A budget's spend: SUM(credits_charged) over the calls of its scope that started in its period, in SQL.

Nothing keeps a running total: each evaluation sums the ledger afresh, so
nothing can drift or be reset wrongly. A scope with a project, a key or an
account is summed from an index alone (`calls (project, started_at,
credits_charged)` and the same by key) by `spend` (a hard limit's refresh);
`spends` sums the budgets of one period that name one field together, from
the rollups (a project's, a key's or an account's whole UTC days from the
daily table, the rest of its period from the index), and those whose scope
names none of those in one pass.
A key (by label) and an account stand for the fingerprints `api_keys` holds
for them. The other scopes (users, models, tags, the whole ledger), which
read every call of the period, sum its whole buckets from the widest rollup
tables holding the dimensions they name (`rollup_levels`: days, hours,
quarters) and a rolling period's edges off the grid from the raw calls:
never more rows than the calls, far fewer where a bucket's calls share
their dimensions. An indexed scope stays on its index, which reads
only its own calls (BENCHMARKS.md, "Rollups (issue 26)"), unless its period
starts before the retention horizon (raw calls of closed periods deleted):
then it sums the rollups too. A process's own calls stay raw; a hard limit's
refresh reads through `limit_reads`.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterator, NamedTuple, Sequence

from sqlalchemy import (BigInteger, Integer, String, and_, case, cast, func, literal_column, or_, select,
                        text, type_coerce, union_all)
from sqlalchemy.orm import Session

from ..accounting.buckets import split_range
from ..accounting.budgets import Scope, tag_fragments
from ..money import ZERO, from_nano
from .models import ApiKey, Call, Credits
from .retention import horizon
from .rollup_levels import Months, levels
from .rollup_tables import DAILY, DAY, DIMENSIONS


class SpendQuery(NamedTuple):
    scope: Scope
    start: datetime
    end: datetime


class Spend(NamedTuple):
    credits: Decimal
    calls: int  # calls in the scope and period (refused ones included: they are charged nothing)


def _contains(session: Session, column, text: str):
    name = "strpos" if session.get_bind().dialect.name == "postgresql" else "instr"
    return getattr(func, name)(column, text) > 0


def scope_conditions(session: Session, scope: Scope, fingerprints: frozenset[str] | None = None, table=Call) -> list:
    """The WHERE conditions that pick a scope's calls (or rollup rows: `table`); `fingerprints`, when given, are the
    keys its account or label stand for."""
    conditions = []
    if scope.project is not None:
        conditions.append(table.project == scope.project)
    if scope.user is not None:
        conditions.append(table.end_user == scope.user)
    if scope.model is not None:
        conditions.append(table.model_requested == scope.model)
    if scope.by_key and fingerprints is not None:
        conditions.append(table.key_fingerprint.in_(sorted(fingerprints)))
    elif scope.by_key:
        if scope.key is not None:
            conditions.append(table.key_fingerprint.in_(select(ApiKey.fingerprint).where(ApiKey.label == scope.key)))
        if scope.account is not None:
            conditions.append(table.key_fingerprint.in_(select(ApiKey.fingerprint).where(ApiKey.account == scope.account)))
    for name, value in scope.tags:
        first, other = tag_fragments(name, value)
        conditions.append(or_(_contains(session, table.tags, first), _contains(session, table.tags, other)))
    return conditions


def raw_window(start: datetime, end: datetime) -> list[tuple[type, list, int]]:
    """[start, end) as (table, WHERE, sign): the raw calls alone."""
    return [(Call, [Call.started_at >= start, Call.started_at < end], 1)]


def parts(start: datetime, end: datetime, needed: frozenset[str] = frozenset(DIMENSIONS)) -> list[tuple[type, list, int]]:
    """[start, end) as (table, WHERE, sign): the whole months, days, hours and quarters from the widest rollup tables
    holding the `needed` dimensions (`rollup_levels`; sign -1: days a month took whole taken away), and the raw calls
    of the edges off the grid."""
    split = split_range(start, end)
    found: list[tuple[type, list, int]] = []
    if split.has_whole:
        whole = (split.whole_start, split.whole_end)
        for part in levels(list(whole), [], needed, whole, Months(*whole)):
            model = part.table.model
            window = [] if part.whole else [model.bucket_start >= split.whole_start, model.bucket_start < split.whole_end]
            found.append((model, [*window, *part.conditions], part.sign))
    if split.edges:
        found.append((Call, [or_(*[and_(Call.started_at >= low, Call.started_at < high) for low, high in split.edges])], 1))
    return found


def day_parts(start: datetime, end: datetime, before: datetime | None = None) -> list[tuple[type, list, int]] | None:
    """[start, end) as (table, WHERE, sign) for a project, key or account: its whole UTC days from the daily table,
    the rest from the raw calls (their index). A day the range holds more than half of is taken whole, the raw calls
    of its hours outside the range taken away. None: a raw part would reach before `before` (retention)."""
    first, last = _day_ceil(start), _day_floor(end)
    days, raw = [first, last], []
    if start < first:  # the hours before the first whole day
        if first - start > DAY / 2:
            days[0] = first - DAY
            raw.append((first - DAY, start, -1))
        else:
            raw.append((start, first, 1))
    if last < end:
        if end - last > DAY / 2:
            days[1] = last + DAY
            raw.append((end, last + DAY, -1))
        else:
            raw.append((last, end, 1))
    if before is not None and any(low < before for low, _, _ in raw):
        return None
    model = DAILY.model
    found = [(model, [model.bucket_start >= days[0], model.bucket_start < days[1]], 1)]
    return found + [(Call, [Call.started_at >= low, Call.started_at < high], sign) for low, high, sign in raw]


def _day_floor(instant: datetime) -> datetime:
    return DAILY.floor(instant.astimezone(timezone.utc))


def _day_ceil(instant: datetime) -> datetime:
    return DAILY.ceil(instant.astimezone(timezone.utc))


def _count(table, picked=None):
    """How many calls: rows of `calls`, or the rollup's counts (of the rows `picked`, when given)."""
    if table is Call:
        return func.count() if picked is None else func.count(case((picked, Call.id)))
    return func.coalesce(func.sum(table.calls if picked is None else case((picked, table.calls))), 0)


def scope_dims(scopes: Sequence[Scope]) -> frozenset[str]:
    """The rollup dimensions the scopes' conditions read."""
    found: set[str] = set()
    for scope in scopes:
        found.update(name for name, given in (("project", scope.project), ("end_user", scope.user),
                                              ("model_requested", scope.model)) if given is not None)
        found.update(["key_fingerprint"] if scope.by_key else [])
        found.update(["tags"] if scope.tags else [])
    return frozenset(found)


def _charged(table, picked=None):
    column = table.credits_charged
    return func.coalesce(func.sum(column if picked is None else case((picked, column))), 0)


def _signed(sign: int, credits, calls) -> tuple:
    """A part's (credits, calls) sums, negated when its rows are taken away."""
    return (credits, calls) if sign > 0 else (-credits, -calls)


def _indexed(scope: Scope) -> bool:
    return scope.project is not None or scope.by_key


def _credits(value) -> Decimal:
    return value if isinstance(value, Decimal) else from_nano(int(value or 0))


def spend(session: Session, scope: Scope, start: datetime, end: datetime, fingerprints: frozenset[str] | None = None,
          *, raw_only: bool = False) -> Spend:
    """What the scope's calls that started in [start, end) were charged, and how many there were (with
    `raw_only`, from the raw calls alone whatever the scope: the rollups' oracle in tests)."""
    credits, calls = ZERO, 0
    # An indexed scope reads its own calls, unless the window reaches where retention deleted some: the rollups then.
    raw = raw_only or (_indexed(scope) and not _before_horizon(session, start))
    for table, window, sign in (raw_window(start, end) if raw else parts(start, end, scope_dims([scope]))):
        query = select(_charged(table), _count(table)).where(*window, *scope_conditions(session, scope, fingerprints, table))
        row = session.execute(query).one()
        credits, calls = credits + sign * _credits(row[0]), calls + sign * int(row[1])
    return Spend(credits, calls)


def _before_horizon(session: Session, start: datetime) -> bool:
    found = horizon(session)
    return found is not None and start < found.before


# Scopes of one key alone, summed for all budgets of a period in one GROUP BY (a key and an account: by the
# fingerprints `api_keys` holds for them).
_GROUPED = {"user": "end_user", "model": "model_requested", "project": "project", "key": "key_fingerprint",
            "account": "key_fingerprint"}
_INDEXED = ("project", "key", "account")


def _single(scope: Scope) -> str | None:
    """The one field the scope names (`user`, `model`, `project`, `key` or `account`), None for several or tags."""
    given = [name for name in ("user", "model", "project", "key", "account") if getattr(scope, name) is not None]
    return given[0] if len(given) == 1 and not scope.tags else None


def _holds_a_day(start: datetime, end: datetime) -> bool:
    """Whether [start, end) holds a whole UTC day: the daily rollups then sum an indexed scope's budgets of that
    period together in fewer rows than their calls (a local day alone stays on the index)."""
    return _day_floor(start) + 2 * DAY <= end


class _Branch(NamedTuple):
    """One SELECT of the spends' statement: sums over `table` WHERE `where` (grouped by `key`, when given), each sum
    a (credits, calls) pair; `targets` says whose: the queries of each sum, or (grouped) of each key's value."""

    table: type
    where: list
    sums: list
    targets: list  # one list of query indexes a sum; grouped: [{value: [query indexes]}]
    key: Any = None


def spends(session: Session, queries: Sequence[SpendQuery]) -> list[Spend]:
    """The spend of each query, in order, in one statement (a UNION ALL of one SELECT a sum or pass, each planned
    as it would be alone) and one read of the retention horizon, however many queries there are.

    The scopes of one period that name only a user, a model, a project, a
    key or an account are one GROUP BY (a project, a key or an account only
    when the period holds a whole UTC day: else, and with more fields, on its
    index, as `spend` reads it); the whole ledger one sum; the rest of one
    period, one pass with a conditional sum each. Each pass (and the whole
    ledger's sum) is over the widest rollup tables' whole buckets and the raw
    calls of the edges.
    """
    found: list[Spend] = [Spend(ZERO, 0)] * len(queries)
    branches: list[_Branch] = []
    grouped: dict[tuple[str, datetime, datetime], list[int]] = {}
    before = None
    if any(_indexed(q.scope) for q in queries):
        found_horizon = horizon(session)
        before = None if found_horizon is None else found_horizon.before
    for index, query in enumerate(queries):
        kind = _single(query.scope)
        if kind in _INDEXED and _holds_a_day(query.start, query.end):
            grouped.setdefault((kind, query.start, query.end), []).append(index)
        elif _indexed(query.scope) or query.scope == Scope():
            # as `spend`: an indexed scope on its index unless its window reaches where retention deleted calls
            raw = _indexed(query.scope) and (before is None or query.start >= before)
            pieces = raw_window(query.start, query.end) if raw else parts(query.start, query.end, scope_dims([query.scope]))
            for table, window, sign in pieces:
                where = [*window, *scope_conditions(session, query.scope, None, table)]
                branches.append(_Branch(table, where, [_signed(sign, _charged(table), _count(table))], [[index]]))
        else:
            grouped.setdefault((kind or "pass", query.start, query.end), []).append(index)
    keys = _keys(session) if any(kind in ("key", "account") for kind, _, _ in grouped) else {}
    for (kind, start, end), indexes in grouped.items():
        pieces = day_parts(start, end, before) if kind in _INDEXED else None
        if pieces is None:
            pieces = parts(start, end, scope_dims([queries[i].scope for i in indexes]))
        for table, window, sign in pieces:
            if kind in _GROUPED:
                column = getattr(table, _GROUPED[kind])
                by_value: dict[str, list[int]] = {}
                for i in indexes:
                    for value in _values(kind, queries[i].scope, keys):
                        by_value.setdefault(value, []).append(i)
                if not by_value:  # keys no budget's label or account names
                    continue
                branches.append(_Branch(table, [*window, column.in_(sorted(by_value))],
                                        [_signed(sign, _charged(table), _count(table))], [by_value], column))
                continue
            sums = []
            for i in indexes:
                picked = and_(*scope_conditions(session, queries[i].scope, None, table))
                sums.append(_signed(sign, _charged(table, picked), _count(table, picked)))
            branches.append(_Branch(table, list(window), sums, [[i] for i in indexes]))
    with plain_plans(session):
        for chunk in range(0, len(branches), _BRANCHES):
            part = branches[chunk:chunk + _BRANCHES]
            for number, key, *sums in session.execute(_statement(part)):
                branch = part[number]
                for at, targets in enumerate(branch.targets):
                    credits, calls = sums[2 * at], sums[2 * at + 1]
                    for i in (targets if branch.key is None else targets.get(key, [])):
                        found[i] = Spend(found[i].credits + _credits(credits), found[i].calls + int(calls or 0))
    return found


_PLAIN = (("jit", "off"), ("max_parallel_workers_per_gather", "0"))


@contextmanager
def plain_plans(session: Session) -> Iterator[None]:
    """On PostgreSQL, the statements inside run without JIT compilation or parallel workers (as set before, after):
    reads of a few thousand rows, whose cost as the planner estimates it (the index ranges of many branches) would
    start both, each costing more than the read itself (BENCHMARKS.md, "Budgets and the refresh")."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    names = [name for name, _ in _PLAIN]
    reads = ", ".join(f"current_setting('{name}')" for name in names)
    sets = ", ".join(f"set_config('{name}', '{value}', true)" for name, value in _PLAIN)
    previous = session.execute(text(f"SELECT {reads}, {sets}")).one()[:len(names)]
    yield  # (an error leaves the transaction to be rolled back: its settings go with it)
    session.execute(text("SELECT " + ", ".join(f"set_config('{name}', :v{at}, true)" for at, name in enumerate(names))),
                    {f"v{at}": value for at, value in enumerate(previous)})


def _keys(session: Session) -> dict[tuple[str, str], list[str]]:
    """{("key", label) and ("account", account): their fingerprints} of every key `api_keys` holds."""
    found: dict[tuple[str, str], list[str]] = {}
    for fingerprint, label, account in session.execute(select(ApiKey.fingerprint, ApiKey.label, ApiKey.account)):
        for kind, value in (("key", label), ("account", account)):
            if value is not None:
                found.setdefault((kind, value), []).append(fingerprint)
    return found


def _values(kind: str, scope: Scope, keys: dict[tuple[str, str], list[str]]) -> list[str]:
    """The values of the grouped column a scope of one field stands for (a key or account: its fingerprints)."""
    if kind in ("key", "account"):
        return keys.get((kind, getattr(scope, kind)), [])
    return [getattr(scope, kind)]


# SQLite takes at most 500 SELECTs in a compound one (SQLITE_MAX_COMPOUND_SELECT): one statement for up to
# this many branches (a budget has one or two), another for more.
_BRANCHES = 400


def _statement(branches: Sequence[_Branch]):
    """The branches as one statement of rows (branch number, grouped value, credits, calls, credits, calls, ...),
    each padded with NULLs to the widest."""
    width = max(len(b.sums) for b in branches)
    no_credits, no_calls = type_coerce(cast(None, BigInteger), Credits), cast(None, BigInteger)
    selects = []
    for number, branch in enumerate(branches):
        columns = [literal_column(str(number), Integer).label("branch"),
                   (branch.key if branch.key is not None else cast(None, String)).label("value")]
        for at in range(width):
            credits, calls = branch.sums[at] if at < len(branch.sums) else (no_credits, no_calls)
            columns += [credits.label(f"credits_{at}"), calls.label(f"calls_{at}")]
        query = select(*columns).select_from(branch.table).where(*branch.where)
        selects.append(query.group_by(branch.key) if branch.key is not None else query)
    return selects[0] if len(selects) == 1 else union_all(*selects)


def own_calls(session: Session, id_prefix: str, scope: Scope, since: datetime, not_status: str,
              fingerprints: frozenset[str] | None = None) -> int:
    """How many of one process's calls (its call ids start with `id_prefix`) in the scope since `since`,
    of another status than `not_status`, are in the ledger."""
    # The call ids of a process share a prefix: a range of the unique index on call_id.
    upper = id_prefix[:-1] + chr(ord(id_prefix[-1]) + 1)
    query = select(func.count()).where(
        Call.call_id >= id_prefix, Call.call_id < upper, Call.started_at >= since, Call.status != not_status,
        *scope_conditions(session, scope, fingerprints))
    return session.scalar(query) or 0


def largest_charge(session: Session, scope: Scope, start: datetime, end: datetime,
                   fingerprints: frozenset[str] | None = None) -> Decimal | None:
    """The largest charge of the scope's calls that started in [start, end) (None: none was charged)."""
    query = select(func.max(Call.credits_charged)).where(
        Call.started_at >= start, Call.started_at < end, *scope_conditions(session, scope, fingerprints))
    found = session.scalar(query)
    return _credits(found) if found else None


def recent_largest_charge(session: Session, calls: int = 1000) -> Decimal | None:
    """The largest charge among the ledger's newest charged calls (None for a ledger with none)."""
    newest = (select(Call.credits_charged).where(Call.credits_charged > 0).order_by(Call.id.desc()).limit(calls)
              .subquery())
    found = session.scalar(select(func.max(newest.c.credits_charged)))
    return _credits(found) if found else None


def key_fingerprints(session: Session, label: str | None = None, account: str | None = None) -> frozenset[str]:
    """The fingerprints `api_keys` holds for a key label or an account."""
    query = select(ApiKey.fingerprint)
    if label is not None:
        query = query.where(ApiKey.label == label)
    if account is not None:
        query = query.where(ApiKey.account == account)
    return frozenset(session.scalars(query))
