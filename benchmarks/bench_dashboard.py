"""The dashboard's pages at scale: each rendered in-process (Starlette's TestClient) beside the CLI's time for the
same figures, in the same run, on bench_scale.py's ledger (N calls over 90 days at issue 26's spread).

The ledger gets what the money pages show (once, when it has no balance snapshot yet): each of bench_scale's
5 accounts polled every hour of the last 30 days (its total_consumed the running sum of its keys' charges), a
failed poll a day, and the days 2026-11-01 and 2026-11-02 (UTC) closed; the settings hold those accounts with a
balance alert each and 20 budgets (projects, users, accounts, tags, a model, everything; months, days, 7 days).
The pages' clock is held at the ledger's end (2026-11-30T00:00Z), as the tests hold it.

Printed: p50 and p95 of --runs requests after a warm-up, and the statements a request ran, for every page and the
read API's routes; beside each, the CLI command that gives the same figures (main() or its command function in
process, opening the ledger as a run does), where there is one. The Spend page and the API's spend route: the
month 2026-10 in Asia/Kolkata by project, by user and by project,day, beside `build_report` (the report's figures)
and `credit-ledger report --format json --output -`.

    .venv/bin/python benchmarks/bench_dashboard.py [--calls 100000] [--postgres URL [--keep NAME] | --sqlite PATH] [--runs 20]
        [--only NAME ...]
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqlalchemy import event, select  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import ledger.commands.budgets  # noqa: E402
import ledger.web.figures  # noqa: E402
from bench_web import OneViewer, percentiles  # noqa: E402
from bench_scale import ACCOUNTS, BASE, DAYS, TAGS, USERS, bench_ledger, fingerprint, ledger_arguments, load  # noqa: E402
from ledger.accounting.budgets import BalanceAlert, Budget, Scope  # noqa: E402
from ledger.accounting.group_keys import parse_group_keys  # noqa: E402
from ledger.accounting.periods import parse_period  # noqa: E402
from ledger.accounting.snapshots import OK, SERVER_ERROR, BalanceSnapshotValue  # noqa: E402
from ledger.cli import main as cli_main  # noqa: E402
from ledger.commands import balances as balance_commands, budgets as budget_commands, closes as close_commands  # noqa: E402
from ledger.commands import calls as call_commands  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.config.accounts import AccountConfig  # noqa: E402
from ledger.config.alerts import AlertSettings  # noqa: E402
from ledger.reports.run import STDOUT, ReportRequest, write_report  # noqa: E402
from ledger.reports.spend import build_report  # noqa: E402
from ledger.service.closing import close_period  # noqa: E402
from ledger.store import balances  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.models import BalanceSnapshot, Call  # noqa: E402
from ledger.store.reading import one_snapshot  # noqa: E402
from ledger.web.app import create_app  # noqa: E402
from ledger.web.calls import cursor_of  # noqa: E402
from ledger.store.call_rows import Position  # noqa: E402
from ledger.web.viewer import Viewer  # noqa: E402

PERIOD, ZONE = "2026-10", "Asia/Kolkata"
GROUPINGS = ("project", "user", "project,day")
END = BASE + timedelta(days=DAYS)  # the ledger's last call is just before; the pages' clock is held here
POLLED_DAYS = 30
CLOSED_DAYS = ("2026-11-01", "2026-11-02")
BUDGETS = tuple(
    [Budget(f"project-{p:02d}", Scope(project=f"project-{p:02d}"), "month", "UTC", Decimal(500)) for p in range(0, 50, 8)]
    + [Budget(f"user-{u:04d}", Scope(user=f"user-{u:04d}"), "month", ZONE, Decimal(20)) for u in range(0, 2000, 500)]
    + [Budget(f"account-{a}", Scope(account=f"account-{a}"), "day", "UTC", Decimal(800)) for a in range(ACCOUNTS)]
    + [Budget("feature-f1", Scope(tags=(("feature", "f1"),)), "7d", "UTC", Decimal(900)),
       Budget("pro-model", Scope(model="gemini-3.1-pro"), "month", "UTC", Decimal(40_000)),
       Budget("everything", Scope(), "month", "UTC", Decimal(60_000), enforce=True)])
NAMES = [f"account-{a}" for a in range(ACCOUNTS)]


def money_settings(url: str) -> Settings:
    alerting = AlertSettings(BUDGETS, tuple(BalanceAlert(name, Decimal(5000), 30) for name in NAMES))
    return Settings(database_url=url, timezone="UTC", accounts=tuple(AccountConfig(name) for name in NAMES),
                    alerting=alerting)


def add_money(ledger: Ledger, settings: Settings) -> None:
    """Snapshots, failed polls and two closed days, unless the ledger has them already."""
    with ledger.session() as session:
        if session.scalar(select(BalanceSnapshot.id).limit(1)) is not None:
            return
        first = END - timedelta(days=POLLED_DAYS)
        owner = {fingerprint(k): f"account-{k % ACCOUNTS}" for k in range(50)}
        consumed = {name: Decimal(0) for name in NAMES}
        hours = [first + timedelta(hours=h) for h in range(POLLED_DAYS * 24 + 1)]
        rows = session.execute(select(Call.key_fingerprint, Call.started_at, Call.credits_charged)
                               .where(Call.started_at >= first).order_by(Call.started_at))
        at = 0
        for fp, started, charged in rows:
            while at < len(hours) and hours[at] < started:
                _poll(session, consumed, hours[at])
                at += 1
            if fp in owner and charged is not None:
                consumed[owner[fp]] += charged
        for hour in hours[at:]:
            _poll(session, consumed, hour)
        for day in range(POLLED_DAYS):
            for name in NAMES:
                balances.insert_snapshot(session, BalanceSnapshotValue(
                    name, first + timedelta(days=day, minutes=30), SERVER_ERROR))
    for label in CLOSED_DAYS:
        close_period(replace(settings, accounts=()), ledger, parse_period(label, "UTC"), accept_gap="benchmark")
    print(f"   money pages' data: {len(hours) * ACCOUNTS:,} snapshots, {POLLED_DAYS * ACCOUNTS} failed polls, "
          f"{len(CLOSED_DAYS)} closed days")


def _poll(session, consumed: dict[str, Decimal], at) -> None:
    for name, total in consumed.items():
        balances.insert_snapshot(session, BalanceSnapshotValue(name, at, OK, Decimal(10**7) - total, Decimal(10**7),
                                                               total))


class Statements:
    """How many statements the engine ran since `start` (a page's queries)."""

    def __init__(self, engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        self.count += 1


def hold_clock() -> None:
    ledger.web.figures.utc_now = lambda: END
    ledger.commands.budgets.utc_now = lambda: END


def deep_position(session, calls: int) -> Position:
    """The position 90 % down the newest-first list (found once with OFFSET, for the benchmark only)."""
    query = select(Call.started_at, Call.id).order_by(Call.started_at.desc(), Call.id.desc())
    row = session.execute(query.offset(calls * 9 // 10).limit(1)).one()
    return Position(row[0], row[1])


def cases(ledger: Ledger, settings: Settings, calls: int) -> list[tuple]:
    """(name, path, parameters, the CLI's name, the CLI's action or None) of every page and API route."""
    with ledger.session() as session:
        deep = deep_position(session, calls)
        call_id = session.scalar(select(Call.call_id).order_by(Call.started_at.desc()).limit(1))
    url = ledger.url
    window = {"from": BASE.strftime("%Y-%m-%dT%H:%MZ"), "to": END.strftime("%Y-%m-%dT%H:%MZ"), "tz": "UTC"}
    cli_window = ["--since", BASE.isoformat(), "--until", END.isoformat()]
    until = (deep.started_at + timedelta(microseconds=1)).isoformat()
    week = END - timedelta(days=7)
    month = parse_period("2026-11", "UTC")
    period = parse_period(PERIOD, ZONE)

    def cli(*argv):
        return lambda: cli_main(["--database-url", url, *argv], out=io.StringIO())

    def report_json(by):
        request = ReportRequest(period, parse_group_keys(by), None, "json", STDOUT)
        return lambda: write_report(settings, ledger, request, io.StringIO())

    found = [("Overview", "/", {}, "", None)]
    for by in GROUPINGS:
        found.append((f"Spend by {by}", "/spend", {"period": PERIOD, "tz": ZONE, "by": by}, "report --format json",
                      report_json(by)))
    found += [
        ("Calls, first page", "/calls", window, "calls --limit 100 --format json",
         cli("calls", *cli_window, "--limit", "100", "--format", "json")),
        ("Calls, 90 % deep", "/calls", {**window, "after": cursor_of(deep)}, "calls --until (the cursor) --limit 100",
         cli("calls", "--since", BASE.isoformat(), "--until", until, "--limit", "100", "--format", "json")),
        ("A call's page", f"/calls/{call_id}", {}, "", None),
        ("Pricing check (2026-11)", "/pricing", {"period": "2026-11"}, "check --since --until",
         lambda: call_commands.check(settings, io.StringIO(), since=month.start, until=month.end)),
        ("Reconciliation (7 days)", "/reconciliation", {}, "reconcile --from (7 days)",
         lambda: balance_commands.reconcile(settings, io.StringIO(), start=week)),
        ("Budgets and alerts", "/budgets", {}, "budgets",
         lambda: budget_commands.budgets(settings, io.StringIO())),
        ("Closes", "/closes", {}, "closes", lambda: close_commands.show_closes(settings, io.StringIO())),
        ("Rate cards", "/rate-cards", {}, "", None),
    ]
    for by in GROUPINGS:
        found.append((f"API spend by {by}", "/api/v1/spend", {"period": PERIOD, "tz": ZONE, "by": by},
                      "build_report (its figures)", lambda by=by: _figures(ledger, period, by)))
    found += [
        ("API calls, first page", "/api/v1/calls", window, "", None),
        ("API a call", f"/api/v1/calls/{call_id}", {}, "", None),
        ("API budgets", "/api/v1/budgets", {}, "budgets --json",
         lambda: budget_commands.budgets(settings, io.StringIO(), as_json=True)),
        ("API balances", "/api/v1/balances", {}, "", None),
        ("API reconciliation (7 days)", "/api/v1/reconciliation", {"from": week.isoformat(), "to": END.isoformat()},
         "reconcile --json --from --to",
         lambda: balance_commands.reconcile(settings, io.StringIO(), start=week, end=END, as_json=True)),
    ]
    return found


def _figures(ledger: Ledger, period, by: str) -> None:
    with one_snapshot(ledger) as session:
        build_report(session, period, parse_group_keys(by))


def cpu_time(action) -> float:
    """This process's CPU milliseconds for one call of `action` (every thread's: the app's and SQLite's)."""
    started = time.process_time()
    action()
    return (time.process_time() - started) * 1000


def measure(ledger: Ledger, settings: Settings, calls: int, runs: int, only: tuple[str, ...] = ()) -> None:
    hold_clock()
    app = create_app(settings, OneViewer(Viewer("bench", "admin")), ledger=ledger)
    statements = Statements(ledger.engine)
    # The median CPU time of five more requests (this process's: the app and, on SQLite, the database; not PostgreSQL's
    # server): on a host loaded by others, what the request itself costs when the wall-clock times are mostly waiting.
    print(f"| {ledger.dialect}, {calls:,} calls | page p50 | page p95 | page CPU | queries | the CLI's "
          "| CLI p50 | CLI p95 |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    with TestClient(app, raise_server_exceptions=True) as client:
        for name, path, query, command, action in cases(ledger, settings, calls):
            if only and not any(name.startswith(prefix) for prefix in only):
                continue
            def page():
                answer = client.get(path, params=query)
                assert answer.status_code == 200, (path, answer.text[:500])

            p50, p95 = percentiles(page, runs)
            before = statements.count
            page()
            count = statements.count - before
            cpu = statistics.median(cpu_time(page) for _ in range(5))
            cli = percentiles(action, runs) if action is not None else None
            beside = f"`{command}` | {cli[0]:,.1f} ms | {cli[1]:,.1f} ms" if cli else "| |"
            print(f"| {name} | {p50:,.1f} ms | {p95:,.1f} ms | {cpu:,.0f} ms | {count} | {beside} |", flush=True)


def main() -> int:
    parser = ledger_arguments(__doc__.splitlines()[0], calls=100_000, runs=20)
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="only the rows whose name starts with NAME (repeatable): `--only Overview --only 'API b'`")
    arguments = parser.parse_args()
    with bench_ledger(arguments, "dashboard.db") as (ledger, fresh):
        print(f"== {ledger.dialect}: {arguments.calls:,} calls over 90 days, {USERS:,} users, {TAGS} tag values")
        if fresh:
            load(ledger, arguments.calls, USERS, TAGS)
        settings = money_settings(ledger.url)
        add_money(ledger, settings)
        measure(ledger, settings, arguments.calls, arguments.runs, tuple(arguments.only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
