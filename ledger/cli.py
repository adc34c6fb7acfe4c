"""The credit-ledger command: argparse in, each command mapped onto its function in ledger.commands, one clear
line out on error.

Exit codes: 0 success, 1 a problem the user can act on (one line on stderr),
2 a usage error (argparse), 3 `reconcile` found an unexplained gap (`rollup verify`:
rollups that differ from the calls), 4 `reconcile` had nothing to reconcile (an
account with fewer than two usable snapshots in the window): a close script that
gates on the exit code never passes on nothing.
Set CREDIT_LEDGER_DEBUG=1 to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from typing import Sequence

from . import __version__
from .commands import EXIT_GAP, EXIT_NOTHING  # noqa: F401 (scripts and tests take the exit codes from here too)
from .cli_types import (EARLIEST, LATEST, _digits, _group_keys, _host, _period_name, _port,  # noqa: F401 (ledger.cli.parse_time, … as before)
                        _positive_int, _whole_number, _zone, parse_time)
from .errors import LedgerError, describe


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="credit-ledger", description="Usage and cost accounting for the AI Video API's credits.")
    parser.add_argument("--version", action="version", version=f"credit-ledger {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $CREDIT_LEDGER_CONFIG or ./credit-ledger.toml)")
    parser.add_argument("--database-url", help="ledger database (default: $CREDIT_LEDGER_DATABASE_URL or sqlite:///ledger.db)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    db = sub.add_parser("db", help="the ledger's schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    db_sub.add_parser("upgrade", help="upgrade the schema to the newest migration")
    db_sub.add_parser("current", help="print the schema's migration")

    check = sub.add_parser("check", help="list calls whose charge does not match the rate card")
    check.add_argument("--since", type=parse_time, help="from this time (ISO, or an age like 24h)")
    check.add_argument("--until", type=parse_time, help="up to this time")
    check.add_argument("--json", action="store_true", help="print JSON")

    calls = sub.add_parser("calls", help="list recorded calls")
    calls.add_argument("--since", type=parse_time)
    calls.add_argument("--until", type=parse_time)
    calls.add_argument("--project", help="only this project's calls ((none): calls without one, as reports label it)")
    calls.add_argument("--user", help="only this end user's calls (labelled as --project)")
    calls.add_argument("--key", help="only this key's calls: its label, or … and its last four characters (…Zq9x)")
    calls.add_argument("--model", help="only calls that requested or reported this model")
    calls.add_argument("--status", help="only calls of this status (completed, error, aborted, failed, refused)")
    calls.add_argument("--class", dest="pricing_class", help="only calls of this pricing class (overcharge, ...)")
    calls.add_argument("--tag", help="only calls with this tag: NAME=VALUE")
    calls.add_argument("--account", help="only the calls of this account's keys")
    calls.add_argument("--limit", type=_positive_int, help="at most this many (the newest)")
    calls.add_argument("--format", choices=("table", "json", "csv"), default="table")

    simulate = sub.add_parser("simulate", help="serve the API simulator on loopback")
    simulate.add_argument("--port", type=_port, default=8765)
    simulate.add_argument("--host", type=_host, default="127.0.0.1")
    simulate.add_argument("--seed", type=_whole_number, default=0)

    demo = sub.add_parser("demo", help="run a mixed workload against the simulator, through the recorder")
    demo.add_argument("--calls", type=_positive_int, default=120, help="number of chat calls (default 120)")
    demo.add_argument("--seed", type=_whole_number, default=7)

    sub.add_parser("replay", help="write what the journal still holds into the ledger")

    rollup = sub.add_parser("rollup", help="the rollups: compare them with the raw calls, or make them anew")
    rollup_sub = rollup.add_subparsers(dest="rollup_command", required=True, parser_class=_Parser)
    for name, text in (("verify", "recompute the rollups from the raw calls and compare (exit 3 on a difference)"),
                       ("rebuild", "make the rollups anew from the raw calls, a day at a time")):
        action = rollup_sub.add_parser(name, help=text)
        action.add_argument("--from", dest="start", type=parse_time, help="from this time (whole 15-minute buckets)")
        action.add_argument("--to", dest="end", type=parse_time, help="up to this time")

    retention = sub.add_parser("retention", help="raw calls of closed periods older than [retention] calls_days")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True, parser_class=_Parser)
    retention_sub.add_parser("run", help="delete them now, in batches (their sums stay in the rollups)")

    sub.add_parser("balance", help="poll GET /v1/credits now and print the balances")

    reconcile = sub.add_parser("reconcile", help="match balance movements against the ledger")
    reconcile.add_argument("--from", dest="start", type=parse_time)
    reconcile.add_argument("--to", dest="end", type=parse_time)
    reconcile.add_argument("--json", action="store_true")

    sub.add_parser("run", help="the scheduled service: poll, reconcile, replay, scheduled reports, budgets and alerts")

    report = sub.add_parser("report", help="spend over a period, grouped (table, CSV, JSON, Excel, FOCUS)")
    report.add_argument("--period", type=_period_name, help="2026-11, 2026-W48, 2026-Q4, 2026 or 2026-11-30 (default: this month so far)")
    report.add_argument("--from", dest="start", type=parse_time, help="instead of --period: from this time")
    report.add_argument("--to", dest="end", type=parse_time, help="up to this time (default: now)")
    report.add_argument("--tz", type=_zone, help="the zone periods and days are bounded in (default: the config's timezone)")
    report.add_argument("--by", type=_group_keys, default=(), help="group keys: project,user,key,model,account,day,week,month,tag:NAME")
    report.add_argument("--account", help="only the calls of this account's keys")
    report.add_argument("--format", choices=("table", "csv", "json", "xlsx", "focus"), default="table")
    report.add_argument("--output", help="file or folder (default: the reports folder; '-' for standard output)")
    report.add_argument("--calls", action="store_true", help="xlsx: add the Calls sheet (every call of the period)")

    close = sub.add_parser("close", help="close a period: its figures and the digest of its calls, fixed")
    close.add_argument("period", type=_period_name)
    close.add_argument("--tz", type=_zone)
    close.add_argument("--accept-gap", metavar="REASON", help="close although the reconciliation has a gap (the reason is kept)")
    reopen = sub.add_parser("reopen", help="reopen a closed period (a new row, with the reason)")
    reopen.add_argument("period", type=_period_name)
    reopen.add_argument("--tz", type=_zone)
    reopen.add_argument("--reason", required=True)
    closes = sub.add_parser("closes", help="the closed periods")
    closes.add_argument("--json", action="store_true")

    budgets = sub.add_parser("budgets", help="each budget's spend, limit and projection; each balance's runway")
    budgets.add_argument("--json", action="store_true", help="print JSON")
    budgets.add_argument("--notify", action="store_true", help="evaluate now and deliver what is due, as the service does")

    alerts = sub.add_parser("alerts", help="the alert history, with deliveries")
    alerts.add_argument("--since", type=parse_time, help="raised or resolved from this time (ISO, or an age like 7d)")
    alerts.add_argument("--json", action="store_true", help="print JSON")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", parser_class=_Parser)
    alerts_test = alerts_sub.add_parser("test", help="send a test message through a channel")
    alerts_test.add_argument("--channel", required=True, help="the channel's name in [[channels]]")

    proxy = sub.add_parser("proxy", help="a recording HTTP proxy: point any client's base URL at it")
    proxy.add_argument("--host", type=_host, help="address to listen on (default: [proxy] host, else 127.0.0.1)")
    proxy.add_argument("--port", type=_port, help="port to listen on (default: [proxy] port, else 8787)")
    proxy.add_argument("--upstream", help="the API's base URL (default: [proxy] upstream, $AIVIDEO_BASE_URL, else the real one)")
    proxy.add_argument("--workers", type=_positive_int, help="worker processes (default: [proxy] workers, else 1)")
    proxy.add_argument("--fingerprint", action="store_true",
                       help="read a proxy key (sk-…) on standard input and print its fingerprint for [[proxy.keys]]")

    dashboard = sub.add_parser("dashboard", help="serve the dashboard (pages and the read API under /api/v1/)")
    dashboard.add_argument("--host", type=_host, help="address to listen on (default: [dashboard] host, else 127.0.0.1)")
    dashboard.add_argument("--port", type=_port, help="port to listen on (default: [dashboard] port, else 8788)")
    for noun, what in (("users", "the dashboard's users"), ("tokens", "the read API's bearer tokens")):
        verbs = sub.add_parser(noun, help=what).add_subparsers(dest=f"{noun}_command", required=True, parser_class=_Parser)
        add = verbs.add_parser("add", help="add one (users: the password on standard input, one line)")
        add.add_argument("name")
        add.add_argument("--role", required=True, choices=("admin", "finance", "viewer"))
        add.add_argument("--project", action="append", help="only this project's calls and spend (repeatable)")
        if noun == "users":
            add.add_argument("--link", action="store_true", help="print a one-time sign-in link instead of reading a password")
        else:
            add.add_argument("--expires", default="90d", help="lifetime: 90d (default), 12h or never")
        verbs.add_parser("list", help="list them (never a password or a token)")
        verbs.add_parser("disable" if noun == "users" else "revoke", help="disable (ending its sessions)" if noun == "users"
                         else "revoke it").add_argument("name")
        if noun == "users":
            verbs.add_parser("enable", help="enable a disabled user again").add_argument("name")
            password = verbs.add_parser("password", help="set a new password (standard input, one line), ending their "
                                        "sessions and earlier sign-in links")
            password.add_argument("name")
            password.add_argument("--link", action="store_true", help="print a one-time sign-in link that sets it instead")
    return parser


# ---------------------------------------------------------------- commands
# Each maps its arguments onto one function of ledger.commands (imported here, when it runs: the CLI starts fast).


def _settings(args):
    from .config import load_settings

    return load_settings(args.config, args.database_url)


def cmd_db(args, out) -> int:
    from .commands import db

    settings = _settings(args)
    return db.upgrade(settings, out) if args.db_command == "upgrade" else db.current(settings, out)


def cmd_check(args, out) -> int:
    from .commands.calls import check

    return check(_settings(args), out, since=args.since, until=args.until, as_json=args.json)


def cmd_calls(args, out) -> int:
    from .commands.calls import show_calls

    from .store.call_filters import CallFilter

    try:
        filters = CallFilter(project=args.project, user=args.user, key=args.key, model=args.model, status=args.status,
                             pricing_class=args.pricing_class, tag=args.tag)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return show_calls(_settings(args), out, since=args.since, until=args.until, limit=args.limit, fmt=args.format,
                      filters=filters, account=args.account)


def cmd_simulate(args, out) -> int:
    from .commands.service import simulate

    return simulate(out, host=args.host, port=args.port, seed=args.seed)


def cmd_demo(args, out) -> int:
    from .commands.service import demo

    return demo(_settings(args), out, calls=args.calls, seed=args.seed)


def cmd_replay(args, out) -> int:
    from .commands.calls import replay

    return replay(_settings(args), out)


def cmd_balance(args, out) -> int:
    from .commands.balances import balance

    return balance(_settings(args), out)


def cmd_reconcile(args, out) -> int:
    from .commands.balances import reconcile

    return reconcile(_settings(args), out, start=args.start, end=args.end, as_json=args.json)


def _report_period(args, settings):
    """The period --period, --from/--to or neither (this month so far) names, in --tz or the config's zone."""
    from .accounting.periods import requested_period

    if args.period and (args.start or args.end):
        raise UsageError("give --period or --from/--to, not both")
    if args.end and not args.start:
        raise UsageError("--to needs --from")
    try:
        return requested_period(args.tz or settings.timezone, datetime.now(timezone.utc), args.period, args.start,
                                args.end)
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_report(args, out) -> int:
    from .commands.reports import report

    settings = _settings(args)
    period = _report_period(args, settings)
    if args.calls and args.format != "xlsx":
        raise UsageError("--calls is for --format xlsx (the rows of `credit-ledger calls` otherwise)")
    report(settings, out, period=period, keys=args.by, account=args.account, fmt=args.format, output=args.output,
           with_calls=args.calls)
    return 0


def _named_period(args, settings):
    from .accounting.periods import parse_period

    return parse_period(args.period, args.tz or settings.timezone)


def cmd_close(args, out) -> int:
    """0 closed; EXIT_GAP when refused for an unexplained gap."""
    from .commands.closes import close
    from .errors import GapError

    settings = _settings(args)
    try:
        return close(settings, out, period=_named_period(args, settings), accept_gap=args.accept_gap)
    except GapError as error:
        print(f"credit-ledger: {error}", file=sys.stderr)
        return EXIT_GAP


def cmd_reopen(args, out) -> int:
    from .commands.closes import reopen

    settings = _settings(args)
    return reopen(settings, out, period=_named_period(args, settings), reason=args.reason)


def cmd_closes(args, out) -> int:
    from .commands.closes import show_closes

    return show_closes(_settings(args), out, as_json=args.json)


def cmd_rollup(args, out) -> int:
    """0 the rollups match (or were rebuilt); EXIT_DIFFERS when verify found a difference."""
    from .commands import rollups

    command = rollups.verify if args.rollup_command == "verify" else rollups.rebuild
    return command(_settings(args), out, start=args.start, end=args.end)


def cmd_retention(args, out) -> int:
    from .commands import retention

    return retention.run(_settings(args), out)


def cmd_run(args, out) -> int:
    """The service; with `[dashboard] enabled`, the dashboard beside it in this process (cli is the layer above both)."""
    from .commands.service import run
    from .web.serve import dashboard_beside

    settings = _settings(args)
    with dashboard_beside(settings, out):
        return run(settings)


def cmd_budgets(args, out) -> int:
    from .commands.budgets import budgets

    return budgets(_settings(args), out, as_json=args.json, send=args.notify)


def cmd_alerts(args, out) -> int:
    from .commands.alerts import show_alerts, test_channel

    if args.alerts_command == "test":
        return test_channel(_settings(args), out, channel=args.channel)
    return show_alerts(_settings(args), out, since=args.since, as_json=args.json)


def cmd_proxy(args, out) -> int:
    from .commands.proxy import fingerprint, serve_proxy

    settings = _settings(args)
    if args.fingerprint:
        return fingerprint(settings, out, key_input=sys.stdin)
    return serve_proxy(settings, out, host=args.host, port=args.port, upstream=args.upstream, workers=args.workers)


def cmd_access(args, out) -> int:
    """`users` and `tokens`: add (a user's password on standard input), list, disable or revoke; users enable and
    password."""
    from .commands import access

    settings, noun, verb = _settings(args), args.command, getattr(args, f"{args.command}_command")
    if verb == "add" and noun == "users":
        return access.users_add(settings, out, name=args.name, role=args.role, projects=args.project,
                                password_input=sys.stdin, link=args.link)
    if verb == "password":
        return access.users_password(settings, out, name=args.name, password_input=sys.stdin, link=args.link)
    if verb == "add":
        return access.tokens_add(settings, out, name=args.name, role=args.role, projects=args.project, expires=args.expires)
    return getattr(access, f"{noun}_{verb}")(settings, out, **({} if verb == "list" else {"name": args.name}))


def cmd_dashboard(args, out) -> int:
    from .web.serve import serve_dashboard

    return serve_dashboard(_settings(args), out, host=args.host, port=args.port)


COMMANDS = {
    "db": cmd_db, "check": cmd_check, "calls": cmd_calls, "simulate": cmd_simulate, "demo": cmd_demo,
    "replay": cmd_replay, "balance": cmd_balance, "reconcile": cmd_reconcile, "run": cmd_run,
    "report": cmd_report, "close": cmd_close, "reopen": cmd_reopen, "closes": cmd_closes,
    "budgets": cmd_budgets, "alerts": cmd_alerts, "rollup": cmd_rollup,
    "retention": cmd_retention,
    "proxy": cmd_proxy, "dashboard": cmd_dashboard, "users": cmd_access, "tokens": cmd_access,
}


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot see: bounds that must come in order."""
    for first, last in (("start", "end"), ("since", "until")):
        low, high = getattr(args, first, None), getattr(args, last, None)
        if low is not None and high is not None and low >= high:
            names = {"start": "--from", "end": "--to", "since": "--since", "until": "--until"}
            parser.error(f"{names[first]} must come before {names[last]} ({low.isoformat()} is not before {high.isoformat()})")


class UsageError(Exception):
    """Arguments that each parse but do not go together: a usage error (exit 2)."""


def main(argv: Sequence[str] | None = None, out=None) -> int:
    from .redact import redact

    out = out or sys.stdout
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error(f"a command is required (one of {', '.join(COMMANDS)}; --help lists them)")
    _check(parser, args)
    try:
        return COMMANDS[args.command](args, out)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except LedgerError as exc:
        print(f"credit-ledger: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("credit-ledger: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line (and the traceback on request)
        if os.environ.get("CREDIT_LEDGER_DEBUG"):
            raise
        locked = _locked_ledger(exc, args)
        if locked is not None:
            print(f"credit-ledger: {locked}", file=sys.stderr)
            return 1
        # The driver's first line only: SQLAlchemy's text goes on with the SQL and its parameters.
        print(f"credit-ledger: unexpected error ({type(exc).__name__}: {redact(describe(exc))[:300]}); "
              "set CREDIT_LEDGER_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


def _locked_ledger(exc: Exception, args: argparse.Namespace) -> str | None:
    from .store.engine import locked_ledger

    try:
        url = _settings(args).database_url
    except Exception:  # the config was read once already; a ledger without a name still gets the line
        url = None
    return locked_ledger(exc, url)


if __name__ == "__main__":
    sys.exit(main())
