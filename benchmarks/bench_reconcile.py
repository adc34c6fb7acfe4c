"""Reconciliation over a big ledger: `reconcile` beside the database's own bare pass over the same calls.

Builds a ledger of --calls calls (default 1,000,000) spread over --days days
(default 90), four keys of one account, with a balance snapshot every
--every hours (default 6) that floors the platform's exact consumption as the
API does; on SQLite (a temporary file) and, unless --no-postgres, on
PostgreSQL (a database of its own on the server named by
$CREDIT_LEDGER_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/test,
dropped afterwards). The calls go in by the fastest bulk path of each database
(executemany of prepared rows on SQLite, COPY on PostgreSQL), in the ledger's
stored form, through the schema the migrations make, and their rollups made by
a rebuild (the reconciliation reads them). Then, alternately, the
reconciliation (`store.reconciliation.reconcile`, every window and the
cumulative line) and the bare query it cannot beat: one SUM of the charges of
the same calls through the started_at index. Medians of --repeat runs each.

    .venv/bin/python benchmarks/bench_reconcile.py [--calls 1000000] [--days 90] [--every 6] [--repeat 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import create_engine, text  # noqa: E402

from ledger.store.calls import CALL_COLUMNS, sqlite_utc_text  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.reconciliation import reconcile  # noqa: E402
from report_ledger import rebuild_rollups  # noqa: E402

START = datetime(2026, 9, 1, tzinfo=timezone.utc)
KEYS = [f"fp-bench-{i}" for i in range(4)]
NANO = 10**9


def synthetic_calls(n: int, days: int, seed: int = 1):
    """(row in CALL_COLUMNS order with stored values, ended_at) of n calls spread evenly over `days` days."""
    rng = random.Random(seed)
    span = days * 86400
    index = {name: i for i, name in enumerate(CALL_COLUMNS)}
    for i in range(n):
        started = START + timedelta(seconds=span * i / n)
        ended = started + timedelta(seconds=rng.uniform(0.5, 30))
        prompt, completion = rng.randint(50, 3000), rng.randint(20, 800)
        expected = prompt * 160_000 + completion * 960_000  # nano-credits: tokens x credits per 1M / 1M x 10^9
        row = [None] * len(CALL_COLUMNS)
        row[index["call_id"]] = f"bench-{i}"
        row[index["stream"]], row[index["attempt"]], row[index["refunded"]] = True, 0, False
        row[index["started_at"]], row[index["ended_at"]] = started, ended
        row[index["status"]], row[index["http_status"]] = "completed", 200
        row[index["prompt_tokens"]], row[index["completion_tokens"]] = prompt, completion
        row[index["credits_expected"]] = expected
        row[index["credits_charged"]] = round(expected / 10_000_000) * 10_000_000  # charged to the cent
        row[index["pricing_class"]] = "rounding"
        row[index["key_fingerprint"]], row[index["project"]] = KEYS[i % 4], f"project-{i % 7}"
        row[index["record_digest"]], row[index["recorded_at"]] = "bench", ended
        yield row, ended


def build(url: str, calls: int, days: int, every_hours: int) -> None:
    Ledger(url).close()  # the schema, by the migrations
    snapshots = [START + timedelta(hours=every_hours * k) for k in range(days * 24 // every_hours + 1)]
    engine = create_engine(Ledger(url, upgrade_schema=False).url)
    booked: list[tuple[datetime, int]] = []
    postgres = url.startswith("postgresql")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO api_keys (fingerprint, last4, label, account, first_seen_at) "
                                "VALUES (:fp, :l4, :fp, 'acme', :t)"),
                           [{"fp": fp, "l4": fp[-4:], "t": START} for fp in KEYS])
        cursor = connection.connection.driver_connection.cursor()
        names = ", ".join(CALL_COLUMNS)
        if postgres:
            with cursor.copy(f"COPY calls ({names}) FROM STDIN") as copy:
                for row, ended in synthetic_calls(calls, days):
                    copy.write_row(row)
                    booked.append((ended, row[CALL_COLUMNS.index("credits_charged")]))
        else:
            sql = f"INSERT INTO calls ({names}) VALUES ({', '.join('?' * len(CALL_COLUMNS))})"
            batch = []
            for row, ended in synthetic_calls(calls, days):
                booked.append((ended, row[CALL_COLUMNS.index("credits_charged")]))
                for i in (CALL_COLUMNS.index("started_at"), CALL_COLUMNS.index("ended_at"), CALL_COLUMNS.index("recorded_at")):
                    row[i] = sqlite_utc_text(row[i])
                batch.append(row)
                if len(batch) == 50_000:
                    cursor.executemany(sql, batch)
                    batch = []
            cursor.executemany(sql, batch)
        # The platform books each call at its end and floors its exact consumption in /v1/credits.
        booked.sort()
        total, j, rows = 0, 0, []
        for taken_at in snapshots:
            while j < len(booked) and booked[j][0] <= taken_at:
                total += booked[j][1]
                j += 1
            consumed = total // NANO * NANO
            rows.append({"t": taken_at, "a": taken_at + timedelta(milliseconds=40), "b": 10**7 * NANO - consumed,
                         "p": 10**7 * NANO, "c": consumed})
        connection.execute(text(
            "INSERT INTO balance_snapshots (account, key_fingerprint, taken_at, answered_at, balance, total_purchased, "
            "total_consumed, status) VALUES ('acme', 'fp-bench-0', :t, :a, :b, :p, :c, 'ok')"), rows)
    rebuild_rollups(engine, lambda line: print(line.strip()))  # the reconciliation sums whole 15-minute buckets from them
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    engine.dispose()


def bare_sum(url: str) -> None:
    engine = create_engine(Ledger(url, upgrade_schema=False).url)
    with engine.connect() as connection:
        connection.execute(text("SELECT sum(credits_charged) FROM calls WHERE started_at > :a AND started_at <= :b"),
                           {"a": START, "b": START + timedelta(days=400)}).scalar()
    engine.dispose()


def measure(label: str, url: str, repeat: int) -> None:
    ledger = Ledger(url)
    times, bare = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        result = reconcile(ledger, billing_settle_seconds=2)
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare_sum(url)
        bare.append(time.perf_counter() - started)
    ledger.close()
    (account,) = result.accounts
    print(f"{label}: reconcile {statistics.median(times):.2f} s (range {min(times):.2f}-{max(times):.2f}) over "
          f"{len(account.windows)} windows, verdict {result.verdict}; the bare SUM of the same calls "
          f"{statistics.median(bare):.2f} s; ratio {statistics.median(times) / statistics.median(bare):.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--every", type=int, default=6, help="hours between snapshots")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        started = time.perf_counter()
        build(url, args.calls, args.days, args.every)
        print(f"sqlite: built {args.calls:,} calls in {time.perf_counter() - started:.0f} s")
        measure("sqlite", url, args.repeat)
    if not args.no_postgres:
        server = os.environ.get("CREDIT_LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
        admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
        name = f"bench_reconcile_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = server.rsplit("/", 1)[0] + f"/{name}"
            started = time.perf_counter()
            build(url, args.calls, args.days, args.every)
            print(f"postgresql: built {args.calls:,} calls in {time.perf_counter() - started:.0f} s")
            measure("postgresql", url, args.repeat)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
