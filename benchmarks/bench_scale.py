"""Reads at scale: a month's reports, 100 budgets and a hard limit's refresh, from the rollups beside the raw scan.

A ledger of N calls over 90 days from 2026-09-01 UTC, spread as issue 26
asks: 100 projects, 2,000 users (each of one project), 50 keys over 5
accounts (a project's calls on one key), 10 tag values, three models, two
rate cards, 1 % errors; user, tag and model drawn uniformly per call (the
worst case for the rollups: a bucket holds nearly one row per call). Loaded
fast: rows made in Python, COPY on PostgreSQL and executemany on SQLite,
with the plain indexes dropped for the load and made again after it; the
rollups then made by `rollups.rebuild`, a UTC day a transaction.

Printed side by side, in one run, the median of --runs in-process runs after a warm-up:
the month 2026-10 in Asia/Kolkata by project, by user and by day
(`build_report`, figures only) from the rollups and from the raw GROUP BY;
100 budgets (`spends`: users, models and tags from the rollups, indexed
scopes from their index either way); one hard limit's refresh reads
(`limit_reads`: the spend and the largest charge of a project's month, a day's
largest charge read again as when calls arrive, and the first refresh, which
keeps none, beside `spend` and `largest_charge` on the raw calls); rollup rows
and bytes per call.

    .venv/bin/python benchmarks/bench_scale.py [--calls 100000] [--postgres URL [--keep NAME] | --sqlite PATH] [--runs 3]
        [--load-only] [--rebuild]
        [--users 2000] [--tags 10]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqlalchemy import create_engine, make_url, text  # noqa: E402

from bench_writer import postgres_database  # noqa: E402
from report_ledger import _index_definitions, rebuild_rollups  # noqa: E402
from ledger.accounting.budgets import Scope  # noqa: E402
from ledger.accounting.periods import calendar_period, parse_period, rolling_period  # noqa: E402
from ledger.accounting.pricing import default_rate_book  # noqa: E402
from ledger.accounting.group_keys import parse_group_keys  # noqa: E402
from ledger.reports import spend as report_spend  # noqa: E402
from ledger.store import budgets as store_budgets  # noqa: E402
from ledger.store import limit_reads  # noqa: E402
from ledger.store.calls import CALL_COLUMNS  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.keys import register_keys  # noqa: E402
from ledger.store.models import Call  # noqa: E402
from ledger.store.rate_cards import sync_rate_cards  # noqa: E402
from ledger.store.rollup_tables import TABLES  # noqa: E402
from ledger.store.spend import raw_spend_rows  # noqa: E402

BASE = datetime(2026, 9, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
DAYS = 90
PROJECTS, USERS, KEYS, ACCOUNTS, TAGS = 100, 2000, 50, 5, 10
MODELS = (("gemini-3.1-pro", "gemini-3.1-pro-preview"),) * 7 + (("gemini-2.5-pro", "gemini-2.5-pro"),) * 2 + (("gemini-3-flash", "gemini-3-flash"),)
CARDS = ("aivideoapi-2026-04", "aivideoapi-2026-04", "aivideoapi-2026-04", "aivideoapi-legacy")
ZONE = "Asia/Kolkata"
MONTH = "2026-10"


def fingerprint(key: int) -> str:
    return f"{key:064x}"


def rows(calls: int, postgres: bool, users: int = USERS, tag_values: int = TAGS, seed: int = 26):
    """The calls in the order the database stores their columns (CALL_COLUMNS): nano-credits, timestamps as stored."""
    rng = random.Random(seed)
    step = DAYS * 86_400 / calls
    stamp = (lambda t: t) if postgres else (lambda t: f"{t:%Y-%m-%d %H:%M:%S.%f}")
    tags = [f'{{"feature": "f{i}"}}' for i in range(tag_values)]
    for n in range(calls):
        started = BASE + timedelta(seconds=n * step)
        user = rng.randrange(users)
        project = user % PROJECTS
        key = project % KEYS
        requested, reported = MODELS[rng.randrange(len(MODELS))]
        roll = rng.randrange(1000)
        failed = roll < 10
        p, c, r = 50 + rng.randrange(4000), 20 + rng.randrange(1500), rng.randrange(2000)
        expected = p * 160_000 + c * 960_000
        charged = 0 if failed else (expected + 5_000_000) // 10_000_000 * 10_000_000 + (50_000_000 if roll == 999 else 0)
        pricing = "ok" if failed or charged == expected else "overcharge" if roll == 999 else "rounding"
        call_id = f"{n:032x}"
        yield (
            call_id, f"chatcmpl-{call_id}", requested, reported, True, "low", None, None, 0,
            stamp(started), stamp(started + timedelta(seconds=0.4)), stamp(started + timedelta(seconds=1.2)),
            "error" if failed else "completed", 503 if failed else 200, None, None, None if failed else "stop", failed,
            None if failed else p, None if failed else c, None if failed else r, 0, 0, None if failed else p + c + r,
            charged, expected, pricing, CARDS[n % len(CARDS)], fingerprint(key), f"{key:04d}"[-4:],
            f"project-{project:02d}", f"user-{user:04d}", tags[rng.randrange(tag_values)], None, f"{n:064x}",
            stamp(started + timedelta(seconds=2 + (n % 50) / 10)),
        )


def load(ledger: Ledger, calls: int, users: int, tag_values: int, rollups: bool = True) -> None:
    """Fill the migrated, empty ledger: the calls, its keys and rate cards, then the rollups by rebuild."""
    postgres = ledger.dialect == "postgresql"
    started = time.perf_counter()
    names = ", ".join(CALL_COLUMNS)
    with ledger.engine.begin() as connection:
        definitions = _index_definitions(connection, postgres)
        for name in definitions:
            connection.execute(text(f"DROP INDEX {name}"))
        cursor = connection.connection.driver_connection.cursor()
        if postgres:
            with cursor.copy(f"COPY calls ({names}) FROM STDIN") as copy:
                for row in rows(calls, True, users, tag_values):
                    copy.write_row(row)
        else:
            batch = []
            sql = f"INSERT INTO calls ({names}) VALUES ({', '.join('?' * len(CALL_COLUMNS))})"
            for row in rows(calls, False, users, tag_values):
                batch.append(row)
                if len(batch) == 50_000:
                    cursor.executemany(sql, batch)
                    batch = []
            cursor.executemany(sql, batch)
        print(f"   loaded {calls:,} calls in {time.perf_counter() - started:.1f} s ({'COPY' if postgres else 'executemany'})")
        for sql in definitions.values():
            connection.execute(text(sql))
        print(f"   indexes made again: {time.perf_counter() - started:.1f} s")
    with ledger.session() as session:
        sync_rate_cards(session, default_rate_book())
        register_keys(session, [(fingerprint(k), f"{k:04d}", f"key-{k}", f"account-{k % ACCOUNTS}") for k in range(KEYS)], BASE)
    if rollups:
        rebuild_rollups(ledger.engine, lambda line: print("  " + line))
    analyse(ledger)


@contextlib.contextmanager
def raw_reads():
    """The readers on the raw calls alone, as before the rollups: reports' sums and budgets' periods."""
    spend_rows, parts = report_spend.spend_rows, store_budgets.parts
    report_spend.spend_rows = raw_spend_rows
    store_budgets.parts = lambda start, end, needed=None: [(Call, [Call.started_at >= start, Call.started_at < end], 1)]
    try:
        yield
    finally:
        report_spend.spend_rows, store_budgets.parts = spend_rows, parts


def median_ms(action, runs: int) -> tuple[float, object]:
    """The median of `runs` timed runs after one untimed (the first side measured must not pay the cold cache)."""
    times, result = [], action()
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def budget_queries() -> list[store_budgets.SpendQuery]:
    """100 budgets as a team would set them: projects, users, keys, accounts, tags, models, everything; months, weeks,
    days in two zones, rolling 7 days and 24 hours."""
    month = calendar_period("month", NOW, ZONE)
    utc_month = calendar_period("month", NOW, "UTC")
    week, day = calendar_period("week", NOW, "Europe/Berlin"), calendar_period("day", NOW, ZONE)
    rolling = [rolling_period(timedelta(days=7), NOW), rolling_period(timedelta(hours=24), NOW)]
    found = [(Scope(project=f"project-{p:02d}"), month if p % 2 else utc_month) for p in range(40)]
    found += [(Scope(user=f"user-{u * 61:04d}"), month) for u in range(25)]
    found += [(Scope(project=f"project-{u:02d}", user=f"user-{u + 100:04d}"), week) for u in range(5)]
    found += [(Scope(key=f"key-{k}"), day) for k in range(10)]
    found += [(Scope(account=f"account-{a}"), month) for a in range(5)]
    found += [(Scope(tags=(("feature", f"f{t}"),)), rolling[t % 2]) for t in range(8)]
    found += [(Scope(model=m), month) for m in ("gemini-3.1-pro", "gemini-2.5-pro")]
    found += [(Scope(), p) for p in (month, utc_month, week, day, *rolling)][:5]
    assert len(found) == 100, len(found)
    return [store_budgets.SpendQuery(scope, p.start, p.end) for scope, p in found]


def sizes(ledger: Ledger, calls: int) -> str:
    lines = []
    with ledger.session() as session:
        for name in ["calls"] + [table.name for table in TABLES]:
            rows = session.scalar(text(f"SELECT count(*) FROM {name}"))
            if ledger.dialect == "postgresql":
                size = session.scalar(text(f"SELECT pg_total_relation_size('{name}')"))
            else:
                try:
                    size = session.scalar(text(
                        "SELECT sum(pgsize) FROM dbstat JOIN sqlite_master USING (name) WHERE tbl_name = :name"), {"name": name})
                except Exception:  # a SQLite built without dbstat
                    size = None
            line = f"   {name}: {rows:,} rows ({rows / calls:.4f} a call)"
            if size is not None:
                line += f", {size / calls:.0f} bytes a call with indexes ({size / 2**20:,.0f} MiB)"
            lines.append(line)
    return "\n".join(lines)


def measure(ledger: Ledger, calls: int, runs: int) -> None:
    period = parse_period(MONTH, ZONE)
    print(f"   {'what':44s} {'rollups':>10s} {'raw':>10s} {'ratio':>7s}")

    def row(label: str, fast: float, slow: float) -> None:
        print(f"   {label:44s} {fast:8.1f} ms {slow:7.1f} ms {slow / fast:6.1f}x", flush=True)

    with ledger.session() as session:
        for by in ("project", "user", "day"):
            keys = parse_group_keys(by)
            fast, mine = median_ms(lambda: report_spend.build_report(session, period, keys, digest=False), runs)
            with raw_reads():
                slow, theirs = median_ms(lambda: report_spend.build_report(session, period, keys, digest=False), runs)
            assert mine.groups == theirs.groups and mine.total == theirs.total, by
            row(f"month {MONTH} ({ZONE}) by {by}: {len(mine.groups)} groups", fast, slow)
        queries = budget_queries()
        fast, mine = median_ms(lambda: store_budgets.spends(session, queries), runs)
        with raw_reads():
            slow, theirs = median_ms(lambda: store_budgets.spends(session, queries), runs)
        assert mine == theirs
        row("100 budgets (spends)", fast, slow)
        scope, month = Scope(project="project-07"), calendar_period("month", NOW, ZONE)
        kept = limit_reads.DayCharges()

        def refresh():  # as a refresh while calls arrive: the last day's count has moved, its largest charge is read
            days = kept.of(scope, None)
            days.pop(max(days, default=None), None)
            return limit_reads.limit_reads(session, scope, month.start, month.end, seen=kept)

        def raw_refresh():
            spent = store_budgets.spend(session, scope, month.start, month.end, raw_only=True)
            return spent, store_budgets.largest_charge(session, scope, month.start, month.end)

        fast, mine = median_ms(refresh, runs)
        slow, theirs = median_ms(raw_refresh, runs)
        assert mine == theirs
        row("a hard limit's refresh reads (a project)", fast, slow)
        fast, mine = median_ms(lambda: limit_reads.limit_reads(session, scope, month.start, month.end), runs)
        assert mine == theirs
        row("  the first (no day's largest charge kept)", fast, slow)
        fast, _ = median_ms(lambda: store_budgets.spend(session, scope, month.start, month.end), runs)
        slow, _ = median_ms(lambda: store_budgets.spend(session, scope, month.start, month.end, raw_only=True), runs)
        row("  the spend alone, as `spend` reads it", fast, slow)
    print(sizes(ledger, calls))


def ledger_arguments(description: str, *, calls: int, runs: int) -> argparse.ArgumentParser:
    """The arguments every benchmark on this ledger takes: its size, where it lives, how many runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--calls", type=int, default=calls)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (a database is made and dropped)")
    parser.add_argument("--keep", metavar="NAME", help="with --postgres: the database NAME, made and loaded when "
                        "missing, reused when there, never dropped (a 10,000,000-call ledger takes half an hour)")
    parser.add_argument("--rebuild", action="store_true", help="make the rollups anew on a reused ledger "
                        "(after a migration added a table)")
    parser.add_argument("--load-only", action="store_true", help="load the calls and stop, the rollups not made "
                        "(a later run with --keep and --rebuild makes them)")
    parser.add_argument("--sqlite", metavar="PATH", help="a SQLite file (made when missing, reused when there)")
    parser.add_argument("--runs", type=int, default=runs)
    return parser


@contextlib.contextmanager
def bench_ledger(arguments, file_name: str) -> Iterator[tuple[Ledger, bool]]:
    """The benchmark's ledger and whether it is new (to be loaded): a PostgreSQL database made and dropped, or
    the SQLite file --sqlite names (reused when it is there) or a temporary one."""
    drop = lambda: None  # noqa: E731
    if arguments.postgres and arguments.keep:
        url, fresh = kept_database(arguments.postgres, arguments.keep)
    elif arguments.postgres:
        url, drop = postgres_database(arguments.postgres)
        fresh = True
    else:
        path = Path(arguments.sqlite or Path(tempfile.mkdtemp()) / file_name)
        fresh = not path.exists()
        url = f"sqlite:///{path}"
    try:
        with Ledger(url) as ledger:
            yield ledger, fresh
    finally:
        drop()


def kept_database(server: str, name: str) -> tuple[str, bool]:
    """The URL of database `name` on `server` and whether it was made now (empty: to be loaded). A database made
    now whose load fails is dropped by `main`, so a kept one is always whole."""
    admin_url = make_url(server).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            there = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
            if not there:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False), not there


def drop_database(server: str, name: str) -> None:
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def rebuild(ledger: Ledger) -> None:
    """The rollups of a reused ledger made anew (every table, a UTC day a transaction), then analysed."""
    rebuild_rollups(ledger.engine, lambda line: print("  " + line))
    analyse(ledger, full=True)


def analyse(ledger: Ledger, full: bool = False) -> None:
    """VACUUM ANALYZE the calls and the rollups (PostgreSQL); `full` after a rebuild, whose deleted rows would
    otherwise stay in the tables' pages for the reads to scan."""
    if ledger.dialect == "postgresql":
        with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE calls"))
            for table in TABLES:
                connection.execute(text(f"VACUUM {'FULL ' if full else ''}ANALYZE {table.name}"))


def main() -> int:
    parser = ledger_arguments(__doc__.splitlines()[0], calls=100_000, runs=3)
    parser.add_argument("--users", type=int, default=USERS, help="users (each of one project; fewer: fuller buckets)")
    parser.add_argument("--tags", type=int, default=TAGS, help="tag values")
    arguments = parser.parse_args()
    with bench_ledger(arguments, "scale.db") as (ledger, fresh):
        print(f"== {ledger.dialect}: {arguments.calls:,} calls over {DAYS} days, {arguments.users:,} users, "
              f"{arguments.tags} tag values")
        if fresh:
            try:
                load(ledger, arguments.calls, arguments.users, arguments.tags, not arguments.load_only)
            except BaseException:
                if arguments.postgres and arguments.keep:
                    ledger.engine.dispose()
                    drop_database(arguments.postgres, arguments.keep)  # half a ledger is not kept
                raise
        elif arguments.rebuild:
            rebuild(ledger)
        if arguments.load_only:
            return 0
        measure(ledger, arguments.calls, arguments.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
