"""Inserts and queries of the ledger; every function takes a Session.

`insert_calls` is the batch path: one multi-row INSERT … ON CONFLICT DO
NOTHING per batch, so a replayed record is a no-op, and a record whose call id
is known with other content is kept aside in `rejected_records`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable, Sequence

from sqlalchemy import Select, TypeDecorator, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import ApiKey, Call, RateCardRow, RejectedRecord
from .pricing import CLEAN_CLASSES, PriceFinding, RateBook
from .usage import USAGE_FIELDS, CallRecord, record_digest, record_to_dict


@dataclass(frozen=True, slots=True)
class InsertResult:
    inserted: int
    duplicates: int
    conflicts: int


def call_row(record: CallRecord, finding: PriceFinding, recorded_at: datetime) -> dict:
    """The `calls` row of a priced record."""
    facts = record.response
    usage = facts.usage
    row = {
        "call_id": record.call_id,
        "completion_id": facts.completion_id,
        "model_requested": record.model_requested,
        "model_reported": facts.model_reported,
        "stream": record.stream,
        "reasoning_effort": record.reasoning_effort,
        "include_thoughts": record.include_thoughts,
        "tools": record.tools,
        "attempt": record.attempt,
        "started_at": record.started_at,
        "first_byte_at": record.first_byte_at,
        "ended_at": record.ended_at,
        "status": record.status,
        "http_status": record.http_status,
        "error_code": facts.error_code,
        "error_type": facts.error_type,
        "finish_reason": facts.finish_reason,
        "refunded": record.refunded,
        "credits_charged": facts.credits_charged,
        "credits_expected": finding.credits_expected,
        "pricing_class": finding.pricing_class,
        "rate_card": finding.rate_card,
        "key_fingerprint": record.key_fingerprint,
        "key_last4": record.key_last4,
        "project": record.project,
        "end_user": record.end_user,
        "tags": json.dumps(dict(sorted(record.tags.items()))) if record.tags else None,
        "anomalies": ",".join(facts.anomalies) or None,
        "record_digest": record_digest(record),
        "recorded_at": recorded_at,
    }
    for name in USAGE_FIELDS:
        row[name] = getattr(usage, name) if usage is not None else None
    return row


def _insert_ignoring_conflicts(session: Session, table, rows: list[dict], key: str):
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[key])


def insert_calls(session: Session, records: Sequence[tuple[CallRecord, PriceFinding]]) -> InsertResult:
    """Insert priced records once each; report what was new, replayed or conflicting."""
    if not records:
        return InsertResult(0, 0, 0)
    now = datetime.now(timezone.utc)
    rows_by_id: dict[str, dict] = {}
    records_by_id: dict[str, CallRecord] = {}
    in_batch_conflicts: list[tuple[CallRecord, str]] = []
    for record, finding in records:
        row = call_row(record, finding, now)
        seen = rows_by_id.get(record.call_id)
        if seen is None:
            rows_by_id[record.call_id] = row
            records_by_id[record.call_id] = record
        elif seen["record_digest"] != row["record_digest"]:
            in_batch_conflicts.append((record, "call id replayed with other content"))
    rows = list(rows_by_id.values())
    inserted_ids = _insert_new_calls(session, rows)
    _remember_keys(session, (r for r in records_by_id.values() if r.call_id in inserted_ids), now)

    not_inserted = [cid for cid in rows_by_id if cid not in inserted_ids]
    conflicts = list(in_batch_conflicts)
    if not_inserted:
        known = {
            call_id: digest
            for call_id, digest in session.execute(
                select(Call.call_id, Call.record_digest).where(Call.call_id.in_(not_inserted))
            )
        }
        for cid in not_inserted:
            if known.get(cid) != rows_by_id[cid]["record_digest"]:
                conflicts.append((records_by_id[cid], "call id replayed with other content"))
    if conflicts:
        session.execute(
            RejectedRecord.__table__.insert(),
            [
                {
                    "call_id": record.call_id,
                    "reason": reason,
                    "payload": json.dumps(record_to_dict(record), sort_keys=True),
                    "received_at": now,
                }
                for record, reason in conflicts
            ],
        )
    duplicates = len(records) - len(inserted_ids) - len(conflicts)
    return InsertResult(len(inserted_ids), duplicates, len(conflicts))


def _insert_new_calls(session: Session, rows: list[dict]) -> set[str]:
    """Insert the rows whose call id is new (one round trip); the call ids inserted."""
    dialect = session.get_bind().dialect.name
    if len(rows) > 1 and dialect == "postgresql":
        return _copy_new_calls(session, rows)
    if len(rows) > 1 and dialect == "sqlite":
        return _values_new_calls(session, rows)
    statement = _insert_ignoring_conflicts(session, Call.__table__, rows, "call_id").returning(Call.call_id)
    return set(session.scalars(statement, rows).all())


def _copy_new_calls(session: Session, rows: list[dict]) -> set[str]:
    # psycopg parses a multi-row VALUES statement of a whole batch in Python (~100 us a row);
    # COPY into a private staging table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
    table = Call.__table__
    dialect = session.get_bind().dialect
    columns = [c for c in table.columns if c.name in rows[0]]
    names = ", ".join(c.name for c in columns)
    convert = [(c.name, c.type.process_bind_param if isinstance(c.type, TypeDecorator) else None) for c in columns]
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS calls_incoming ON COMMIT DELETE ROWS AS SELECT {names} FROM calls WITH NO DATA"
        )
        with cursor.copy(f"COPY calls_incoming ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[n] if f is None else f(row[n], dialect) for n, f in convert])
        cursor.execute(
            f"INSERT INTO calls ({names}) SELECT {names} FROM calls_incoming ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
        )
        inserted = {r[0] for r in cursor.fetchall()}
        cursor.execute("TRUNCATE calls_incoming")
    return inserted


def _values_new_calls(session: Session, rows: list[dict]) -> set[str]:
    # The statement insertmanyvalues would send, without its per-parameter bookkeeping
    # (~25 us a row): the columns' own bind processors, then one multi-row INSERT per page.
    dialect = session.get_bind().dialect
    columns = [c for c in Call.__table__.columns if c.name in rows[0]]
    names = ", ".join(c.name for c in columns)
    convert = [(c.name, c.type._cached_bind_processor(dialect)) for c in columns]
    one = "(" + ", ".join("?" * len(columns)) + ")"
    per_statement = max(1, 32000 // len(columns))  # SQLite's limit on parameters is 32766
    cursor = session.connection().connection.driver_connection.cursor()
    inserted: set[str] = set()
    try:
        for start in range(0, len(rows), per_statement):
            page = rows[start : start + per_statement]
            params = [row[n] if f is None else f(row[n]) for row in page for n, f in convert]
            cursor.execute(
                f"INSERT INTO calls ({names}) VALUES {', '.join([one] * len(page))} "
                "ON CONFLICT (call_id) DO NOTHING RETURNING call_id",
                params,
            )
            inserted.update(r[0] for r in cursor.fetchall())
    finally:
        cursor.close()
    return inserted


def _remember_keys(session: Session, records: Iterable[CallRecord], now: datetime) -> None:
    keys = {r.key_fingerprint: r.key_last4 or "" for r in records if r.key_fingerprint}
    if not keys:
        return
    rows = [{"fingerprint": fp, "last4": l4, "first_seen_at": now} for fp, l4 in keys.items()]
    session.execute(_insert_ignoring_conflicts(session, ApiKey.__table__, rows, "fingerprint"), rows)


def sync_rate_cards(session: Session, book: RateBook) -> None:
    """Keep every card that ever priced a call; a card's rates never change under its name."""
    now = datetime.now(timezone.utc)
    rows = [
        {
            "name": card.name,
            "effective_from": card.effective_from,
            "model": model,
            "endpoint": rate.endpoint,
            "input_per_million": rate.input_per_million,
            "output_per_million": rate.output_per_million,
            "usd_per_credit": card.usd_per_credit,
            "loaded_at": now,
        }
        for card in book.cards
        for model, rate in card.rates.items()
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(RateCardRow.__table__).on_conflict_do_nothing(index_elements=["name", "model"]), rows)


# ---------------------------------------------------------------- queries


def calls_query(since: datetime | None = None, until: datetime | None = None, project: str | None = None) -> Select:
    query = select(Call).order_by(Call.started_at, Call.id)
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    if project is not None:
        query = query.where(Call.project == project)
    return query


def findings_query(since: datetime | None = None, until: datetime | None = None) -> Select:
    return calls_query(since, until).where(Call.pricing_class.not_in(sorted(CLEAN_CLASSES)))


def totals_by_class(session: Session, since: datetime | None = None, until: datetime | None = None) -> list[tuple]:
    """(pricing_class, calls, credits_charged, credits_expected) for each non-clean class."""
    query = (
        select(
            Call.pricing_class,
            func.count(),
            func.sum(Call.credits_charged),
            func.sum(Call.credits_expected),
        )
        .where(Call.pricing_class.not_in(sorted(CLEAN_CLASSES)))
        .group_by(Call.pricing_class)
        .order_by(Call.pricing_class)
    )
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    return [tuple(row) for row in session.execute(query)]


def totals_by_project(session: Session, since: datetime | None = None) -> list[tuple]:
    """(project, calls, prompt, completion, reasoning tokens, credits_charged, credits_expected)."""
    query = (
        select(
            Call.project,
            func.count(),
            func.coalesce(func.sum(Call.prompt_tokens), 0),
            func.coalesce(func.sum(Call.completion_tokens), 0),
            func.coalesce(func.sum(Call.reasoning_tokens), 0),
            func.coalesce(func.sum(Call.credits_charged), 0),
            func.coalesce(func.sum(Call.credits_expected), 0),
        )
        .group_by(Call.project)
        .order_by(Call.project)
    )
    if since is not None:
        query = query.where(Call.started_at >= since)
    return [tuple(row) for row in session.execute(query)]


def count_calls(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Call)) or 0


def sum_charged(session: Session) -> Decimal:
    return session.scalar(select(func.coalesce(func.sum(Call.credits_charged), 0))) or Decimal(0)
