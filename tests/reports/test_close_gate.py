"""The gate a close passes: one reconciliation verdict for every caller, a period that has ended, snapshots around it."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from ledger_rows import call_values, insert, register, snapshot

from ledger.accounting.periods import parse_period
from ledger.cli import main
from ledger.config import AccountConfig, KeyConfig, Settings
from ledger.errors import GapError, ReportError
from ledger.service import closing
from ledger.store.closes import close_events

APRIL = parse_period("2026-04")
KEY = "a" * 64


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)  # nothing writes concurrently in these tests


def _settings(url: str, *names: str) -> Settings:
    # The keys' variables are unset: a poll finds no key (no network), as an unreachable account gives no figures.
    accounts = tuple(AccountConfig(n, "http://127.0.0.1:9/v1", (KeyConfig("main", env=f"CLOSE_GATE_{n.upper()}"),))
                     for n in names)
    return Settings(database_url=url, accounts=accounts)


def _april_reconciled(ledger) -> None:
    """prod's snapshots around April agree with its calls to the credit."""
    register(ledger, KEY, "Ab12", "backend", "prod")
    for taken_at, consumed in ((APRIL.start - timedelta(hours=1), 100), (APRIL.start + timedelta(hours=1), 100),
                               (APRIL.start + timedelta(days=10), 110), (APRIL.end - timedelta(hours=1), 120),
                               (APRIL.end + timedelta(hours=1), 120)):
        snapshot(ledger, "prod", taken_at, 10_000, consumed)
    insert(ledger, [call_values(started_at=APRIL.start + timedelta(days=1 + 2 * i), key_fingerprint=KEY, charged="2",
                                expected="2", pricing_class="ok") for i in range(10)])


def test_an_account_never_reconciled_fails_the_close_as_it_fails_reconcile(ledger, monkeypatch):
    _april_reconciled(ledger)
    settings = _settings(ledger.url, "prod", "batch")
    monkeypatch.setattr("ledger.cli._settings", lambda args: settings)
    code = main(["reconcile", "--from", "2026-03-31T23:00:00Z", "--to", "2026-05-01T01:00:00Z"], out=io.StringIO())
    assert code == 4  # batch: nothing was checked
    with pytest.raises(GapError, match="nothing was reconciled for batch"):
        closing.close_period(settings, ledger, APRIL)
    # The workbook's Summary and the scheduled job say what `reconcile` says: one verdict.
    from ledger.reports.summary import build_summary
    from ledger.store.reconciliation import reconcile_as_configured
    from ledger.store.spend import Selection

    result = reconcile_as_configured(settings, ledger, APRIL.start, APRIL.end)
    with ledger.session() as session:
        summary = build_summary(session, Selection(APRIL.start, APRIL.end), result)
    assert result.verdict == summary.reconciliation.verdict == "nothing to reconcile"
    assert summary.verdict.startswith("nothing to reconcile") and "batch" in summary.verdict
    # With batch's own snapshots around April, the close passes.
    snapshot(ledger, "batch", APRIL.start + timedelta(hours=1), 500, 0)
    snapshot(ledger, "batch", APRIL.end - timedelta(hours=1), 500, 0)
    closed = closing.close_period(settings, ledger, APRIL)
    assert (closed.verdict, closed.row.reconciliation) == ("reconciled", "reconciled")


def test_a_period_is_closed_only_once_it_has_ended_and_its_charges_have_settled(ledger):
    settings = Settings(database_url=ledger.url)  # [reconcile] billing_settle_seconds: 2
    december = parse_period("2026-12", "Europe/Berlin")
    insert(ledger, [call_values(started_at=december.start + timedelta(days=1))])
    for now in (datetime(2026, 12, 7, 9, tzinfo=timezone.utc), december.start - timedelta(days=3),
                december.end + timedelta(seconds=1)):
        with pytest.raises(ReportError, match=r"2026-12 \(Europe/Berlin\) has not ended: it ends at "
                                              r"2026-12-31T23:00:00Z, and its charges settle 2 s later"):
            closing.close_period(settings, ledger, december, now=lambda: now)
    with ledger.session() as session:
        assert close_events(session) == []
    closed = closing.close_period(settings, ledger, december, now=lambda: december.end + timedelta(seconds=2))
    assert closed.row.calls == 1
