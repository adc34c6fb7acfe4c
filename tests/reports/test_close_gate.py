"""The gate a close passes: one reconciliation verdict for every caller, a period that has ended, snapshots around it."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from ledger_rows import call_values, insert, register, snapshot
from sqlalchemy import select

from ledger.accounting.periods import parse_period
from ledger.cli import main
from ledger.config import AccountConfig, KeyConfig, Settings
from ledger.errors import GapError, ReportError
from ledger.service import closing
from ledger.store.closes import close_events
from ledger.store.models import PeriodClose
from ledger.store.reconciliation import reconcile_as_configured

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
    snapshot(ledger, "batch", APRIL.start - timedelta(hours=1), 500, 0)
    snapshot(ledger, "batch", APRIL.end + timedelta(hours=1), 500, 0)
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


def test_a_close_is_bracketed_by_the_snapshots_around_its_period_and_says_which(ledger, capsys, monkeypatch):
    october, november = parse_period("2026-10"), parse_period("2026-11")
    register(ledger, KEY, "Ab12", "backend", "prod")
    # Polls: one before October, inside each month, and around the night between them; 2 credits are spent
    # between the last October poll and the first November one that no call of the ledger accounts for.
    polls = [(october.start - timedelta(hours=1), 100), (october.start + timedelta(days=10), 110),
             (october.end - timedelta(hours=1), 120), (november.start + timedelta(hours=1), 122),
             (november.start + timedelta(days=10), 132), (november.end - timedelta(hours=1), 142),
             (november.end + timedelta(hours=1), 142)]
    for taken_at, consumed in polls:
        snapshot(ledger, "prod", taken_at, 10_000, consumed)
    for month in (october, november):
        insert(ledger, [call_values(started_at=month.start + timedelta(days=1 + 2 * i), key_fingerprint=KEY,
                                    charged="2", expected="2", pricing_class="ok") for i in range(10)])
    settings = _settings(ledger.url, "prod")
    monkeypatch.setattr("ledger.cli._settings", lambda args: settings)
    assert main(["reconcile", "--from", "2026-09-30T00:00:00Z", "--to", "2026-12-02T00:00:00Z"], out=io.StringIO()) == 3
    for month in (october, november):  # each close sees the night's window, so neither passes
        with pytest.raises(GapError, match=f"{month.label} \\(UTC\\) not closed: the reconciliation has an unexplained gap"):
            closing.close_period(settings, ledger, month)
    out = io.StringIO()
    assert main(["close", "2026-10", "--accept-gap", "the night's spend is the batch job's"], out=out) == 0
    assert ("bracket prod: snapshot 1 at 2026-09-30T23:00:00Z to snapshot 4 at 2026-11-01T01:00:00Z"
            in out.getvalue())
    with ledger.session() as session:
        (row,) = session.scalars(select(PeriodClose)).all()
    (account,) = json.loads(row.reconciliation_detail)["accounts"]
    assert account["bracket"] == {"opening": {"snapshot": 1, "taken_at": "2026-09-30T23:00:00Z"},
                                  "closing": {"snapshot": 4, "taken_at": "2026-11-01T01:00:00Z"}}
    listed = io.StringIO()
    assert main(["closes", "--json"], out=listed) == 0
    assert json.loads(listed.getvalue())[0]["brackets"] == {"prod": account["bracket"]}


def test_a_close_without_a_snapshot_before_its_start_needs_a_reason(ledger):
    register(ledger, KEY, "Ab12", "backend", "prod")
    for taken_at, consumed in ((APRIL.start + timedelta(hours=1), 100), (APRIL.end + timedelta(hours=1), 100)):
        snapshot(ledger, "prod", taken_at, 10_000, consumed)
    settings = _settings(ledger.url, "prod")
    with pytest.raises(GapError, match=r"2026-04 \(UTC\) not closed: the reconciliation does not cover the whole period "
                                       r"\(prod: no usable snapshot before 2026-04-01T00:00:00Z\)"):
        closing.close_period(settings, ledger, APRIL)
    closed = closing.close_period(settings, ledger, APRIL, accept_gap="polling began on 1 April")
    assert closed.row.reconciliation == "partial_accepted" and closed.verdict.startswith("partly reconciled")


def test_a_refund_across_a_poll_reconciles_in_every_later_run(ledger, monkeypatch):
    # A call charged 1 credit just before a poll, refunded by the platform before the next: total_consumed
    # rose by 1, then fell by 1. Reconciled then, and in the service's later runs that list recent windows only.
    register(ledger, KEY, "Ab12", "backend", "prod")
    t = APRIL.start
    for hours, consumed in ((0, 100), (1, 101), (2, 100), (3, 102), (4, 104)):
        snapshot(ledger, "prod", t + timedelta(hours=hours), 10_000, consumed)
    insert(ledger, [call_values(started_at=t + timedelta(minutes=30), key_fingerprint=KEY, charged="1", expected="1",
                                pricing_class="ok")])
    insert(ledger, [call_values(started_at=t + timedelta(hours=h, minutes=30), key_fingerprint=KEY, charged="2",
                                expected="2", pricing_class="ok") for h in (2, 3)])
    settings = _settings(ledger.url, "prod")
    monkeypatch.setattr("ledger.cli._settings", lambda args: settings)
    out = io.StringIO()
    assert main(["reconcile", "--json"], out=out) == 0
    (account,) = json.loads(out.getvalue())["accounts"]
    assert [w["status"] for w in account["windows"]] == ["ok", "explained", "ok", "ok"]
    assert [e["name"] for e in account["windows"][1]["explanations"]] == ["refund"]
    assert account["cumulative"]["status"] == "explained"  # the ledger counts 1 more: the refund
    later = reconcile_as_configured(settings, ledger, t + timedelta(hours=3), cumulative_from_first=True)
    assert later.verdict == "reconciled" and later.accounts[0].cumulative.explanation("refund").credits == -1
