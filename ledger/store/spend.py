"""The spend report's sums, made in SQL: GROUP BY over `calls` for a period, on SQLite and PostgreSQL alike.

Every call of the period falls in exactly one group: each key is one value
per call, so the groups add up to the period's total. Caller text (a
project, a user, a tag, a model) is grouped as it is: a call without one
(NULL) is a group apart from `""` and from a project named `(none)`. Day, week and month groups are local days in the report's
zone: their UTC bounds come from `accounting.periods` (daylight-saving
changes included) and a call's group is found by comparing its start with
those bounds (a CASE tree, about log2(n) comparisons a call), the same on
both databases, whatever their time zone support. Amounts are summed as
integer nano-credits; each group is also split by rate card, so that its US
dollars are the exact sum over cards of credits times that card's rate.

The sums come from the rollups for every bucket the selection decides whole:
whole UTC days from the narrowest daily table holding the keys' dimensions,
whole hours from the hourly one, the other quarter hours from `call_rollups`
(`rollup_levels`); and from raw calls for the rest: the 15-minute buckets that
hold a bound off the grid, and the recorded bucket that holds a close's
cutoff or an adjustment window's bound (`accounting.buckets`). All parts go
through one GROUP BY, so the answer is the raw one's (`raw_spend_rows`,
kept as the oracle) to the nano-credit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator, Sequence

from sqlalchemy import BigInteger, and_, case, func, literal, literal_column, not_, or_, select, true, union_all
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.orm import Session

from ..accounting.buckets import BUCKET, mixed_buckets
from ..accounting.closes import AdjustmentWindow, LateCalls
from ..accounting.pricing import CLEAN_CLASSES
from ..accounting.records import ERROR, FAILED
from ..accounting.group_keys import GroupKey
from ..money import ZERO
from .models import ApiKey, Call, RateCardRow
from .reading import raw_rows
from .rollup_levels import Months, day_spans, day_values, ends, levels, starting_in
from .rollup_tables import DIMENSIONS, TABLES

_GRAIN = {table.model: table for table in TABLES}

NONE = "(none)"
FAILED_STATUSES = (ERROR, FAILED)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which calls: started in [start, end), of `account` when given, less the late calls of closed periods.

    With `adjustments`, the opposite: only the late calls those windows give to this report.
    """

    start: datetime
    end: datetime
    account: str | None = None
    leave_out: tuple[LateCalls, ...] = ()
    adjustments: tuple[AdjustmentWindow, ...] | None = None
    # Only these projects' calls (a dashboard viewer limited to them); None: every call, of a project or of none.
    projects: frozenset[str] | None = None
    # Only the calls whose value of this key is one of these (as key_expression gives it; None: no value), e.g. a
    # chart of a key's top values. Applied where the key's expression is known (the grouped sums).
    key_values: tuple[GroupKey, frozenset[str | None]] | None = None


@dataclass(frozen=True, slots=True)
class SpendRow:
    """The sums of one group and one rate card. `values` are the group's key values (a bucket's index for time keys)."""

    values: tuple
    rate_card: str | None
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    credits_charged: Decimal
    credits_expected: Decimal
    findings: int


def _times(table) -> tuple:
    """The start and the recording time of a row: a call's own, or a rollup row's buckets (of any rollup table)."""
    if table is Call:
        return Call.started_at, Call.recorded_at
    return table.bucket_start, table.recorded_bucket


# The dimensions a key's value needs (a rollup table without them cannot answer it); time keys need none.
_KEY_DIMS = {
    "project": ("project",), "user": ("end_user",), "account": ("key_fingerprint",), "key": ("key_fingerprint", "key_last4"),
    "model": ("model_requested", "model_reported"), "tag": ("tags",), "pricing_class": ("pricing_class",),
    "key_id": ("key_fingerprint",), "tags_json": ("tags",), "project_as_is": ("project",), "user_or_empty": ("end_user",),
    "model_priced": ("model_requested", "model_reported"),
}


def needed_dims(keys: Sequence[GroupKey], account: str | None, projects: frozenset[str] | None = None) -> frozenset[str]:
    """The rollup dimensions a read by `keys` (of one account, of some projects) needs: its keys', the account's key,
    the project, the card."""
    found = {"rate_card"} | ({"key_fingerprint"} if account is not None else set())
    found |= {"project"} if projects is not None else set()
    for key in keys:
        if not key.is_time:
            found.update(_KEY_DIMS[key.name])
    return frozenset(found)


def _needs_keys(keys: Sequence[GroupKey], account: str | None) -> bool:
    return account is not None or any(k.name in ("key", "account") for k in keys)


def bucket_index(column, bounds: Sequence[datetime], values: Sequence[int] | None = None):
    """The index of the bucket `column` falls in: 0 before bounds[0], i between bounds[i-1] and bounds[i], n after the last
    (`values`, when given: values[i] instead of i).

    A balanced CASE tree: about log2(len(bounds)) comparisons a row. Indexes are inlined (no bind
    parameter for PostgreSQL to guess the type of). Kept for its column (a table's, which lives as long as the
    process), bounds and values: a read taking UTC days whole uses the same few trees in several branches.
    """
    return _tree(column, tuple(bounds), None if values is None else tuple(values))


@lru_cache(maxsize=256)
def _tree(column, bounds: tuple[datetime, ...], values: tuple[int, ...] | None):
    def tree(low: int, high: int):
        if low == high:
            return literal_column(str(low if values is None else values[low]))
        middle = (low + high) // 2
        return case((column < bounds[middle], tree(low, middle)), else_=tree(middle + 1, high))

    return tree(0, len(bounds))


def key_expression(key: GroupKey, dialect: str, bounds: Sequence[datetime] = (), table=Call):
    """The SQL value of one group key for a call (or a rollup row: `table`)."""
    if key.name == "project":
        return table.project
    if key.name == "user":
        return table.end_user
    if key.name == "account":
        return func.coalesce(ApiKey.account, NONE)
    if key.name == "key":
        return case(
            (ApiKey.label.is_not(None), ApiKey.label),
            (table.key_last4.is_not(None), literal("…").concat(table.key_last4)),
            else_=literal(NONE),
        )
    if key.name == "model":
        return case(
            (table.model_reported.is_(None), table.model_requested),
            (or_(table.model_requested.is_(None), table.model_reported == table.model_requested), table.model_reported),
            else_=table.model_reported.concat(literal(" (requested ")).concat(table.model_requested).concat(literal(")")),
        )
    if key.name == "tag":
        return tag_value(key.tag, dialect, table)
    if key.is_time:
        return bucket_index(_times(table)[0], bounds)
    internal = _INTERNAL_KEYS.get(key.name)
    if internal is not None:
        return internal(table)
    raise ValueError(f"unknown group key {key.label!r}")


# Keys the reports group by themselves (not offered to --by): the FOCUS rows, findings by class, cards in force.
_INTERNAL_KEYS = {
    "pricing_class": lambda t: t.pricing_class,
    "key_id": lambda t: func.coalesce(t.key_fingerprint, ""),
    "tags_json": lambda t: func.coalesce(t.tags, ""),
    "project_as_is": lambda t: t.project,  # FOCUS: no project tag for NULL, an empty one for ""
    "user_or_empty": lambda t: func.coalesce(t.end_user, ""),
    "model_priced": lambda t: func.coalesce(t.model_requested, t.model_reported, NONE),
}


def tag_value(name: str, dialect: str, table=Call):
    """The value of tag `name` of a call (tags are a JSON object as text): json_extract on SQLite, ->> on PostgreSQL."""
    if dialect == "postgresql":
        return table.tags.cast(JSON)[name].astext
    return func.json_extract(table.tags, f'$."{name}"')


def where(selection: Selection, table=Call, whole: bool = False):
    """The WHERE of a selection (calls started in the period, late ones out or, for adjustments, only those).

    On the rollup (`table`), the same conditions on its buckets: exact for every bucket `rollup_parts` decides.
    `whole`: the rows are taken whole (their time conditions are the part's own): the account and projects alone.
    """
    started, recorded = _times(table)
    conditions = [started >= selection.start, started < selection.end]
    if selection.adjustments is not None:
        # Late calls of closed periods before this one: their own start, not this period's.
        conditions = [or_(*[
            and_(
                started >= w.closed.period.start,
                started < w.closed.period.end,
                recorded > w.recorded_after,
                *([recorded <= w.recorded_until] if w.recorded_until is not None else []),
            )
            for w in selection.adjustments
        ] or [literal(False)])]
    if whole:
        conditions = []
    if selection.account is not None:
        conditions.append(ApiKey.account == selection.account)
    if selection.projects is not None:
        conditions.append(table.project.in_(sorted(selection.projects)) if selection.projects else literal(False))
    for late in () if whole else selection.leave_out:
        conditions.append(not_(and_(started >= late.start, started < late.end, recorded > late.cutoff)))
    return and_(*conditions) if conditions else true()


def from_calls(query, keys: Sequence[GroupKey], account: str | None, table=Call):
    if _needs_keys(keys, account):
        return query.select_from(table).outerjoin(ApiKey, ApiKey.fingerprint == table.key_fingerprint)
    return query.select_from(table)


def instants(selection: Selection, bounds: dict[str, Sequence[datetime]] | None = None) -> tuple[list, list]:
    """The instants this selection's (and time keys') conditions cut the start and the recording at."""
    started: list[datetime] = [selection.start, selection.end, *(t for found in (bounds or {}).values() for t in found)]
    recorded: list[datetime] = []
    for late in selection.leave_out:
        started += [late.start, late.end]
        recorded.append(late.cutoff)
    for window in selection.adjustments or ():
        started += [window.closed.period.start, window.closed.period.end]
        recorded += [window.recorded_after] + ([window.recorded_until] if window.recorded_until is not None else [])
    return started, recorded


def undecided(selection: Selection, bounds: dict[str, Sequence[datetime]] | None = None) -> tuple[frozenset, frozenset]:
    """The 15-minute buckets of the start and of the recording the rollups cannot decide for this selection."""
    return mixed_buckets(*instants(selection, bounds))


def rollup_parts(selection: Selection, bounds: dict[str, Sequence[datetime]] | None = None,
                 needed: frozenset[str] = frozenset(DIMENSIONS), grouped_in_month: bool = True,
                 ) -> tuple[list[tuple[Any, Any | None, int, bool]], Any | None]:
    """[(rollup table, its extra WHERE or None, its sign, whole)] from the widest table holding `needed` to the
    15-minute one (`rollup_levels`), and the WHERE of the raw part (None: no raw row is needed). `grouped_in_month`
    false: a UTC month's rows may fall in several groups although `bounds` cut nowhere (a read grouped by UTC day)."""
    span = (selection.start, selection.end) if selection.adjustments is None else None
    months = None
    if span is not None and grouped_in_month and not any((bounds or {}).values()):  # a month's rows in one group
        months = Months(selection.start, selection.end, tuple((l.start, l.end, l.cutoff) for l in selection.leave_out))
    rolled = [(part.table.model, and_(*part.conditions) if part.conditions else None, part.sign, part.whole)
              for part in levels(*instants(selection, bounds), needed, span, months)]
    started, recorded = undecided(selection, bounds)
    edge = Call.__table__.alias("edge")
    raw = [and_(edge.c.started_at >= b, edge.c.started_at < b + BUCKET) for b in sorted(started)]
    raw += [and_(edge.c.recorded_at >= b, edge.c.recorded_at < b + BUCKET) for b in sorted(recorded)]
    # The ids first, from the narrow ranges of the two time indexes: the period's own range on started_at
    # would otherwise drive the scan (SQLite takes it), reading every call of the period.
    return rolled, (Call.id.in_(select(edge.c.id).where(or_(*raw))) if raw else None)


def _sums(table) -> list:
    """The figures of a group, summed over calls or over rollup rows."""
    if table is Call:
        clean = sorted(CLEAN_CLASSES)
        return [
            func.count(),
            func.sum(case((Call.status.in_(FAILED_STATUSES), 1), else_=0)),
            func.coalesce(func.sum(Call.prompt_tokens), 0),
            func.coalesce(func.sum(Call.completion_tokens), 0),
            func.coalesce(func.sum(Call.reasoning_tokens), 0),
            func.coalesce(func.sum(Call.credits_charged), literal(ZERO, Call.credits_charged.type)),
            func.coalesce(func.sum(Call.credits_expected), literal(ZERO, Call.credits_expected.type)),
            func.sum(case((Call.pricing_class.not_in(clean), 1), else_=0)),
        ]
    return [func.sum(table.calls), func.sum(table.failed_calls), func.sum(table.prompt_tokens),
            func.sum(table.completion_tokens), func.sum(table.reasoning_tokens),
            func.sum(table.credits_charged), func.sum(table.credits_expected), func.sum(table.findings)]


_SUMS = ("calls", "failed_calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "credits_charged",
         "credits_expected", "findings")


def _filter_keys(selection: Selection) -> tuple[GroupKey, ...]:
    return (selection.key_values[0],) if selection.key_values is not None else ()


def _among(expression, values: frozenset[str | None]):
    """`expression` is one of `values` (None: it is NULL)."""
    known = sorted(v for v in values if v is not None)
    found = [expression.in_(known)] if known else []
    return or_(*found, *([expression.is_(None)] if None in values else [])) if found or None in values else literal(False)


def _grouped(dialect: str, selection: Selection, keys: Sequence[GroupKey], bounds, table, extra=None, sign: int = 1,
             whole: bool = False, by_day: dict | None = None, both: bool = False):
    """`by_day` {time key: (UTC day starts, values)}: its time keys' values are their UTC day's (`_by_day`); with
    `both`, the own values as g0.. and the day's as d0.. (the time keys')."""
    own = [key_expression(k, dialect, bounds.get(k.name, ()), table) for k in keys]
    days = [bucket_index(_times(table)[0], *by_day[k.name]) if k.is_time else g for k, g in zip(keys, own)] if by_day else own
    groups = [g.label(f"g{i}") for i, g in enumerate(own if both or not by_day else days)]
    if both:
        groups += [d.label(f"d{i}") for i, (k, d) in enumerate(zip(keys, days)) if k.is_time]
    sums = _sums(table) if sign > 0 else [-s for s in _sums(table)]
    query = select(*groups, table.rate_card.label("card"), *(s.label(n) for s, n in zip(sums, _SUMS)))
    # Grouped by the output names: PostgreSQL would not match two copies of a parameterised CASE.
    query = from_calls(query, (*keys, *_filter_keys(selection)), selection.account, table).where(
        where(selection, table, whole))
    if extra is not None:
        query = query.where(extra)
    if selection.key_values is not None:
        key, values = selection.key_values
        query = query.where(_among(key_expression(key, dialect, (), table), values))
    return query.group_by(*[literal_column(g.name) for g in groups], literal_column("card"))


def _spend_query(session: Session, selection: Selection, keys: Sequence[GroupKey], bounds):
    """The raw GROUP BY over `calls` alone: the answer the rollup path must give."""
    query = _grouped(session.get_bind().dialect.name, selection, keys, bounds or {}, Call)
    return query, [literal_column(f"g{i}") for i in range(len(keys))]


def selection_ends(selection: Selection, bounds: dict[str, Sequence[datetime]] | None,
                   needed: frozenset[str]) -> list[tuple[Selection, int]]:
    """The selection as signed selections of ranges whose sums add up to its own (`rollup_levels.ends`: a local
    period's ends inside a UTC day widened to a wider table's bucket and the rest taken away), when it has no time
    key (a range's rows then fall in the same groups) and is no adjustments' (their ranges are their windows')."""
    if selection.adjustments is not None or any((bounds or {}).values()):
        return [(selection, 1)]
    return [(replace(selection, start=start, end=end), sign) for start, end, sign in ends(selection.start, selection.end, needed)]


def _day_parts(dialect: str, selection: Selection, keys: Sequence[GroupKey], bounds, needed,
               name: str = "pieces") -> list | None:
    """A time-keyed read's parts with UTC days taken whole (`rollup_levels.day_spans`), None when none is: a whole
    day's rows grouped as its reference instant is, each other piece of it taken away from those groups and, when
    in the read, added to its own (its rows read once, grouped both ways, in a WITH both halves read)."""
    if selection.adjustments is not None or not any(bounds.values()):
        return None
    plan = day_spans(selection.start, selection.end, (b for found in bounds.values() for b in found), needed)
    if plan is None:
        return None
    by_day = day_values(plan, {k.name: bounds.get(k.name, ()) for k in keys if k.is_time})
    # The spans' reads of one table, grouped one way and summed with one sign, are one branch: each span's range
    # and WHERE OR'ed (a branch a span would build and compile 100 CASE trees for a month's days).
    reads: dict[tuple, list[tuple[Selection, Any]]] = {}
    for span in plan.spans:
        part_of = replace(selection, start=span.start, end=span.end)
        inside = {key: [b for b in found if span.start < b < span.end] for key, found in bounds.items()}
        rolled, raw = rollup_parts(part_of, inside if span.own else {}, needed, grouped_in_month=False)
        for table, extra, part_sign in ([(model, extra, part_sign) for model, extra, part_sign, _ in rolled]
                                        + ([(Call, raw, 1)] if raw is not None else [])):
            reads.setdefault((table, span.own * part_sign, span.day * part_sign), []).append((part_of, extra))
    parts, twice = [], []
    for (table, own, day), found in reads.items():
        started = _times(table)[0]
        cover = replace(selection, start=min(p.start for p, _ in found), end=max(p.end for p, _ in found))
        extra = or_(*[and_(starting_in(_GRAIN.get(table), started, p.start, p.end), *([] if e is None else [e]))
                      for p, e in found])
        if own and day:
            twice.append(_grouped(dialect, cover, keys, bounds, table, extra, own, by_day=by_day, both=True))
        elif own:
            parts.append(_grouped(dialect, cover, keys, bounds, table, extra, own))
        else:
            parts.append(_grouped(dialect, cover, keys, bounds, table, extra, day, by_day=by_day))
    if twice:
        read = (union_all(*twice) if len(twice) > 1 else twice[0]).cte(name)
        own = [read.c[f"g{i}"] for i in range(len(keys))]
        day = [read.c[f"d{i}"] if k.is_time else read.c[f"g{i}"] for i, k in enumerate(keys)]
        for groups, sign in ((own, 1), (day, -1)):
            sums = [read.c[n] if sign > 0 else -read.c[n] for n in _SUMS]
            parts.append(select(*(g.label(f"g{i}") for i, g in enumerate(groups)), read.c.card,
                                *(s.label(n) for s, n in zip(sums, _SUMS))))
    return parts


def _rollup_query(session: Session, selection: Selection, keys: Sequence[GroupKey], bounds, name: str = "pieces"):
    """Whole buckets from the rollup, the undecided ones from raw calls, summed again per group and card (`name`: of
    its WITH, one a statement)."""
    dialect, bounds = session.get_bind().dialect.name, bounds or {}
    needed = needed_dims((*keys, *_filter_keys(selection)), selection.account, selection.projects)
    parts = _day_parts(dialect, selection, keys, bounds, needed, name)
    negative = parts is not None
    for part_of, sign in selection_ends(selection, bounds, needed) if parts is None else ():
        rolled, raw = rollup_parts(part_of, bounds, needed)
        parts = (parts or []) + [_grouped(dialect, part_of, keys, bounds, model, extra, sign * part_sign, whole)
                                 for model, extra, part_sign, whole in rolled]
        if raw is not None:
            parts.append(_grouped(dialect, part_of, keys, bounds, Call, raw, sign))
        negative = negative or sign < 0 or any(part_sign < 0 for _, _, part_sign, _ in rolled)
    both = union_all(*parts).subquery("parts") if len(parts) > 1 else parts[0].subquery("parts")
    names = [both.c[f"g{i}"] for i in range(len(keys))]
    sums = [func.sum(both.c[n], type_=Call.credits_charged.type if n.startswith("credits") else BigInteger()) for n in _SUMS]
    query = select(*names, both.c.card, *sums).group_by(*names, both.c.card)
    if negative:  # a group whose calls were all taken away again has none
        query = query.having(func.sum(both.c.calls) != 0)
    return query, names


def _spend_row(row, width: int) -> SpendRow:
    values, rest = tuple(row[:width]), row[width:]
    return SpendRow(values, rest[0], int(rest[1]), int(rest[2] or 0), int(rest[3]), int(rest[4]), int(rest[5]),
                    rest[6], rest[7], int(rest[8] or 0))


def raw_spend_rows(session: Session, selection: Selection, keys: Sequence[GroupKey],
                   bounds: dict[str, Sequence[datetime]] | None = None) -> list[SpendRow]:
    """The sums per group and rate card from the raw calls alone (one SELECT ... GROUP BY): the rollup path's oracle."""
    query, _ = _spend_query(session, selection, keys, bounds)
    return [_spend_row(row, len(keys)) for row in session.execute(query)]


def spend_rows(
    session: Session,
    selection: Selection,
    keys: Sequence[GroupKey],
    bounds: dict[str, Sequence[datetime]] | None = None,
) -> list[SpendRow]:
    """The sums per group and rate card: the rollup's whole buckets and the raw calls of the rest, in one GROUP BY."""
    query, _ = _rollup_query(session, selection, keys, bounds)
    return [_spend_row(row, len(keys)) for row in session.execute(query)]


def spend_rows_of(
    session: Session,
    selections: Sequence[Selection],
    keys: Sequence[GroupKey],
    bounds: dict[str, Sequence[datetime]] | None = None,
) -> list[list[SpendRow]]:
    """`spend_rows` of each of `selections`, in one statement whatever their number (each a branch of a UNION ALL)."""
    if not selections:
        return []
    branches = []
    for n, selection in enumerate(selections):
        query, _ = _rollup_query(session, selection, keys, bounds, f"pieces{n}")
        branches.append(query.add_columns(literal(n).label("selection")))
    found: list[list[SpendRow]] = [[] for _ in selections]
    for row in session.execute(union_all(*branches) if len(branches) > 1 else branches[0]):
        found[row[-1]].append(_spend_row(row[:-1], len(keys)))
    return found


def spend_rows_in_order(
    session: Session,
    selection: Selection,
    keys: Sequence[GroupKey],
    bounds: dict[str, Sequence[datetime]] | None = None,
) -> Iterator[SpendRow]:
    """The same sums, streamed in the order of the keys (a group's rows, one per rate card, come together)."""
    query, names = _rollup_query(session, selection, keys, bounds)
    result = session.connection().execute(query.order_by(*names).execution_options(stream_results=True, yield_per=5000))
    for row in result:
        yield _spend_row(row, len(keys))


def usd_per_credit(session: Session) -> dict[str, Decimal]:
    """Each rate card's US dollars per credit, as the cards were in force (the `rate_cards` table)."""
    query = select(RateCardRow.name, func.min(RateCardRow.usd_per_credit), func.max(RateCardRow.usd_per_credit))
    found = {}
    for name, low, high in session.execute(query.group_by(RateCardRow.name)):
        if low != high:
            raise ValueError(f"rate card {name!r} has two US dollar rates in the ledger ({low} and {high})")
        found[name] = low
    return found


def cards_in_force(session: Session) -> list[RateCardRow]:
    """Every rate card row the ledger holds, oldest card first."""
    return list(session.scalars(select(RateCardRow).order_by(RateCardRow.effective_from, RateCardRow.name, RateCardRow.model)))


def digest_rows(session: Session, selection: Selection) -> Iterator[tuple[str, str]]:
    """(call id, record digest) of the selection, in byte order of the call id on both databases."""
    order = Call.call_id.collate("C") if session.get_bind().dialect.name == "postgresql" else Call.call_id
    query = from_calls(select(Call.call_id, Call.record_digest), (), selection.account).where(where(selection)).order_by(order)
    for chunk in raw_rows(session, query):
        yield from chunk
