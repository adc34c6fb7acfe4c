"""A large ledger for the report benchmark, made fast: one INSERT ... SELECT in the database itself.

The calls are computed from their number n by the same integer arithmetic on
SQLite (a recursive CTE counting to N) and PostgreSQL (generate_series), so
both databases hold the same figures: N calls spread evenly over `days` days
from 2026-09-01T00:00Z, five keys of two accounts, 20 projects, 200 users,
three tag sets, two models, about 1% errors (refunded) and 1% aborted streams
(no charge), charges rounded to 0.01 credit (class `rounding` where that moved
them) and every 200th call overcharged by 0.05 credit. The indexes are
dropped for the insert and made again after it (an index built once is faster
than one kept up row by row). The rollups are then made from the calls by
`rollups.rebuild`, a UTC day a transaction, as `rollup rebuild` makes them.
PostgreSQL's tables are then vacuumed and analysed
(as autovacuum would); SQLite's is not analysed (a ledger file never is). Nothing here goes through the recorder: it is
the ledger's reading side that is measured.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.accounting.pricing import default_rate_book
from ledger.store import rollup_months, rollups
from ledger.store.rate_cards import sync_rate_cards

BASE = datetime(2026, 9, 1, tzinfo=timezone.utc)
KEYS = (("backend", "prod"), ("batch", "prod"), ("search-svc", "prod"), ("support-bot", "prod"), ("staging", "staging"))

# The values of call n, in SQL both databases read the same way. h is a multiplicative hash of n.
_VALUES = """
    {call_id} AS call_id,
    'chatcmpl-' || {call_id} AS completion_id,
    CASE WHEN h % 10 = 0 THEN 'gemini-2.5-pro' ELSE 'gemini-3.1-pro' END AS model_requested,
    CASE WHEN h % 100 = 0 THEN NULL WHEN h % 10 = 0 THEN 'gemini-2.5-pro-preview' ELSE 'gemini-3.1-pro-preview' END AS model_reported,
    (h % 2 = 0) AS stream,
    CASE WHEN h % 3 = 0 THEN 'high' ELSE 'low' END AS reasoning_effort,
    NULL AS include_thoughts, NULL AS tools, 0 AS attempt,
    {ts_started} AS started_at,
    {ts_first_byte} AS first_byte_at,
    {ts_ended} AS ended_at,
    CASE WHEN h % 100 = 0 THEN 'error' WHEN h % 100 = 1 THEN 'aborted' ELSE 'completed' END AS status,
    CASE WHEN h % 100 = 0 THEN 503 ELSE 200 END AS http_status,
    CASE WHEN h % 100 = 0 THEN 'upstream_error' END AS error_code,
    CASE WHEN h % 100 = 0 THEN 'upstream_error' END AS error_type,
    CASE WHEN h % 100 > 1 THEN 'stop' END AS finish_reason,
    (h % 100 = 0) AS refunded,
    CASE WHEN h % 100 > 1 THEN p END AS prompt_tokens,
    CASE WHEN h % 100 > 1 THEN c END AS completion_tokens,
    CASE WHEN h % 100 > 1 THEN r END AS reasoning_tokens,
    CASE WHEN h % 100 > 1 THEN 0 END AS audio_tokens,
    CASE WHEN h % 100 > 1 THEN 0 END AS text_tokens,
    CASE WHEN h % 100 > 1 THEN p + c + r END AS total_tokens,
    CASE WHEN h % 100 = 0 THEN 0 WHEN h % 100 = 1 THEN NULL
         ELSE (e + 5000000) / 10000000 * 10000000 + CASE WHEN n % 200 = 0 THEN 50000000 ELSE 0 END END AS credits_charged,
    CASE WHEN h % 100 = 0 THEN 0 ELSE e END AS credits_expected,
    CASE WHEN h % 100 = 0 THEN 'ok' WHEN h % 100 = 1 THEN 'missing_charge' WHEN n % 200 = 0 THEN 'overcharge'
         WHEN (e + 5000000) / 10000000 * 10000000 = e THEN 'ok' ELSE 'rounding' END AS pricing_class,
    'aivideoapi-2026-04' AS rate_card,
    {fingerprint} AS key_fingerprint,
    'k' || (n % 5) || 'x4' AS key_last4,
    'project-' || (h % 20) AS project,
    'u-' || (h / 20 % 200) AS end_user,
    CASE h % 4 WHEN 0 THEN '{{"feature": "summary"}}' WHEN 1 THEN '{{"feature": "chat", "team": "web"}}'
                WHEN 2 THEN '{{"team": "data"}}' END AS tags,
    NULL AS anomalies,
    {digest} AS record_digest,
    {ts_recorded} AS recorded_at
"""

_DERIVED = """
    SELECT n, h, p, c, r,
           CASE WHEN h % 10 = 0 THEN p * 57000 + c * 450000 ELSE p * 160000 + c * 960000 END AS e
    FROM (SELECT n, h, 50 + h % 4000 AS p, 20 + h / 7 % 1500 AS c, h / 11 % 2000 AS r
          FROM (SELECT n, n * 2654435761 % 4294967296 AS h FROM numbers) AS hashed) AS counted
"""


def _sqlite_time(offset: str) -> str:
    # UTCDateTime's text on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff'
    return f"strftime('%Y-%m-%d %H:%M:%f', {BASE.timestamp():.0f} + n * :step + {offset}, 'unixepoch') || '000'"


def _postgres_time(offset: str) -> str:
    return f"to_timestamp({BASE.timestamp():.0f} + n * :step + {offset})"


def build(engine, calls: int, days: int = 90, log=print) -> float:
    """Fill the (empty, migrated) ledger at `engine` with `calls` calls over `days` days; returns the seconds taken."""
    started = time.perf_counter()
    step = days * 86400 / calls
    postgres = engine.dialect.name == "postgresql"
    when = _postgres_time if postgres else _sqlite_time
    values = _VALUES.format(
        call_id="lpad(to_hex(n), 32, '0')" if postgres else "printf('%032x', n)",
        ts_started=when("0"),
        ts_first_byte=when("0.4"),
        ts_ended=when("1.2 + (h % 50) / 10.0"),
        ts_recorded=when("2 + (h % 50) / 10.0"),
        fingerprint="repeat('f', 63) || (n % 5)" if postgres else "substr('" + "f" * 63 + "', 1, 63) || (n % 5)",
        digest="md5(n::text) || md5((n + 7)::text)" if postgres else "lower(hex(randomblob(32)))",
    )
    numbers = (
        "numbers AS (SELECT generate_series(1, :calls) AS n)"
        if postgres
        else "numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :calls)"
    )
    insert = f"INSERT INTO calls (call_id, completion_id, model_requested, model_reported, stream, reasoning_effort, " \
             "include_thoughts, tools, attempt, started_at, first_byte_at, ended_at, status, http_status, error_code, " \
             "error_type, finish_reason, refunded, prompt_tokens, completion_tokens, reasoning_tokens, audio_tokens, " \
             "text_tokens, total_tokens, credits_charged, credits_expected, pricing_class, rate_card, key_fingerprint, " \
             "key_last4, project, end_user, tags, anomalies, record_digest, recorded_at) " \
             f"WITH {'RECURSIVE ' if not postgres else ''}{numbers} SELECT {values} FROM ({_DERIVED}) AS derived"
    with engine.begin() as connection:
        definitions = _index_definitions(connection, postgres)
        for name in definitions:
            connection.execute(text(f"DROP INDEX {name}"))
        connection.execute(text(insert), {"calls": calls, "step": step})
        log(f"  inserted {calls:,} calls in {time.perf_counter() - started:.1f} s")
        for sql in definitions.values():
            connection.execute(text(sql))
        now = datetime.now(timezone.utc)
        for i, (label, account) in enumerate(KEYS):
            connection.execute(
                text("INSERT INTO api_keys (fingerprint, last4, label, account, first_seen_at) VALUES (:f, :l, :label, :a, :t)"),
                {"f": "f" * 63 + str(i), "l": f"k{i}x4", "label": label, "a": account,
                 "t": now if postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")},
            )
    # The card that priced the calls, as the writer stores it before its first call (a report reads it there).
    with Session(engine) as session, session.begin():
        sync_rate_cards(session, default_rate_book())
    rebuild_rollups(engine, log)
    if postgres:  # the statistics autovacuum would gather; a SQLite ledger has none unless someone runs ANALYZE
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE calls"))
            connection.execute(text("VACUUM ANALYZE call_rollups"))
    return time.perf_counter() - started


def rebuild_rollups(engine, log=print) -> int:
    """The rollups of every call, made anew a UTC day a transaction (`rollups.rebuild`): how many rollup rows."""
    started = time.perf_counter()
    with Session(engine) as session:
        ranges = rollups.days(session)
    made = 0
    for start, end in ranges:
        with Session(engine) as session, session.begin():
            made += rollups.rebuild(session, start, end, months=False)
    for start, end in rollup_months.month_ranges(ranges):  # each month once, from its days' rows
        with Session(engine) as session, session.begin():
            rollup_months.remake_months(session, start, end)
    log(f"  rebuilt {made:,} rollup rows ({len(ranges)} days) in {time.perf_counter() - started:.1f} s")
    return made


def _index_definitions(connection, postgres: bool) -> dict[str, str]:
    """The calls table's plain indexes (name: CREATE statement), as the migrations left them.

    Read from the database, not listed here, so that a migration that renames
    or adds an index needs no change in this file. Indexes that back a
    constraint (the primary key, unique call ids) stay: they are not plain.
    """
    if postgres:
        rows = connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls' AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = 'calls'::regclass)"))
    else:  # an index that backs a constraint has no CREATE statement of its own
        rows = connection.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' AND sql IS NOT NULL"))
    return {name: sql for name, sql in rows}
