"""Inserts and queries of the ledger; every function takes a Session.

`insert_calls` is the batch path: one multi-row INSERT … ON CONFLICT DO
NOTHING per batch, so a replayed record is a no-op, and a record whose call id
is known with other content is kept aside in `rejected_records`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable, Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import ApiKey, Call, RateCardRow, RejectedRecord, as_utc
from .money import to_nano
from .pricing import CLEAN_CLASSES, PriceFinding, RateBook
from .usage import USAGE_FIELDS, CallRecord, record_digest, record_to_dict


@dataclass(frozen=True, slots=True)
class InsertResult:
    inserted: int
    duplicates: int
    conflicts: int


# The `calls` columns a record fills, in the table's order (`id` is the database's).
CALL_COLUMNS = (
    "call_id", "completion_id", "model_requested", "model_reported", "stream", "reasoning_effort",
    "include_thoughts", "tools", "attempt", "started_at", "first_byte_at", "ended_at", "status", "http_status",
    "error_code", "error_type", "finish_reason", "refunded", *USAGE_FIELDS, "credits_charged", "credits_expected",
    "pricing_class", "rate_card", "key_fingerprint", "key_last4", "project", "end_user", "tags", "anomalies",
    "record_digest", "recorded_at",
)
_DATETIMES = tuple(CALL_COLUMNS.index(n) for n in ("started_at", "first_byte_at", "ended_at"))
_RECORDED_AT = CALL_COLUMNS.index("recorded_at")
_DIGEST = CALL_COLUMNS.index("record_digest")
_CREDITS = tuple(CALL_COLUMNS.index(n) for n in ("credits_charged", "credits_expected"))
_NO_USAGE = (None,) * len(USAGE_FIELDS)


def call_values(record: CallRecord, finding: PriceFinding, digest: str, recorded_at: datetime) -> tuple:
    """The `calls` values of a priced record, in CALL_COLUMNS order (Decimals and aware datetimes)."""
    facts = record.response
    usage = facts.usage
    return (
        record.call_id, facts.completion_id, record.model_requested, facts.model_reported, record.stream,
        record.reasoning_effort, record.include_thoughts, record.tools, record.attempt, record.started_at,
        record.first_byte_at, record.ended_at, record.status, record.http_status, facts.error_code,
        facts.error_type, facts.finish_reason, record.refunded,
        *(_NO_USAGE if usage is None else (
            usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens,
            usage.audio_tokens, usage.text_tokens, usage.total_tokens,
        )),
        facts.credits_charged, finding.credits_expected, finding.pricing_class, finding.rate_card,
        record.key_fingerprint, record.key_last4, record.project, record.end_user,
        _tags_json(record.tags) if record.tags else None,
        ",".join(facts.anomalies) or None,
        digest, recorded_at,
    )


@lru_cache(maxsize=1024)
def _tags_json_of(items: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(items))


def _tags_json(tags) -> str:
    """The tags as stored: a JSON object, keys sorted (the same few tag sets recur: cached)."""
    return _tags_json_of(tuple(sorted(tags.items())))


def _insert_ignoring_conflicts(session: Session, table, key: str):
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[key])


def insert_calls(session: Session, records: Sequence[tuple[CallRecord, PriceFinding]]) -> InsertResult:
    """Insert priced records once each; report what was new, replayed or conflicting."""
    if not records:
        return InsertResult(0, 0, 0)
    now = datetime.now(timezone.utc)
    by_id: dict[str, tuple[CallRecord, tuple]] = {}
    in_batch_conflicts: list[tuple[CallRecord, str]] = []
    for record, finding in records:
        digest = record_digest(record)
        seen = by_id.get(record.call_id)
        if seen is None:
            by_id[record.call_id] = (record, call_values(record, finding, digest, now))
        elif seen[1][_DIGEST] != digest:
            in_batch_conflicts.append((record, "call id replayed with other content"))
    inserted_ids = _insert_new_calls(session, [values for _, values in by_id.values()])
    _remember_keys(session, (r for r, _ in by_id.values() if r.call_id in inserted_ids), now)

    not_inserted = [cid for cid in by_id if cid not in inserted_ids]
    conflicts = list(in_batch_conflicts)
    if not_inserted:
        known = {
            call_id: digest
            for call_id, digest in session.execute(
                select(Call.call_id, Call.record_digest).where(Call.call_id.in_(not_inserted))
            )
        }
        for cid in not_inserted:
            record, values = by_id[cid]
            if known.get(cid) != values[_DIGEST]:
                conflicts.append((record, "call id replayed with other content"))
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


def _insert_new_calls(session: Session, rows: list[tuple]) -> set[str]:
    """Insert the rows whose call id is new (one round trip); the call ids inserted."""
    dialect = session.get_bind().dialect.name
    if len(rows) > 1 and dialect == "postgresql":
        return _copy_new_calls(session, rows)
    if len(rows) > 1 and dialect == "sqlite":
        return _values_new_calls(session, rows)
    statement = _insert_ignoring_conflicts(session, Call.__table__, "call_id").returning(Call.call_id)
    return set(session.scalars(statement, [dict(zip(CALL_COLUMNS, row)) for row in rows]).all())


def _stored(values: tuple, timestamp, recorded_at=None) -> list:
    """A row's values as the database stores them: nano-credit integers, timestamps by `timestamp`.

    What the columns' types (Credits, UTCDateTime) would do to each bind
    parameter, done by position for a whole batch; tests hold the two equal.
    `recorded_at`, when given, is the batch's one recorded_at already converted.
    """
    row = list(values)
    for i in _DATETIMES:
        row[i] = timestamp(row[i])
    row[_RECORDED_AT] = timestamp(row[_RECORDED_AT]) if recorded_at is None else recorded_at
    for i in _CREDITS:
        if row[i] is not None:
            row[i] = to_nano(row[i])
    return row


def _copy_new_calls(session: Session, rows: list[tuple]) -> set[str]:
    # psycopg parses a multi-row VALUES statement of a whole batch in Python (~100 us a row);
    # COPY into a private staging table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
    names = ", ".join(CALL_COLUMNS)
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS calls_incoming ON COMMIT DELETE ROWS AS SELECT {names} FROM calls WITH NO DATA"
        )
        recorded_at = as_utc(rows[0][_RECORDED_AT])
        with cursor.copy(f"COPY calls_incoming ({names}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(_stored(values, as_utc, recorded_at))
        cursor.execute(
            f"INSERT INTO calls ({names}) SELECT {names} FROM calls_incoming ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
        )
        inserted = {r[0] for r in cursor.fetchall()}
        cursor.execute("TRUNCATE calls_incoming")
    return inserted


def _values_new_calls(session: Session, rows: list[tuple]) -> set[str]:
    # The statement insertmanyvalues would send, without its per-parameter bookkeeping:
    # values converted by position, then one multi-row INSERT per page.
    names = ", ".join(CALL_COLUMNS)
    one = "(" + ", ".join("?" * len(CALL_COLUMNS)) + ")"
    per_statement = max(1, 32000 // len(CALL_COLUMNS))  # SQLite's limit on parameters is 32766
    cursor = session.connection().connection.driver_connection.cursor()
    inserted: set[str] = set()
    recorded_at = _sqlite_utc_text(rows[0][_RECORDED_AT])
    try:
        for start in range(0, len(rows), per_statement):
            page = rows[start : start + per_statement]
            params = [value for values in page for value in _stored(values, _sqlite_utc_text, recorded_at)]
            cursor.execute(
                f"INSERT INTO calls ({names}) VALUES {', '.join([one] * len(page))} "
                "ON CONFLICT (call_id) DO NOTHING RETURNING call_id",
                params,
            )
            inserted.update(r[0] for r in cursor.fetchall())
    finally:
        cursor.close()
    return inserted


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """What UTCDateTime and SQLAlchemy's SQLite DATETIME store, in one step."""
    value = as_utc(value)
    return None if value is None else value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def _remember_keys(session: Session, records: Iterable[CallRecord], now: datetime) -> None:
    keys = {r.key_fingerprint: r.key_last4 or "" for r in records if r.key_fingerprint}
    if not keys:
        return
    rows = [{"fingerprint": fp, "last4": l4, "first_seen_at": now} for fp, l4 in keys.items()]
    session.execute(_insert_ignoring_conflicts(session, ApiKey.__table__, "fingerprint"), rows)


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
