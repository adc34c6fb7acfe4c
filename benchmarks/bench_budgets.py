"""Budgets at scale: 100 budgets over a ledger of 1,000,000 calls, and what a hard limit adds to a recorded call.

The ledger is made fast, in SQL (a recursive CTE on SQLite, generate_series on
PostgreSQL, in a database of its own dropped after): 1,000,000 calls over the
last 180 days in started_at order (an append-only ledger's order), 10
projects, 50 users, 6 keys of 2 accounts, 4 tag sets. The 100 budgets mix
scopes and periods as a team would: projects by month, week, day, quarter and 24h,
project and user, keys and accounts, users alone, tags, the whole ledger by
month, quarter, year and rolling 7d and 24h, half in Europe/Berlin. Printed
side by side: the bare SQL sums the evaluation needs (the same statements,
run on the driver's cursor), a full evaluation that raises the alerts
(`ledger.service.alerting.evaluate`), and a second that finds them raised.

The hard limit's cost: the same chat call through a recording transport that
answers from memory, with no enforced budget, with one whose scope the call
is outside, and with one whose scope it is in (under the limit); blocks of
calls alternate between the sides (A B B A), the figure each side's median.

The indexes 0005 puts in place of the single-column ones, by what they cost
the batched writer (`--writer-records N`): runs with each layout alternate.

    .venv/bin/python benchmarks/bench_budgets.py [--calls 1000000] [--postgres URL] [--no-postgres]
        [--limit-calls 2000] [--limit-blocks 20] [--writer-records 30000] [--writer-rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx2  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench_recorder import NullSink, memory_transport, per_call_us  # noqa: E402
from bench_writer import postgres_database  # noqa: E402
from report_ledger import rebuild_rollups  # noqa: E402
from ledger.accounting.budgets import Budget, Scope  # noqa: E402
from ledger.config.alerts import AlertSettings, ChannelConfig  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.record.recorder import Recorder  # noqa: E402
from ledger.service.alerting import evaluate  # noqa: E402
from ledger.store.budgets import SpendQuery, spends  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.keys import register_keys  # noqa: E402

DAYS = 180
NOW = datetime(2026, 12, 20, 12, tzinfo=timezone.utc)
KEYS = [f"{i:032x}" for i in range(6)]


def fill(ledger: Ledger, calls: int) -> float:
    """Seconds to insert `calls` calls in SQL, oldest first."""
    span = DAYS * 86_400
    started = time.perf_counter()
    with ledger.engine.begin() as connection:
        if ledger.dialect == "sqlite":
            first = (NOW - timedelta(days=DAYS)).timestamp()
            connection.execute(text(f"""
                WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {calls})
                INSERT INTO calls (call_id, stream, attempt, started_at, status, refunded, pricing_class, record_digest,
                                   recorded_at, credits_charged, project, end_user, key_fingerprint, model_requested, tags)
                SELECT 'bench-' || i, 0, 0,
                       strftime('%Y-%m-%d %H:%M:%S', {first} + i * {span}.0 / {calls}, 'unixepoch') || '.000000',
                       'completed', 0, 'ok', 'd', '2026-12-20 12:00:00.000000', ((i * 7919) % 2000 + 1) * 10000000,
                       'p' || (i % 10), 'u' || (i % 50), printf('%032x', i % 6), 'gemini-3.1-pro',
                       CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN '{{"feature": "chat"}}' WHEN 2 THEN '{{"feature": "summary"}}'
                       ELSE '{{"env": "prod", "feature": "chat"}}' END
                FROM n"""))
        else:
            connection.execute(text(f"""
                INSERT INTO calls (call_id, stream, attempt, started_at, status, refunded, pricing_class, record_digest,
                                   recorded_at, credits_charged, project, end_user, key_fingerprint, model_requested, tags)
                SELECT 'bench-' || i, false, 0,
                       timestamptz '{(NOW - timedelta(days=DAYS)).isoformat()}' + (i * {span}.0 / {calls}) * interval '1 second',
                       'completed', false, 'ok', 'd', timestamptz '{NOW.isoformat()}', ((i::bigint * 7919) % 2000 + 1) * 10000000,
                       'p' || (i % 10), 'u' || (i % 50), lpad(to_hex(i % 6), 32, '0'), 'gemini-3.1-pro',
                       CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN '{{"feature": "chat"}}' WHEN 2 THEN '{{"feature": "summary"}}'
                       ELSE '{{"env": "prod", "feature": "chat"}}' END
                FROM generate_series(0, {calls - 1}) AS i"""))
    rebuild_rollups(ledger.engine, log=lambda _: None)  # budgets sum whole buckets from the rollups
    with ledger.engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    if ledger.dialect == "postgresql":  # what autovacuum does for a ledger in use: index-only scans need it
        with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM calls"))
    with ledger.session() as session:
        register_keys(session, [(fp, fp[-4:], f"key-{i}", "acct-a" if i < 3 else "acct-b") for i, fp in enumerate(KEYS)], NOW)
    return time.perf_counter() - started


def budgets() -> list[Budget]:
    made = []

    def add(name, scope, period, zone="UTC"):
        made.append(Budget(name, scope, period, zone, Decimal(50_000), thresholds=(50, 80, 100), forecast=period in ("month", "quarter")))

    for p in range(10):
        for period in ("month", "week", "day", "quarter"):
            add(f"p{p}-{period}", Scope(project=f"p{p}"), period, "Europe/Berlin" if p % 2 else "UTC")
    for p in range(5):
        add(f"p{p}-24h", Scope(project=f"p{p}"), "24h")
    for i in range(20):
        add(f"p{i % 10}-u{i}-month", Scope(project=f"p{i % 10}", user=f"u{i}"), "month", "Europe/Berlin")
    for i in range(6):
        add(f"key-{i}-month", Scope(key=f"key-{i}"), "month")
        add(f"key-{i}-day", Scope(key=f"key-{i}"), "day", "Europe/Berlin")
    add("acct-a-month", Scope(account="acct-a"), "month")
    add("acct-b-month", Scope(account="acct-b"), "month")
    add("acct-a-7d", Scope(account="acct-a"), "7d")
    for i in range(8):
        add(f"u{i}-month", Scope(user=f"u{i}"), "month")
    for i, (tag, period) in enumerate([("feature=chat", "month"), ("feature=summary", "month"), ("env=prod", "month"),
                                       ("feature=chat", "week"), ("env=prod", "week"), ("feature=summary", "day"), ("env=prod", "day")]):
        name, value = tag.split("=")
        add(f"tag-{i}-{period}", Scope(tags=((name, value),)), period)
    for period in ("month", "quarter", "year", "7d", "24h"):
        add(f"all-{period}", Scope(), period, "Europe/Berlin")
    assert len(made) == 100, len(made)
    return made


def bare_sums(ledger: Ledger, queries: list[SpendQuery]) -> float:
    """The statements `spends` runs, compiled once and run on the driver's cursor: the floor of any evaluation."""
    statements = []
    with ledger.session() as session:  # capture the SQL spends() sends, with its parameters
        captured = []

        def keep(conn, cursor, statement, parameters, context, executemany):
            captured.append((statement, parameters))

        from sqlalchemy import event

        event.listen(ledger.engine, "before_cursor_execute", keep)
        try:
            spends(session, queries)
        finally:
            event.remove(ledger.engine, "before_cursor_execute", keep)
        statements = captured
    raw = ledger.engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        for statement, parameters in statements:
            cursor.execute(statement, parameters)
            cursor.fetchall()
        elapsed = time.perf_counter() - started
        cursor.close()
    finally:
        raw.close()
    return elapsed


def measure_evaluation(name: str, ledger: Ledger, calls: int, tmp: Path) -> None:
    built = fill(ledger, calls)
    made = budgets()
    settings = Settings(database_url=ledger.url, secret_path=str(tmp / "secret"),
                        alerting=AlertSettings(tuple(made), (), (ChannelConfig("log", "log"),)))
    periods = [b.period_at(NOW) for b in made]
    queries = [SpendQuery(b.scope, p.start, p.end) for b, p in zip(made, periods)]
    bare = [bare_sums(ledger, queries) for _ in range(3)]
    first_started = time.perf_counter()
    first = evaluate(ledger, settings, now=NOW, host="bench")
    first_time = time.perf_counter() - first_started
    again = []
    for _ in range(3):
        started = time.perf_counter()
        evaluate(ledger, settings, now=NOW, host="bench")
        again.append(time.perf_counter() - started)
    read_only = []
    for _ in range(3):
        started = time.perf_counter()
        evaluate(ledger, settings, now=NOW, host="bench", write=False)
        read_only.append(time.perf_counter() - started)
    print(f"{name}: {calls:,} calls built in {built:.1f} s; 100 budgets "
          f"({sum(1 for s in first.budgets if s.state != 'ok')} past a threshold or their forecast, {len(first.raised)} alerts raised)")
    print(f"  {'bare SQL sums (the statements, on the cursor)':58} {statistics.median(bare):7.3f} s  (best {min(bare):.3f})")
    print(f"  {'evaluate, first (raises the alerts)':58} {first_time:7.3f} s  {'met' if first_time <= 1 else 'MISSED'} (target <= 1 s)")
    print(f"  {'evaluate, again (alerts found raised)':58} {statistics.median(again):7.3f} s  "
          f"{'met' if statistics.median(again) <= 1 else 'MISSED'}  (x{statistics.median(again) / statistics.median(bare):.2f} the bare sums)")
    print(f"  {'budgets (read only, what `credit-ledger budgets` does)':58} {statistics.median(read_only):7.3f} s")


# ---------------------------------------------------------------- the hard limit's cost a call


def limit_cost(calls: int, blocks: int, tmp: Path) -> None:
    Memory = memory_transport(b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "credits_consumed": 0.25}')

    url = f"sqlite:///{tmp / 'limits.db'}"
    Ledger(url).close()
    base = Settings(database_url=url, secret_path=str(tmp / "secret"), limits_refresh_seconds=3600)
    cap = Budget("cap", Scope(project="search"), "month", "UTC", Decimal(10**9), enforce=True)
    sides = {
        "no enforced budget": Recorder(sink=NullSink(), settings=base),
        "enforced, the call outside its scope": Recorder(sink=NullSink(), settings=_with(base, cap)),
        "enforced, the call in its scope (admitted)": Recorder(sink=NullSink(), settings=_with(base, cap)),
    }
    request = httpx2.Request("POST", "http://sim/v1/chat/completions", json={"model": "gemini-3.1-pro", "messages": []},
                             headers={"Authorization": "Bearer sk-bench-0000000000000001", "x-stainless-retry-count": "0"})
    transports = {name: rec.transport(Memory()) for name, rec in sides.items()}
    project = {"enforced, the call in its scope (admitted)": "search"}

    def block(name: str) -> float:
        with sides[name].attribute(project=project.get(name, "support")):
            return per_call_us(transports[name], request, calls)

    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        block(name)  # warm up
    for index in range(blocks):
        order = names if index % 2 == 0 else names[::-1]  # A B C C B A
        for name in order:
            samples[name].append(block(name))
    off = statistics.median(samples[names[0]])
    print(f"hard limit, per recorded call (in-process transport answering from memory, sink discarding; "
          f"{blocks} blocks x {calls} calls, alternating)")
    for name in names:
        median = statistics.median(samples[name])
        added = median - off
        verdict = "" if name == names[0] else f"  added {added:+.2f} us  {'met' if added <= 2 else 'MISSED'} (target <= 2 us)"
        print(f"  {name:48} {median:7.2f} us{verdict}")
    for rec in sides.values():
        rec.close()


# ---------------------------------------------------------------- what the indexes cost the writer

OLD_INDEXES = ("DROP INDEX ix_calls_started_at_credits_charged", "DROP INDEX ix_calls_project_started_at",
               "DROP INDEX ix_calls_key_fingerprint_started_at", "CREATE INDEX ix_calls_started_at ON calls (started_at)",
               "CREATE INDEX ix_calls_project ON calls (project)",
               "CREATE INDEX ix_calls_key_fingerprint ON calls (key_fingerprint)")


def index_cost(records: int, rounds: int, tmp: Path, postgres: str | None) -> None:
    """The batched writer's records/s with migration 0005's indexes and with the ones it replaced, alternating."""
    from bench_writer import run
    from factories import make_raw_capture

    import contextlib
    import io

    captures = [make_raw_capture(i) for i in range(records)]
    backends = [("SQLite", lambda n: (f"sqlite:///{tmp / n}.db", lambda: None))]
    if postgres:
        backends.append(("PostgreSQL", lambda n: postgres_database(postgres)))
    for label, make in backends:
        rates: dict[str, list[float]] = {"0005 indexes": [], "the single-column ones": []}
        for index in range(rounds):
            for layout in (list(rates) if index % 2 == 0 else list(rates)[::-1]):
                url, drop = make(f"writer-{index}-{len(rates[layout])}-{layout[0]}")
                try:
                    with Ledger(url) as ledger, ledger.engine.begin() as connection:
                        if layout != "0005 indexes":
                            for statement in OLD_INDEXES:
                                connection.execute(text(statement))
                    with contextlib.redirect_stdout(io.StringIO()):
                        rates[layout].append(run(url, captures, tmp / f"journal-{index}-{layout[0]}", 1000, 0))
                finally:
                    drop()
        new, old = (statistics.median(v) for v in rates.values())
        print(f"writer, {label}, {records:,} records a run, {rounds} runs each, alternating (writer in a thread): "
              f"{new:,.0f} records/s with 0005's indexes, {old:,.0f} with the single-column ones ({new / old:.3f})")


def _with(settings: Settings, budget: Budget) -> Settings:
    from dataclasses import replace

    return replace(settings, alerting=AlertSettings((budget,)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--limit-calls", type=int, default=2000, help="calls per block of the hard-limit measure")
    parser.add_argument("--limit-blocks", type=int, default=20)
    parser.add_argument("--skip-evaluation", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--writer-records", type=int, default=0, help="also measure the writer with the old and new indexes")
    parser.add_argument("--writer-rounds", type=int, default=4)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-budgets-"))
    import os

    os.environ.setdefault("CREDIT_LEDGER_FINGERPRINT_SECRET", "bench-secret-0123456789")
    if not args.skip_evaluation and not args.no_sqlite:
        with Ledger(f"sqlite:///{tmp / 'ledger.db'}") as ledger:
            measure_evaluation("SQLite", ledger, args.calls, tmp)
    if not args.skip_evaluation and not args.no_postgres:
        url, drop = postgres_database(args.postgres)
        try:
            with Ledger(url) as ledger:
                measure_evaluation("PostgreSQL (127.0.0.1)", ledger, args.calls, tmp)
        finally:
            drop()
    limit_cost(args.limit_calls, args.limit_blocks, tmp)
    if args.writer_records:
        index_cost(args.writer_records, args.writer_rounds, tmp, None if args.no_postgres else args.postgres)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
