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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterator, Sequence

from sqlalchemy import and_, case, func, literal, literal_column, not_, or_, select
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.orm import Session

from ..accounting.closes import AdjustmentWindow, LateCalls
from ..accounting.pricing import CLEAN_CLASSES
from ..accounting.records import ERROR, FAILED
from ..accounting.group_keys import GroupKey
from ..money import ZERO
from .models import ApiKey, Call, RateCardRow
from .reading import raw_rows

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


def _needs_keys(keys: Sequence[GroupKey], account: str | None) -> bool:
    return account is not None or any(k.name in ("key", "account") for k in keys)


def bucket_index(column, bounds: Sequence[datetime]):
    """The index of the bucket `column` falls in: 0 before bounds[0], i between bounds[i-1] and bounds[i], n after the last.

    A balanced CASE tree: about log2(len(bounds)) comparisons a row. Indexes are inlined (no bind
    parameter for PostgreSQL to guess the type of).
    """

    def tree(low: int, high: int):
        if low == high:
            return literal_column(str(low))
        middle = (low + high) // 2
        return case((column < bounds[middle], tree(low, middle)), else_=tree(middle + 1, high))

    return tree(0, len(bounds))


def key_expression(key: GroupKey, dialect: str, bounds: Sequence[datetime] = ()):
    """The SQL value of one group key for a call."""
    if key.name == "project":
        return Call.project
    if key.name == "user":
        return Call.end_user
    if key.name == "account":
        return func.coalesce(ApiKey.account, NONE)
    if key.name == "key":
        return case(
            (ApiKey.label.is_not(None), ApiKey.label),
            (Call.key_last4.is_not(None), literal("…").concat(Call.key_last4)),
            else_=literal(NONE),
        )
    if key.name == "model":
        return case(
            (Call.model_reported.is_(None), Call.model_requested),
            (or_(Call.model_requested.is_(None), Call.model_reported == Call.model_requested), Call.model_reported),
            else_=Call.model_reported.concat(literal(" (requested ")).concat(Call.model_requested).concat(literal(")")),
        )
    if key.name == "tag":
        return tag_value(key.tag, dialect)
    if key.is_time:
        return bucket_index(Call.started_at, bounds)
    internal = _INTERNAL_KEYS.get(key.name)
    if internal is not None:
        return internal()
    raise ValueError(f"unknown group key {key.label!r}")


# Keys the reports group by themselves (not offered to --by): the FOCUS rows, findings by class, cards in force.
_INTERNAL_KEYS = {
    "pricing_class": lambda: Call.pricing_class,
    "key_id": lambda: func.coalesce(Call.key_fingerprint, ""),
    "tags_json": lambda: func.coalesce(Call.tags, ""),
    "project_as_is": lambda: Call.project,  # FOCUS: no project tag for NULL, an empty one for ""
    "user_or_empty": lambda: func.coalesce(Call.end_user, ""),
    "model_priced": lambda: func.coalesce(Call.model_requested, Call.model_reported, NONE),
}


def tag_value(name: str, dialect: str):
    """The value of tag `name` of a call (tags are a JSON object as text): json_extract on SQLite, ->> on PostgreSQL."""
    if dialect == "postgresql":
        return Call.tags.cast(JSON)[name].astext
    return func.json_extract(Call.tags, f'$."{name}"')


def where(selection: Selection):
    """The WHERE of a selection (calls started in the period, late ones out or, for adjustments, only those)."""
    conditions = [Call.started_at >= selection.start, Call.started_at < selection.end]
    if selection.adjustments is not None:
        # Late calls of closed periods before this one: their own start, not this period's.
        conditions = [or_(*[
            and_(
                Call.started_at >= w.closed.period.start,
                Call.started_at < w.closed.period.end,
                Call.recorded_at > w.recorded_after,
                *([Call.recorded_at <= w.recorded_until] if w.recorded_until is not None else []),
            )
            for w in selection.adjustments
        ] or [literal(False)])]
    if selection.account is not None:
        conditions.append(ApiKey.account == selection.account)
    for late in selection.leave_out:
        conditions.append(not_(and_(Call.started_at >= late.start, Call.started_at < late.end, Call.recorded_at > late.cutoff)))
    return and_(*conditions)


def from_calls(query, keys: Sequence[GroupKey], account: str | None):
    if _needs_keys(keys, account):
        return query.select_from(Call).outerjoin(ApiKey, ApiKey.fingerprint == Call.key_fingerprint)
    return query.select_from(Call)


def _spend_query(session: Session, selection: Selection, keys: Sequence[GroupKey], bounds):
    dialect = session.get_bind().dialect.name
    bounds = bounds or {}
    groups = [key_expression(k, dialect, bounds.get(k.name, ())).label(f"g{i}") for i, k in enumerate(keys)]
    clean = sorted(CLEAN_CLASSES)
    query = select(
        *groups,
        Call.rate_card.label("card"),
        func.count().label("calls"),
        func.sum(case((Call.status.in_(FAILED_STATUSES), 1), else_=0)),
        func.coalesce(func.sum(Call.prompt_tokens), 0),
        func.coalesce(func.sum(Call.completion_tokens), 0),
        func.coalesce(func.sum(Call.reasoning_tokens), 0),
        func.coalesce(func.sum(Call.credits_charged), literal(ZERO, Call.credits_charged.type)),
        func.coalesce(func.sum(Call.credits_expected), literal(ZERO, Call.credits_expected.type)),
        func.sum(case((Call.pricing_class.not_in(clean), 1), else_=0)),
    )
    # Grouped by the output names: PostgreSQL would not match two copies of a parameterised CASE.
    query = from_calls(query, keys, selection.account).where(where(selection))
    names = [literal_column(f"g{i}") for i in range(len(keys))]
    return query.group_by(*names, literal_column("card")), names


def _spend_row(row, width: int) -> SpendRow:
    values, rest = tuple(row[:width]), row[width:]
    return SpendRow(values, rest[0], int(rest[1]), int(rest[2] or 0), int(rest[3]), int(rest[4]), int(rest[5]),
                    rest[6], rest[7], int(rest[8] or 0))


def spend_rows(
    session: Session,
    selection: Selection,
    keys: Sequence[GroupKey],
    bounds: dict[str, Sequence[datetime]] | None = None,
) -> list[SpendRow]:
    """The sums per group and rate card (one SELECT ... GROUP BY)."""
    query, _ = _spend_query(session, selection, keys, bounds)
    return [_spend_row(row, len(keys)) for row in session.execute(query)]


def spend_rows_in_order(
    session: Session,
    selection: Selection,
    keys: Sequence[GroupKey],
    bounds: dict[str, Sequence[datetime]] | None = None,
) -> Iterator[SpendRow]:
    """The same sums, streamed in the order of the keys (a group's rows, one per rate card, come together)."""
    query, names = _spend_query(session, selection, keys, bounds)
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
