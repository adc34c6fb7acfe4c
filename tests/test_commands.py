"""The commands as functions: called with typed arguments and no argparse, each prints what the CLI prints and
returns its exit code (the CLI only maps its arguments onto them)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
from factories import insert_records, make_call

from ledger.accounting.periods import parse_period
from ledger.accounting.pricing import default_rate_book
from ledger.cli import main
from ledger.commands import EXIT_NOTHING, EXIT_OK, alerts, balances, budgets, calls, closes, db, reports
from ledger.config import load_settings
from ledger.accounting.group_keys import parse_group_keys
from ledger.errors import ConfigError
from ledger.store.engine import Ledger
from ledger.store.rate_cards import sync_rate_cards

NOVEMBER = datetime(2026, 11, 3, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def settings(database_url, tmp_path, monkeypatch):
    """A ledger of five calls in November 2026 in three projects, and the settings that name it."""
    monkeypatch.chdir(tmp_path)
    with Ledger(database_url) as ledger:
        with ledger.session() as session:
            sync_rate_cards(session, default_rate_book())  # as the writer does: FOCUS states costs in dollars
        insert_records(ledger, [make_call(NOVEMBER.replace(day=3 + i), 10 + i, project=f"p{i % 3}", user="ana",
                                          call_id=f"call-{i}") for i in range(5)])
    return load_settings(None, database_url)


def cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(args, out=out)
    return code, out.getvalue()


def direct(command, *args, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = command(*args, out, **kwargs)
    return code, out.getvalue()


def test_calls_check_and_db_print_what_the_cli_prints(settings):
    url = ["--database-url", settings.database_url]
    since, until = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 6, tzinfo=timezone.utc)
    assert direct(calls.show_calls, settings, since=since, until=until, fmt="csv") == \
        cli([*url, "calls", "--since", "2026-11-01", "--until", "2026-11-06", "--format", "csv"])
    assert direct(calls.show_calls, settings, project="p1", limit=1, fmt="json") == \
        cli([*url, "calls", "--project", "p1", "--limit", "1", "--format", "json"])
    assert direct(calls.check, settings, as_json=True) == cli([*url, "check", "--json"])
    assert direct(db.current, settings) == cli([*url, "db", "current"])
    code, text = direct(calls.show_calls, settings, fmt="csv")
    assert code == EXIT_OK and text.count("call-") == 5


def test_a_report_is_the_clis_report_and_returns_the_files_it_wrote(settings, tmp_path):
    url = ["--database-url", settings.database_url]
    november = parse_period("2026-11", "UTC")
    for fmt in ("csv", "focus", "table"):  # (not JSON: it says when it was generated)
        out = io.StringIO()
        assert reports.report(settings, out, period=november, keys=parse_group_keys("project,user"), fmt=fmt,
                              output="-") == []
        assert (EXIT_OK, out.getvalue()) == cli([*url, "report", "--period", "2026-11", "--by", "project,user",
                                                 "--format", fmt, "--output", "-"])
    out = io.StringIO()
    written = reports.report(settings, out, period=november, fmt="xlsx", output=str(tmp_path / "november.xlsx"))
    assert written == [tmp_path / "november.xlsx"] and written[0].stat().st_size > 0
    assert out.getvalue() == f"wrote {written[0]}\n"


def test_reconcile_budgets_alerts_and_closes_return_the_clis_exit_codes(settings):
    url = ["--database-url", settings.database_url]
    assert direct(balances.reconcile, settings, as_json=True)[0] == EXIT_NOTHING  # no account, no snapshot
    assert direct(balances.reconcile, settings) == cli([*url, "reconcile"])
    assert direct(budgets.budgets, settings, as_json=False) == cli([*url, "budgets"])
    assert direct(alerts.show_alerts, settings, as_json=True) == cli([*url, "alerts", "--json"])
    assert direct(closes.show_closes, settings) == (EXIT_OK, "no period has been closed\n")
    assert direct(closes.show_closes, settings, as_json=True) == cli([*url, "closes", "--json"])


def test_a_command_raises_what_the_cli_turns_into_one_line(settings, capsys):
    with pytest.raises(ConfigError, match="no channel named 'pager' \\(none is configured\\)"):
        alerts.test_channel(settings, io.StringIO(), channel="pager")
    assert cli(["--database-url", settings.database_url, "alerts", "test", "--channel", "pager"]) == (1, "")
    assert capsys.readouterr().err == "credit-ledger: no channel named 'pager' (none is configured)\n"
