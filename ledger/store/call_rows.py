"""Row-level reads of `calls`, streamed: plain values (text, integers, nano-credit integers), never ORM objects.

What the `calls` listing, a report's Calls and Findings sheets and its
adjustments read. Values come as the writers need them, the same on both
databases: times as `YYYY-MM-DD HH:MM:SS.ffffff` UTC text (or an Excel date
serial), amounts as integer nano-credits, flags as 0/1. The rows come in
chunks from a server-side cursor on PostgreSQL (SQLite's cursor steps
through the table as it is read): memory stays flat, the first row comes
as soon as the database has it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Iterator, NamedTuple, Sequence

from sqlalchemy import BigInteger, Float, Integer, String, and_, cast, false, func, literal_column, or_, select, type_coerce, union_all
from sqlalchemy.orm import Session

from ..accounting.pricing import CLEAN_CLASSES
from ..accounting.group_keys import GroupKey
from .call_filters import CallFilter, conditions, value_of
from .models import ApiKey, Call, RateCardRow
from .reading import CHUNK, raw_rows
from .spend import Selection, key_expression, where



def _utc_text(column, dialect: str):
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), literal_column("'YYYY-MM-DD HH24:MI:SS.US'"))
    return type_coerce(column, String)  # UTCDateTime's own text on SQLite


def _excel_serial(column, dialect: str):
    # Days since 1899-12-30 (Excel's day 0 for dates after February 1900), in UTC.
    if dialect == "postgresql":
        return cast(func.extract("epoch", column) / 86400.0 + 25569, Float)
    return func.julianday(column) - 2415018.5


@lru_cache(maxsize=None)
def _columns(dialect: str) -> dict:
    """The expression of each name (made once a dialect: a page's query is built at every request)."""
    nano = lambda column: type_coerce(column, BigInteger)  # noqa: E731 - integer nano-credits, no Decimal made
    return {
        "call_id": Call.call_id,
        "started_at": _utc_text(Call.started_at, dialect),
        "started_serial": _excel_serial(Call.started_at, dialect),
        "recorded_at": _utc_text(Call.recorded_at, dialect),
        "recorded_serial": _excel_serial(Call.recorded_at, dialect),
        "status": Call.status,
        "http_status": Call.http_status,
        "error_code": Call.error_code,
        "completion_id": Call.completion_id,
        "model_requested": Call.model_requested,
        "model_reported": Call.model_reported,
        "stream": cast(Call.stream, Integer),
        "attempt": Call.attempt,
        "prompt_tokens": Call.prompt_tokens,
        "completion_tokens": Call.completion_tokens,
        "reasoning_tokens": Call.reasoning_tokens,
        "total_tokens": Call.total_tokens,
        "credits_charged": nano(Call.credits_charged),
        "credits_expected": nano(Call.credits_expected),
        "pricing_class": Call.pricing_class,
        "rate_card": Call.rate_card,
        "project": Call.project,
        "end_user": Call.end_user,
        "tags": Call.tags,
        "key_last4": Call.key_last4,
        "key_label": ApiKey.label,
        "account": ApiKey.account,
        "anomalies": Call.anomalies,
        "key_name": key_expression(GroupKey("key"), dialect),
        "credits_difference": type_coerce(Call.credits_charged - Call.credits_expected, BigInteger),
    }


NEEDS_KEYS = frozenset({"key_label", "account", "key_name"})


def _selected(session: Session, selection: Selection, names: Sequence[str], findings_only: bool,
              project: str | None, filters: CallFilter | None, extra: Sequence = ()):
    dialect = session.get_bind().dialect.name
    columns = _columns(dialect)
    join = selection.account is not None or bool(NEEDS_KEYS & set(names)) or (filters is not None and filters.needs_keys)
    query = select(*[columns[n].label(n) for n in names], *extra)
    query = (query.select_from(Call).outerjoin(ApiKey, ApiKey.fingerprint == Call.key_fingerprint) if join
             else query.select_from(Call)).where(where(selection), *conditions(filters, dialect))
    if findings_only:
        query = query.where(Call.pricing_class.not_in(sorted(CLEAN_CLASSES)))
    if project is not None:
        query = query.where(Call.project == project)
    return query


def call_rows(
    session: Session,
    selection: Selection,
    names: Sequence[str],
    *,
    findings_only: bool = False,
    project: str | None = None,
    filters: CallFilter | None = None,
    newest: int | None = None,
) -> Iterator[list[tuple]]:
    """Chunks of rows (tuple-like, `names`' values in order) of the selected calls, oldest first.

    `newest`: only the last that many calls (still oldest first).
    """
    extra = (Call.started_at.label("_at"), Call.id.label("_id")) if newest is not None else ()
    query = _selected(session, selection, names, findings_only, project, filters, extra)
    if newest is not None:
        last = query.order_by(Call.started_at.desc(), Call.id.desc()).limit(newest).subquery()
        query = select(*[last.c[n] for n in names]).order_by(last.c["_at"], last.c["_id"])
    else:
        query = query.order_by(Call.started_at, Call.id)
    yield from raw_rows(session, query)


class Position(NamedTuple):
    """Where a page of calls ends: its oldest call's start and id (the next page holds the calls before it)."""

    started_at: datetime
    id: int


def page_query(session: Session, selection: Selection, names: Sequence[str], size: int,
               filters: CallFilter | None = None, before: Position | None = None):
    """The SELECT of `call_page`: `names`, then the start and id, newest first, `size` + 1 rows.

    Served by an index at any depth: the cursor becomes the range's end (one upper bound on started_at
    for the index to seek; the id orders the calls of one instant). A viewer of some projects reads each
    project's newest calls from the (project, started_at) index and merges them (a UNION ALL of one
    short range a project): reading their calls in the range's index would filter every other project's
    calls out, and reading them by project, then sorting, would sort all of them.
    """
    extra = (Call.started_at.label("_at"), Call.id.label("_id"))
    if before is not None:
        selection = replace(selection, end=min(selection.end, before.started_at + _MICROSECOND))
    if selection.projects is not None and filters is not None and filters.project is not None:
        # One project asked for: its equality alone, when the viewer may see it (nothing otherwise).
        selection = replace(selection, projects=None if value_of(filters.project) in selection.projects else frozenset())
    branches = [None]
    if selection.projects and len(selection.projects) > 1:
        branches = sorted(selection.projects)
    parts = []
    for project in branches:
        # A branch is one of the viewer's projects: the IN list beside its equality would only make
        # PostgreSQL's estimate of its rows 100 times too small (and it would then sort them all).
        query = _selected(session, selection if project is None else replace(selection, projects=None), names, False,
                          project, filters, extra)
        if before is not None:
            query = query.where(or_(Call.started_at < before.started_at,
                                    and_(Call.started_at == before.started_at, Call.id < before.id)))
        parts.append(query.order_by(Call.started_at.desc(), Call.id.desc()).limit(size + 1))
    if len(parts) == 1:
        return parts[0]
    merged = union_all(*[select(part.subquery()) for part in parts]).subquery("merged")
    return select(merged).order_by(merged.c["_at"].desc(), merged.c["_id"].desc()).limit(size + 1)


_MICROSECOND = timedelta(microseconds=1)


def call_page(session: Session, selection: Selection, names: Sequence[str], size: int, *,
              filters: CallFilter | None = None, before: Position | None = None) -> tuple[list[tuple], Position | None]:
    """The newest `size` selected calls before `before` (keyset: no OFFSET, no count), newest first, and the
    position of the page's last call when more follow (else None). One query."""
    rows = session.execute(page_query(session, selection, names, size, filters, before)).all()
    if len(rows) <= size:
        return [tuple(row[:len(names)]) for row in rows], None
    last = rows[size - 1]
    return [tuple(row[:len(names)]) for row in rows[:size]], Position(last._at, last._id)


def one_call_row(session: Session, names: Sequence[str], call_id: str, projects: frozenset[str] | None) -> tuple | None:
    """The call's row (`names`' values) when it is of `projects` (None: any call), else None: one query."""
    selection = Selection(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(9999, 1, 1, tzinfo=timezone.utc),
                          projects=projects)
    row = session.execute(_selected(session, selection, names, False, None, None).where(Call.call_id == call_id)).first()
    return None if row is None else tuple(row)


def one_call(session: Session, call_id: str, projects: frozenset[str] | None):
    """(the call, its key's label and account, its rate card's input and output credits per 1M tokens, US
    dollars a credit and model) when it is of `projects` (None: any call), else None. One query, the projects in its WHERE:
    another project's call is not found, as a missing one is not."""
    card = RateCardRow.__table__.alias("card")
    query = (select(Call, ApiKey.label, ApiKey.account, card.c.input_per_million, card.c.output_per_million,
                    card.c.usd_per_credit, card.c.model)
             .outerjoin(ApiKey, ApiKey.fingerprint == Call.key_fingerprint)
             .outerjoin(card, and_(card.c.name == Call.rate_card,
                                   card.c.model == func.coalesce(Call.model_requested, Call.model_reported)))
             .where(Call.call_id == call_id))
    if projects is not None:
        query = query.where(Call.project.in_(sorted(projects)) if projects else false())
    return session.execute(query).first()


def count_rows(session: Session, selection: Selection, *, findings_only: bool = False, project: str | None = None,
               filters: CallFilter | None = None) -> int:
    dialect = session.get_bind().dialect.name
    join = selection.account is not None or (filters is not None and filters.needs_keys)
    query = (select(func.count()).select_from(Call).outerjoin(ApiKey, ApiKey.fingerprint == Call.key_fingerprint) if join
             else select(func.count()).select_from(Call)).where(where(selection), *conditions(filters, dialect))
    if findings_only:
        query = query.where(Call.pricing_class.not_in(sorted(CLEAN_CLASSES)))
    if project is not None:
        query = query.where(Call.project == project)
    return int(session.scalar(query) or 0)
