"""The `calls` table: priced records packed into rows, inserted once each, and the queries that read them.

`insert_rows` is the batch path: the fastest bulk insert of each database
(COPY on PostgreSQL, one prepared executemany on SQLite) expecting new call
ids, so a replayed record is a no-op and a record whose call id is known with
other content is kept aside in `rejected_records`; the rows it wrote, and
only those, are added to the rollups in the same transaction. Every function
takes a Session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple, Sequence

from psycopg import errors as psycopg_errors
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..accounting.parsing import MAX_TEXT
from ..accounting.pricing import CLEAN_CLASSES, PriceFinding
from ..accounting.records import USAGE_FIELDS, CallRecord, record_digest, record_to_dict
from ..money import to_nano
from .engine import IDS_A_STATEMENT, insert_for
from .keys import remember_keys
from .models import Call, RejectedRecord, as_utc
from .retention import retired
from .rollups import add_calls


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
# Texts that come from the caller or the upstream, and the width of their column: a longer value
# is cut to it and the call flagged (`truncated_<column>`), the same on SQLite (which would keep
# it whole) and PostgreSQL (which would refuse the row).
OUTSIDE_TEXTS = (
    "completion_id", "model_requested", "model_reported", "reasoning_effort", "tools", "error_code", "error_type",
    "finish_reason", "project", "end_user",
)
TEXT_LIMITS = tuple(
    (CALL_COLUMNS.index(name), Call.__table__.c[name].type.length, f"truncated_{name}") for name in OUTSIDE_TEXTS
)
# Parsing cuts what the API sends at MAX_TEXT already: a row need only look at the attribution and
# at the texts whose column is narrower than that (the writer's hot loop).
_ATTRIBUTION = ("project", "end_user")
UNBOUNDED_LIMITS = tuple(
    (index, width) for index, width, _ in TEXT_LIMITS
    if CALL_COLUMNS[index] in _ATTRIBUTION or width < MAX_TEXT
)
_ANOMALIES = CALL_COLUMNS.index("anomalies")


def call_row(record: CallRecord, finding: PriceFinding, digest: str, recorded_at: datetime) -> tuple:
    """The `calls` values of a priced record, in CALL_COLUMNS order (Decimals and aware datetimes).

    The one place that packs a record into the table's order; texts too wide
    for their column are cut here (see TEXT_LIMITS).
    """
    (call_id, started_at, status, model_requested, stream, effort, thoughts, tools, attempt, first_byte_at, ended_at,
     http_status, refunded, facts, key_fingerprint, key_last4, project, end_user, tags) = record  # CallRecord's fields
    completion_id, model_reported, finish_reason, usage, charged, error_code, error_type, anomalies = facts
    row = (
        call_id, completion_id, model_requested, model_reported, stream, effort, thoughts, tools, attempt, started_at,
        first_byte_at, ended_at, status, http_status, error_code, error_type, finish_reason, refunded,
        *(_NO_USAGE if usage is None else usage),
        charged, finding.credits_expected, finding.pricing_class, finding.rate_card,
        key_fingerprint, key_last4, project, end_user,
        _tags_json(tags) if tags else None,
        ",".join(anomalies) or None,
        digest, recorded_at,
    )
    for index, limit in UNBOUNDED_LIMITS:
        value = row[index]
        if value is not None and len(value) > limit:
            return _fit_texts(row)
    return row


def _fit_texts(row: tuple) -> tuple:
    fitted = list(row)
    cut = []
    for index, limit, anomaly in TEXT_LIMITS:
        value = fitted[index]
        if value is not None and len(value) > limit:
            fitted[index] = value[:limit]
            cut.append(anomaly)
    fitted[_ANOMALIES] = ",".join(dict.fromkeys([*filter(None, (row[_ANOMALIES] or "").split(",")), *cut]))
    return tuple(fitted)


@lru_cache(maxsize=1024)
def _tags_json_of(items: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(items))


def _tags_json(tags) -> str:
    """The tags as stored: a JSON object, keys sorted (the same few tag sets recur: cached)."""
    return _tags_json_of(tuple(sorted(tags.items())))


def insert_calls(session: Session, records: Sequence[tuple[CallRecord, PriceFinding]]) -> InsertResult:
    """Insert priced records once each; report what was new, replayed or conflicting."""
    now = datetime.now(timezone.utc)
    rows = [call_row(record, finding, record_digest(record), now) for record, finding in records]
    return insert_rows(session, rows, [record for record, _ in records])


def insert_rows(session: Session, rows: Sequence[tuple], records: Sequence[CallRecord]) -> InsertResult:
    """Insert `calls` rows (CALL_COLUMNS order; `records[i]` is the record of rows[i]) once each.

    A call id already in the ledger with the same record digest is a replay
    (a no-op); with another, the record is kept aside in `rejected_records`.
    Rows of journal entries carry the entry's digest, rows of earlier versions
    the record's: a replay whose digests differ is one if its record's digest
    (`records.record_digest`) is the one stored. A call id whose row
    retention deleted is known too (`retention.retired`): its row is taken
    out again. The rows written are added to the rollups (`rollups.add_calls`)
    in the same transaction.
    """
    if not rows:
        return InsertResult(0, 0, 0)
    first: dict[str, int] = {}
    conflicts: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        seen = first.get(row[0])
        if seen is None:
            first[row[0]] = i
        elif rows[seen][_DIGEST] != row[_DIGEST]:
            conflicts.append((i, "call id replayed with other content"))
    unique = [rows[i] for i in first.values()]
    written, stored = _insert_new_calls(session, unique)
    gone = retired(session, written, _STARTED_AT)
    if gone:  # deleted by retention once already: taken out again, a replay or a conflict as if still there
        _delete_written(session, list(gone))
        written = [row for row in written if row[0] not in gone]
        stored.update(gone)
    inserted = len(written)
    add_calls(session, written, CALL_COLUMNS, unique[0][_RECORDED_AT])  # the batch's recorded_at, as stored
    remember_keys(session, {row[_KEY_FINGERPRINT]: row[_KEY_LAST4] or "" for row in unique if row[_KEY_FINGERPRINT]})
    for call_id, stored_digest in stored.items():
        i = first[call_id]
        if stored_digest != rows[i][_DIGEST] and stored_digest != record_digest(records[i]):
            conflicts.append((i, "call id replayed with other content"))
    if conflicts:
        now = datetime.now(timezone.utc)
        session.execute(
            RejectedRecord.__table__.insert(),
            [
                {
                    "call_id": rows[i][0],
                    "reason": reason,
                    "payload": json.dumps(record_to_dict(records[i]), sort_keys=True),
                    "received_at": now,
                }
                for i, reason in conflicts
            ],
        )
    return InsertResult(inserted, len(rows) - inserted - len(conflicts), len(conflicts))


def _delete_written(session: Session, call_ids: list[str]) -> None:
    """Delete rows this transaction has just inserted (their call ids retention had deleted before)."""
    for at in range(0, len(call_ids), IDS_A_STATEMENT):
        session.execute(Call.__table__.delete().where(Call.call_id.in_(call_ids[at : at + IDS_A_STATEMENT])))


_STARTED_AT = CALL_COLUMNS.index("started_at")
_KEY_FINGERPRINT = CALL_COLUMNS.index("key_fingerprint")
_KEY_LAST4 = CALL_COLUMNS.index("key_last4")


def _insert_new_calls(session: Session, rows: list[tuple]) -> tuple[list[tuple], dict[str, str]]:
    """Insert the rows (unique call ids) whose call id is new: (the rows written, {call id: stored digest}).

    Rows go in by the fastest bulk path of the database, expecting new call
    ids. Where some were known already, the stored digests of the batch's
    call ids come back: a row stored with the same digest is a replay (or
    this insert), one with another digest a conflict.
    """
    if len(rows) == 1:  # one statement
        return _insert_one_call(session, rows[0])
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        if session.get_bind().dialect.name == "postgresql":
            return _copy_new_calls(cursor, rows)
        return _executemany_new_calls(cursor, rows)
    finally:
        cursor.close()


def _insert_one_call(session: Session, row: tuple) -> tuple[list[tuple], dict[str, str]]:
    statement = insert_for(session, Call.__table__).on_conflict_do_nothing(index_elements=["call_id"]).returning(Call.call_id)
    if session.scalars(statement, [dict(zip(CALL_COLUMNS, row))]).all():
        return [row], {}
    stored = session.scalar(select(Call.record_digest).where(Call.call_id == row[0]))
    return [], {} if stored is None else {row[0]: stored}


def _stored_digests(cursor, call_ids: list[str]) -> dict[str, str]:
    """{call id: record digest} of those of `call_ids` in the ledger (a DBAPI cursor of either database)."""
    known: dict[str, str] = {}
    postgres = type(cursor).__module__.startswith("psycopg")
    for start in range(0, len(call_ids), IDS_A_STATEMENT):
        page = call_ids[start : start + IDS_A_STATEMENT]
        if postgres:
            cursor.execute("SELECT call_id, record_digest FROM calls WHERE call_id = ANY(%s)", (page,))
        else:
            cursor.execute(f"SELECT call_id, record_digest FROM calls WHERE call_id IN ({', '.join('?' * len(page))})", page)
        known.update(cursor.fetchall())
    return known



def stored_values(values: tuple, timestamp, recorded_at=None) -> list:
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


_NAMES = ", ".join(CALL_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO calls ({_NAMES}) VALUES ({', '.join('?' * len(CALL_COLUMNS))}) ON CONFLICT (call_id) DO NOTHING"


def _copy_new_calls(cursor, rows: list[tuple]) -> tuple[list[tuple], dict[str, str]]:
    # COPY straight into calls, in a savepoint: the fastest way in. When a call id is known
    # already (a replay), the COPY fails on the unique call id and the rows go through a
    # private staging table and one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
    # The savepoint is ours, not psycopg's transaction(): on a connection with no transaction
    # begun yet (the batch's first statement), that would BEGIN and COMMIT the calls alone,
    # before the rollups and the rest of the batch's transaction.
    recorded_at = as_utc(rows[0][_RECORDED_AT])
    cursor.execute("SAVEPOINT copy_calls")  # psycopg begins the session's transaction first
    try:
        with cursor.copy(f"COPY calls ({_NAMES}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(stored_values(values, as_utc, recorded_at))
    except psycopg_errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT copy_calls")
    else:
        cursor.execute("RELEASE SAVEPOINT copy_calls")
        return rows, {}
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS calls_incoming ON COMMIT DELETE ROWS AS SELECT {_NAMES} FROM calls WITH NO DATA")
    with cursor.copy(f"COPY calls_incoming ({_NAMES}) FROM STDIN") as copy:
        for values in rows:
            copy.write_row(stored_values(values, as_utc, recorded_at))
    cursor.execute(f"INSERT INTO calls ({_NAMES}) SELECT {_NAMES} FROM calls_incoming ON CONFLICT (call_id) DO NOTHING RETURNING call_id")
    inserted = {r[0] for r in cursor.fetchall()}
    cursor.execute("TRUNCATE calls_incoming")
    return [row for row in rows if row[0] in inserted], _stored_digests(cursor, [row[0] for row in rows if row[0] not in inserted])


def _executemany_new_calls(cursor, rows: list[tuple]) -> tuple[list[tuple], dict[str, str]]:
    # One prepared statement for the batch (executemany), values converted by position;
    # ON CONFLICT skips a known call id, and then the stored digests are read.
    recorded_at = sqlite_utc_text(rows[0][_RECORDED_AT])
    cursor.executemany(_SQLITE_INSERT, [stored_values(values, sqlite_utc_text, recorded_at) for values in rows])
    inserted = cursor.rowcount
    if inserted == len(rows):
        return rows, {}
    return _written_sqlite(cursor, rows, inserted), _stored_digests(cursor, [row[0] for row in rows])


def _written_sqlite(cursor, rows: list[tuple], inserted: int) -> list[tuple]:
    """The rows of a batch this executemany wrote, when some were known already.

    They are the last `inserted` rowids: SQLite gives a new row the largest
    rowid plus one, and no other connection writes while this transaction
    holds the write lock (a digest cannot tell this insert from a replay).
    """
    if not inserted:
        return []
    cursor.execute("SELECT call_id FROM calls WHERE id > last_insert_rowid() - ?", (inserted,))
    written = {call_id for (call_id,) in cursor.fetchall()}
    return [row for row in rows if row[0] in written]


def sqlite_utc_text(value: datetime | None) -> str | None:
    """What UTCDateTime and SQLAlchemy's SQLite DATETIME store, in one step."""
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = as_utc(value)
    # isoformat(" ", "microseconds")[:26] (without the "+00:00"), in less time (BENCHMARKS.md, "Writer throughput")
    return _SQLITE_DATETIME % (value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)


_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


# ---------------------------------------------------------------- queries


def _of_projects(query, projects: frozenset[str] | None):
    """Only the calls of `projects` (None: every call; a call of no project is of none of them)."""
    return query if projects is None else query.where(Call.project.in_(sorted(projects)))


def calls_query(since: datetime | None = None, until: datetime | None = None, project: str | None = None,
                projects: frozenset[str] | None = None) -> Select:
    query = _of_projects(select(Call).order_by(Call.started_at, Call.id), projects)
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    if project is not None:
        query = query.where(Call.project == project)
    return query


def findings_query(since: datetime | None = None, until: datetime | None = None,
                   projects: frozenset[str] | None = None) -> Select:
    return calls_query(since, until, projects=projects).where(Call.pricing_class.not_in(sorted(CLEAN_CLASSES)))


class ClassTotal(NamedTuple):
    pricing_class: str
    calls: int
    credits_charged: Decimal | None
    credits_expected: Decimal | None


class ProjectTotal(NamedTuple):
    project: str | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    credits_charged: Decimal
    credits_expected: Decimal


def totals_by_class(session: Session, since: datetime | None = None, until: datetime | None = None,
                    projects: frozenset[str] | None = None) -> list[ClassTotal]:
    """The calls and credits of each non-clean pricing class (of `projects`' calls only, given)."""
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
    return [ClassTotal(*row) for row in session.execute(_of_projects(query, projects))]


def totals_by_project(session: Session, since: datetime | None = None) -> list[ProjectTotal]:
    """The calls, tokens and credits of each project."""
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
    return [ProjectTotal(*row) for row in session.execute(query)]


def sum_charged(session: Session) -> Decimal:
    return session.scalar(select(func.coalesce(func.sum(Call.credits_charged), 0))) or Decimal(0)
