"""Reports on a 1,000,000-call ledger, each figure beside the database's own plain query or dump of the same data.

The ledger (calls spread evenly over 90 days from 2026-09-01, October being the
month measured: 344,444 calls) is made by one INSERT ... SELECT in the database
(benchmarks/report_ledger.py: a recursive CTE on SQLite, generate_series on
PostgreSQL), on a SQLite file and on a PostgreSQL database made for the run and
dropped after it. Then, in the same run, alternating ours and theirs:

1. a month's report --by project (json): `credit-ledger report` (the command, in a
   process of its own; and the report alone, in this process) against the same
   GROUP BY with the same sums through the driver, and the plain one
   (project, count, sum) in the database's own client;
2. the month's row-level CSV: `credit-ledger calls --format csv` against
   `sqlite3 -csv` / `psql -c "COPY (...) TO STDOUT CSV"` of the same 22 columns (and of
   the whole rows, as the issue measured), with the first byte's time and the
   process's peak memory, a month against a day (growth);
3. the month's workbook with --calls: rows a second, memory (a month against a day),
   and xlsxwriter's own per-cell API on the same rows for comparison;
4. the query plans (EXPLAIN) of the report's GROUP BY and of the listing.

    .venv/bin/python benchmarks/bench_reports.py [--calls 1000000] [--runs 3] [--sqlite PATH]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres | --no-postgres] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import report_ledger  # noqa: E402
from ledger.accounting.periods import parse_period  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.accounting.group_keys import parse_group_keys  # noqa: E402
from ledger.reports.calls import STORE_NAMES  # noqa: E402
from ledger.reports.run import ReportRequest, write_report  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402

CLI = [sys.executable, "-m", "ledger.cli"]
MONTH = ("2026-10-01", "2026-11-01")
DAY = ("2026-10-15", "2026-10-16")
LISTED = ", ".join(STORE_NAMES)  # the 22 columns `calls` lists


def sql_bounds(dialect: str, bounds) -> str:
    start, end = bounds
    if dialect == "sqlite":
        return f"started_at >= '{start} 00:00:00.000000' AND started_at < '{end} 00:00:00.000000'"
    return f"started_at >= '{start}T00:00:00Z' AND started_at < '{end}T00:00:00Z'"


SAME_SUMS = ("SELECT coalesce(project, '(none)') AS g0, rate_card, count(*), "
             "sum(CASE WHEN status IN ('error', 'failed') THEN 1 ELSE 0 END), coalesce(sum(prompt_tokens), 0), "
             "coalesce(sum(completion_tokens), 0), coalesce(sum(reasoning_tokens), 0), coalesce(sum(credits_charged), 0), "
             "coalesce(sum(credits_expected), 0), sum(CASE WHEN pricing_class NOT IN ('ok', 'rounding') THEN 1 ELSE 0 END) "
             "FROM calls WHERE {where} GROUP BY g0, rate_card")
PLAIN = "SELECT project, count(*), sum(credits_charged) FROM calls WHERE {where} GROUP BY project"


# ---------------------------------------------------------------- measuring


def run_child(argv: list[str], env=None) -> dict:
    """Run a command with its output drained: wall seconds, seconds to its first byte, bytes, peak RSS (MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    first = None
    size = 0
    while True:
        chunk = process.stdout.read1(1 << 20)
        if not chunk:
            break
        if first is None:
            first = time.perf_counter() - started
        size += len(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    error = process.stderr.read().decode()
    process.stdout.close()
    process.stderr.close()
    if status != 0:
        raise RuntimeError(f"{argv[:4]}... failed: {error[-500:]}")
    return {"wall": wall, "first": first, "bytes": size, "rss": usage.ru_maxrss / 1024}


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def alternate(runs: int, **measures) -> dict[str, list]:
    """Each measure `runs` times, in turn (A B C A B C ...): the host's drift falls on all alike."""
    found: dict[str, list] = {name: [] for name in measures}
    for _ in range(runs):
        for name, measure in measures.items():
            found[name].append(measure())
    return found


# ---------------------------------------------------------------- the parts


def report_figures(url: str, dialect: str, runs: int, bare_cli: list[str]) -> None:
    print("\n1. a month's report --by project (json)")
    settings = Settings(database_url=url)
    period = parse_period("2026-10")
    keys = parse_group_keys("project")
    ledger = Ledger(url)

    def in_process():
        write_report(settings, ledger, ReportRequest(period, keys, None, "json", "-"), open(os.devnull, "w"))

    engine = create_engine(ledger.url)
    same = SAME_SUMS.format(where=sql_bounds(dialect, MONTH))

    def bare_driver():
        with engine.connect() as connection:
            connection.exec_driver_sql(same).fetchall()

    command = [*CLI, "--database-url", url, "report", "--period", "2026-10", "--by", "project", "--format", "json",
               "--output", "-"]
    found = alternate(runs, ours_cli=lambda: run_child(command)["wall"], ours=lambda: timed(in_process),
                      bare=lambda: timed(bare_driver), plain_cli=lambda: run_child(bare_cli)["wall"])
    ledger.close()
    engine.dispose()
    ratio = [a / b for a, b in zip(found["ours"], found["bare"])]
    print(f"   credit-ledger report (the command, Python start-up included): {spread(found['ours_cli'])}")
    print(f"   the report alone (in this process):                          {spread(found['ours'])}")
    print(f"   the same GROUP BY and sums through the driver:                {spread(found['bare'])}")
    print(f"   plain GROUP BY project (count, sum) in the database's client: {spread(found['plain_cli'])}")
    print(f"   ratio report / same GROUP BY: {statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")


def csv_figures(url: str, dialect: str, runs: int, dump_columns: list[str], dump_rows: list[str]) -> None:
    print("\n2. the month's row-level CSV (calls --format csv)")
    month = [*CLI, "--database-url", url, "calls", "--since", MONTH[0], "--until", MONTH[1], "--format", "csv"]
    day = [*CLI, "--database-url", url, "calls", "--since", DAY[0], "--until", DAY[1], "--format", "csv"]
    found = alternate(runs, ours=lambda: run_child(month), columns=lambda: run_child(dump_columns),
                      rows=lambda: run_child(dump_rows))
    small = run_child(day)
    ours = found["ours"]
    print(f"   credit-ledger calls:            {spread([r['wall'] for r in ours])}, first byte after "
          f"{statistics.median([r['first'] for r in ours]):.2f} s, {ours[0]['bytes'] / 1e6:.0f} MB, "
          f"peak RSS {max(r['rss'] for r in ours):.0f} MB (a day: {small['rss']:.0f} MB, growth "
          f"{max(r['rss'] for r in ours) - small['rss']:.0f} MB)")
    print(f"   the database's dump, same 22 columns: {spread([r['wall'] for r in found['columns']])}, "
          f"peak RSS {max(r['rss'] for r in found['columns']):.0f} MB")
    print(f"   the database's dump, whole rows:      {spread([r['wall'] for r in found['rows']])}")
    for name in ("columns", "rows"):
        speed = [b["wall"] / a["wall"] for a, b in zip(ours, found[name])]
        print(f"   speed against the dump of {name}: {statistics.median(speed):.2f} ({min(speed):.2f}-{max(speed):.2f})")


def workbook_figures(url: str, runs: int, folder: Path) -> None:
    print("\n3. the month's workbook with --calls")
    month = [*CLI, "--database-url", url, "report", "--period", "2026-10", "--by", "project", "--format", "xlsx",
             "--calls", "--output", str(folder / "month.xlsx")]
    day = [*CLI, "--database-url", url, "report", "--period", "2026-10-15", "--by", "project", "--format", "xlsx",
           "--calls", "--output", str(folder / "day.xlsx")]
    found = alternate(runs, month=lambda: run_child(month))
    small = run_child(day)
    with Ledger(url) as ledger, ledger.session() as session:
        rows = session.connection().exec_driver_sql(
            f"SELECT count(*) FROM calls WHERE {sql_bounds(ledger.dialect, MONTH)}").scalar()
    walls = [r["wall"] for r in found["month"]]
    rates = [rows / w for w in walls]
    print(f"   credit-ledger report --format xlsx --calls: {spread(walls)}: {statistics.median(rates):,.0f} calls/s "
          f"({min(rates):,.0f}-{max(rates):,.0f}), {(folder / 'month.xlsx').stat().st_size / 1e6:.0f} MB, peak RSS "
          f"{max(r['rss'] for r in found['month']):.0f} MB (a day: {small['rss']:.0f} MB)")
    print(f"   xlsxwriter's own per-cell API (constant memory) on the same rows: {xlsxwriter_rate(url, folder):,.0f} calls/s")


def xlsxwriter_rate(url: str, folder: Path, rows: int = 50_000) -> float:
    """The Calls sheet's 21 columns written cell by cell with xlsxwriter's public API, for comparison."""
    import xlsxwriter

    from ledger.reports.xlsx import CALL_SHEET
    from ledger.store.call_rows import call_rows
    from ledger.store.spend import Selection

    names = [n for n, _ in CALL_SHEET]
    kinds = [c.kind for _, c in CALL_SHEET]
    with Ledger(url) as ledger, ledger.session() as session:
        selection = Selection(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))
        chunks = call_rows(session, selection, names)
        book = xlsxwriter.Workbook(str(folder / "cells.xlsx"), {"constant_memory": True, "strings_to_formulas": False})
        sheet = book.add_worksheet("Calls")
        number = book.add_format({"num_format": "#,##0"})
        started = time.perf_counter()
        written = 0
        for chunk in chunks:
            for row in chunk:
                written += 1
                for col, (value, kind) in enumerate(zip(row, kinds)):
                    if value is None:
                        continue
                    if kind in ("text", "flag", "id"):
                        sheet.write_string(written, col, str(value))
                    else:
                        sheet.write_number(written, col, value, number)
            if written >= rows:
                break
        chunks.close()
        book.close()
        return written / (time.perf_counter() - started)


def plans(url: str, dialect: str) -> None:
    print("\n4. query plans")
    from sqlalchemy.dialects import postgresql, sqlite

    from ledger.store.spend import Selection, _spend_query

    with Ledger(url) as ledger, ledger.session() as session:
        period = parse_period("2026-10")
        query, _ = _spend_query(session, Selection(period.start, period.end), parse_group_keys("project"), None)
        compiled = query.compile(dialect=(postgresql.dialect() if dialect == "postgresql" else sqlite.dialect()),
                                 compile_kwargs={"literal_binds": True})
        listing = (f"SELECT {LISTED} FROM calls WHERE {sql_bounds(dialect, MONTH)} ORDER BY started_at, id")
        for name, sql in (("report GROUP BY", str(compiled)), ("calls listing", listing)):
            explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) "
            lines = session.connection().exec_driver_sql(explain + sql).fetchall()
            print(f"   {name}:")
            for line in lines:
                print("     " + " ".join(str(part) for part in (line[-1:] if dialect == "sqlite" else line)))


# ---------------------------------------------------------------- the run


def sqlite_part(path: Path | None, calls: int, runs: int, folder: Path) -> None:
    print(f"== SQLite ({sqlite3.sqlite_version})")
    path = path or folder / "ledger.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        with Ledger(url) as ledger:
            print(f"   built {calls:,} calls in {report_ledger.build(ledger.engine, calls, log=lambda m: print('   ' + m)):.1f} s "
                  "(one INSERT ... SELECT from a recursive CTE, indexes made after)")
    else:
        Ledger(url).close()
    where = sql_bounds("sqlite", MONTH)
    report_figures(url, "sqlite", runs, ["sqlite3", str(path), PLAIN.format(where=where)])
    csv_figures(url, "sqlite", runs,
                ["sqlite3", "-csv", str(path), f"SELECT {LISTED} FROM calls WHERE {where} ORDER BY started_at, id"],
                ["sqlite3", "-csv", str(path), f"SELECT * FROM calls WHERE {where}"])
    workbook_figures(url, runs, folder)
    plans(url, "sqlite")


def postgres_part(server: str, calls: int, runs: int, folder: Path, keep: bool) -> None:
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"bench_reports_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        version = connection.execute(text("SHOW server_version")).scalar()
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    print(f"\n== PostgreSQL {version} (database {name}, dropped after the run)")
    try:
        with Ledger(url) as ledger:
            print(f"   built {calls:,} calls in {report_ledger.build(ledger.engine, calls, log=lambda m: print('   ' + m)):.1f} s "
                  "(one INSERT ... SELECT from generate_series, indexes made after, then VACUUM ANALYZE)")
        plain_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        where = sql_bounds("postgresql", MONTH)
        report_figures(url, "postgresql", runs, ["psql", plain_url, "-qAt", "-c", PLAIN.format(where=where)])
        csv_figures(url, "postgresql", runs,
                    ["psql", plain_url, "-qAt", "-c",
                     f"COPY (SELECT {LISTED} FROM calls WHERE {where} ORDER BY started_at, id) TO STDOUT CSV"],
                    ["psql", plain_url, "-qAt", "-c", f"COPY (SELECT * FROM calls WHERE {where}) TO STDOUT CSV"])
        workbook_figures(url, runs, folder)
        plans(url, "postgresql")
    finally:
        if not keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sqlite", type=Path, help="a ledger file made by an earlier run (kept with --keep)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the ledgers (the SQLite file's path is printed)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    print(f"bench_reports: {args.calls:,} calls over 90 days, {args.runs} runs of each figure, "
          f"host load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    try:
        if not args.no_sqlite:
            sqlite_part(args.sqlite, args.calls, args.runs, folder)
        if not args.no_postgres:
            postgres_part(args.postgres, args.calls, args.runs, folder, args.keep)
    finally:
        if args.keep:
            print(f"\nkept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
