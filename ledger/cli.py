"""The credit-ledger command: argparse in, one clear line out on error.

Exit codes: 0 success, 1 a problem the user can act on (one line on stderr),
2 a usage error (argparse), 3 `reconcile` found an unexplained gap.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Sequence

from . import __version__
from .errors import LedgerError

EXIT_GAP = 3


# ---------------------------------------------------------------- arguments


def parse_time(text: str) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or an age like 24h, 7d, 30m."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use 2026-11-24, 2026-11-24T10:00Z or 24h)") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="credit-ledger", description="Usage and cost accounting for the AI Video API's credits.")
    parser.add_argument("--version", action="version", version=f"credit-ledger {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $CREDIT_LEDGER_CONFIG or ./credit-ledger.toml)")
    parser.add_argument("--database-url", help="ledger database (default: $CREDIT_LEDGER_DATABASE_URL or sqlite:///ledger.db)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    calls.add_argument("--project")
    calls.add_argument("--limit", type=_positive_int, help="at most this many (the newest)")
    calls.add_argument("--format", choices=("table", "json", "csv"), default="table")

    simulate = sub.add_parser("simulate", help="serve the API simulator on loopback")
    simulate.add_argument("--port", type=_port, default=8765)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--seed", type=int, default=0)

    demo = sub.add_parser("demo", help="run a mixed workload against the simulator, through the recorder")
    demo.add_argument("--calls", type=_positive_int, default=120, help="number of chat calls (default 120)")
    demo.add_argument("--seed", type=int, default=7)

    sub.add_parser("replay", help="write what the journal still holds into the ledger")

    sub.add_parser("balance", help="poll GET /v1/credits now and print the balances")

    reconcile = sub.add_parser("reconcile", help="match balance movements against the ledger")
    reconcile.add_argument("--from", dest="start", type=parse_time)
    reconcile.add_argument("--to", dest="end", type=parse_time)
    reconcile.add_argument("--json", action="store_true")

    sub.add_parser("run", help="the scheduled service: poll, reconcile, replay")
    return parser


# ---------------------------------------------------------------- commands


def _settings(args):
    from .config import load_settings

    return load_settings(args.config, args.database_url)


def _rate_book(settings):
    from .pricing import default_rate_book, load_rate_cards

    book = default_rate_book()
    if settings.rate_cards_path:
        book = book.merged(load_rate_cards(settings.rate_cards_path))
    return book


def cmd_db(args, out) -> int:
    from .db import Ledger, current_revision, head_revision

    settings = _settings(args)
    if args.db_command == "upgrade":
        with Ledger(settings.database_url) as ledger:
            print(f"ledger at {ledger.engine.url!r} is at migration {current_revision(ledger.engine)}", file=out)
    else:
        with Ledger(settings.database_url, upgrade_schema=False) as ledger:
            current = current_revision(ledger.engine)
            print(f"{current or 'empty'} (newest: {head_revision()})", file=out)
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def finding_rows(session, since, until) -> list[dict]:
    from .repository import findings_query

    rows = []
    for call in session.scalars(findings_query(since, until)):
        difference = None
        if call.credits_charged is not None and call.credits_expected is not None:
            difference = call.credits_charged - call.credits_expected
        rows.append(
            {
                "call_id": call.call_id,
                "started_at": call.started_at,
                "completion_id": call.completion_id,
                "model": call.model_requested,
                "status": call.status,
                "pricing_class": call.pricing_class,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
                "reasoning_tokens": call.reasoning_tokens,
                "credits_expected": call.credits_expected,
                "credits_charged": call.credits_charged,
                "difference": difference,
                "project": call.project,
                "anomalies": call.anomalies,
            }
        )
    return rows


def class_totals(session, since, until) -> list[dict]:
    from .repository import totals_by_class

    totals = []
    for klass, count, charged, expected in totals_by_class(session, since, until):
        difference = None if charged is None or expected is None else charged - expected
        totals.append(
            {"pricing_class": klass, "calls": count, "credits_expected": expected, "credits_charged": charged, "difference": difference}
        )
    return totals


def print_findings(session, since, until, out, as_json: bool = False) -> int:
    """Print the pricing findings; returns how many calls were flagged."""
    from .tables import table

    rows = finding_rows(session, since, until)
    totals = class_totals(session, since, until)
    if as_json:
        json.dump({"findings": rows, "totals": totals}, out, default=_json_default, indent=2)
        out.write("\n")
        return len(rows)
    if not rows:
        print("pricing check: every call was charged as the rate card says (ok or within rounding)", file=out)
        return 0
    cols = ["call_id", "started_at", "pricing_class", "prompt_tokens", "completion_tokens", "reasoning_tokens",
            "credits_expected", "credits_charged", "difference", "anomalies"]
    print(table(cols, ([r[c] for c in cols] for r in rows), right=cols[3:9]), file=out)
    print(file=out)
    tcols = ["pricing_class", "calls", "credits_expected", "credits_charged", "difference"]
    print(table(tcols, ([t[c] for c in tcols] for t in totals), right=tcols[1:]), file=out)
    return len(rows)


def cmd_check(args, out) -> int:
    from .db import Ledger

    settings = _settings(args)
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        print_findings(session, args.since, args.until, out, args.json)
    return 0


CALL_FIELDS = (
    "call_id", "started_at", "status", "http_status", "error_code", "completion_id", "model", "model_reported",
    "stream", "attempt", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
    "credits_charged", "credits_expected", "pricing_class", "project", "user", "tags", "key_last4", "anomalies",
)


def call_dict(call) -> dict:
    return {
        "call_id": call.call_id, "started_at": call.started_at, "status": call.status,
        "http_status": call.http_status, "error_code": call.error_code, "completion_id": call.completion_id,
        "model": call.model_requested, "model_reported": call.model_reported, "stream": call.stream,
        "attempt": call.attempt, "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
        "reasoning_tokens": call.reasoning_tokens, "total_tokens": call.total_tokens,
        "credits_charged": call.credits_charged, "credits_expected": call.credits_expected,
        "pricing_class": call.pricing_class, "project": call.project, "user": call.end_user,
        "tags": json.loads(call.tags) if call.tags else {}, "key_last4": call.key_last4,
        "anomalies": call.anomalies.split(",") if call.anomalies else [],
    }


def cmd_calls(args, out) -> int:
    from .db import Ledger
    from .models import Call
    from .repository import calls_query
    from .tables import table

    settings = _settings(args)
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        query = calls_query(args.since, args.until, args.project)
        if args.limit:
            query = query.order_by(None).order_by(Call.started_at.desc(), Call.id.desc()).limit(args.limit)
        calls = [call_dict(c) for c in session.scalars(query)]
    if args.limit:
        calls.reverse()
    if args.format == "json":
        json.dump(calls, out, default=_json_default, indent=2)
        out.write("\n")
    elif args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CALL_FIELDS)
        for call in calls:
            writer.writerow(_csv_cell(call[f]) for f in CALL_FIELDS)
    else:
        cols = ["started_at", "status", "model", "prompt_tokens", "completion_tokens", "reasoning_tokens",
                "credits_charged", "credits_expected", "pricing_class", "project", "user"]
        print(table(cols, ([c[k] for k in cols] for c in calls), right=cols[3:9]), file=out)
        print(f"{len(calls)} calls", file=out)
    return 0


def _csv_cell(value: Any) -> str:
    from .tables import cell

    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True) if value else ""
    elif isinstance(value, list):
        value = ",".join(value)
    text = cell(value)
    # A spreadsheet must never take a cell for a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def cmd_simulate(args, out) -> int:
    from .simulator import SimulatorConfig, serve

    print(f"simulator on http://{args.host}:{args.port}/v1 (Ctrl-C stops it)", file=out, flush=True)
    serve(SimulatorConfig(seed=args.seed), args.host, args.port)
    return 0


def cmd_demo(args, out) -> int:
    from .demo import run_demo

    return run_demo(_settings(args), calls=args.calls, seed=args.seed, out=out)


def cmd_replay(args, out) -> int:
    settings = _settings(args)
    book = _rate_book(settings)  # a bad card stops here, before anything is written
    from .writer import replay_journal

    result = replay_journal(settings.database_url, settings.journal_path, rate_book=book, policy=settings.pricing)
    print(result.summary() if hasattr(result, "summary") else result, file=out)
    return 0


def cmd_balance(args, out) -> int:
    from .jobs import balance_command

    return balance_command(_settings(args), out)


def cmd_reconcile(args, out) -> int:
    from .jobs import reconcile_command

    return reconcile_command(_settings(args), args.start, args.end, args.json, out)


def cmd_run(args, out) -> int:
    from .jobs import run_service

    return run_service(_settings(args))


COMMANDS = {
    "db": cmd_db, "check": cmd_check, "calls": cmd_calls, "simulate": cmd_simulate, "demo": cmd_demo,
    "replay": cmd_replay, "balance": cmd_balance, "reconcile": cmd_reconcile, "run": cmd_run,
}


def main(argv: Sequence[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, out)
    except LedgerError as exc:
        print(f"credit-ledger: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("credit-ledger: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
