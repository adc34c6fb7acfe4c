"""Period closes: a closed period's report never changes; late calls become the next open period's adjustments."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from factories import make_capture
from ledger_rows import call_values, insert, register, snapshot
from sqlalchemy import func, select

from ledger.cli import main
from ledger.config import AccountConfig, KeyConfig, Settings
from ledger.sink.wire import encode
from ledger.sink.writer import replay_journal
from ledger.service import closing
from ledger.errors import GapError
from ledger.store.engine import Ledger
from ledger.store.models import BalanceSnapshot, PeriodClose

APRIL = datetime(2026, 4, 1, tzinfo=timezone.utc)  # the factories' captures start on 2026-04-16


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)  # nothing writes concurrently in these tests


def run(*argv) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def report_json(url: str, period: str, *more: str) -> dict:
    code, text = run("--database-url", url, "report", "--period", period, "--format", "json", "--output", "-", *more)
    assert code == 0, text
    return json.loads(text)


def test_late_calls_replayed_after_a_close_leave_it_unchanged_and_are_the_next_periods_adjustments(database_url, tmp_path):
    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=APRIL + timedelta(days=d), charged="2.5") for d in range(0, 30, 3)])
    code, text = run("--database-url", database_url, "close", "2026-04")
    assert code == 0, text
    assert "closed 2026-04 (UTC)" in text and "10 calls" in text and "nothing to reconcile (no balance snapshots)" in text
    before = report_json(database_url, "2026-04")
    assert before["close"]["digest_matches"] is True and before["digest"] == before["close"]["digest"]

    # A journal replayed late: calls of April reach the ledger now, after the close.
    journal = tmp_path / "journal"
    journal.mkdir()
    captures = [make_capture(i, stream=False) for i in range(3)]
    (journal / "seg-00000000000000000001-1-00000000.seg").write_bytes(b"".join(encode(c) for c in captures) + b"\0" * 512)
    assert replay_journal(database_url, journal).inserted == 3

    after = report_json(database_url, "2026-04")
    assert after["totals"] == before["totals"] and after["groups"] == before["groups"]
    assert after["digest"] == before["digest"] and after["close"]["digest_matches"] is True
    may = report_json(database_url, "2026-05")
    assert may["totals"]["calls"] == 0 and may["empty"] is False
    (adjustment,) = may["adjustments"]
    assert adjustment["closed_period"]["label"] == "2026-04" and adjustment["calls"] == 3
    assert adjustment["credits_charged"] == str(Decimal("0.25") * 3)
    assert sorted(c["started_at"] for c in may["adjustment_calls"]) == ["2026-04-16T16:17:49Z", "2026-04-16T16:17:50Z",
                                                                        "2026-04-16T16:17:51Z"]
    assert {c["call_id"] for c in may["adjustment_calls"]} == {c.call_id for c in captures}
    # In FOCUS, they are corrections of April's days, billed in May.
    code, text = run("--database-url", database_url, "report", "--period", "2026-05", "--format", "focus", "--output", "-")
    rows = [line.split(",") for line in text.splitlines()[1:]]
    assert rows and all(r[7] == "Correction" and r[11] == "2026-04-16T00:00:00Z" for r in rows)

    # Reopened, April counts them as its own again (a new row, not an update); closed again, a new digest.
    code, text = run("--database-url", database_url, "reopen", "2026-04", "--reason", "late journal of host b")
    assert code == 0, text
    assert report_json(database_url, "2026-04")["totals"]["calls"] == 13
    assert report_json(database_url, "2026-05")["adjustments"] == []
    assert run("--database-url", database_url, "close", "2026-04")[0] == 0
    again = report_json(database_url, "2026-04")
    assert again["totals"]["calls"] == 13 and again["digest"] != before["digest"] and again["close"]["digest_matches"]
    code, text = run("--database-url", database_url, "closes", "--json")
    actions = [(c["action"], c["in_force"], c["calls"]) for c in json.loads(text)]
    assert actions == [("close", False, 10), ("reopen", False, None), ("close", True, 13)]


def test_an_adjustment_stays_with_the_period_that_was_open_when_it_was_recorded(ledger, tmp_path):
    settings = Settings(database_url=ledger.url)
    insert(ledger, [call_values(started_at=APRIL + timedelta(days=1))])
    clock = iter([APRIL + timedelta(days=40)] * 2 + [APRIL + timedelta(days=40, seconds=1)])
    closing.close_period(settings, ledger, _month(4), now=lambda: next(clock))
    # Recorded after April's close and before May's: an adjustment of May, and in May's close.
    insert(ledger, [call_values(started_at=APRIL + timedelta(days=2), recorded_at=APRIL + timedelta(days=45))])
    clock = iter([APRIL + timedelta(days=70)] * 2 + [APRIL + timedelta(days=70, seconds=1)])
    may = closing.close_period(settings, ledger, _month(5), now=lambda: next(clock))
    assert may.report.adjustment_total.calls == 1 and may.row.calls == 1
    # Recorded after May's close: June's.
    insert(ledger, [call_values(started_at=APRIL + timedelta(days=3), recorded_at=APRIL + timedelta(days=75))])
    assert report_json(ledger.url, "2026-05")["adjustments"][0]["calls"] == 1
    assert report_json(ledger.url, "2026-05")["close"]["digest_matches"] is True
    assert report_json(ledger.url, "2026-06")["adjustments"][0]["calls"] == 1
    # In the workbook, when it was recorded is a date in the report's zone, as when it started.
    path = tmp_path / "june.xlsx"
    code, text = run("--database-url", ledger.url, "report", "--period", "2026-06", "--tz", "Europe/Berlin",
                     "--format", "xlsx", "--output", str(path))
    assert code == 0, text
    sheet = openpyxl.load_workbook(path)["Adjustments"]
    header = [cell.value for cell in sheet[1]]
    row = dict(zip(header, (cell.value for cell in sheet[2])))
    assert row["recorded (Europe/Berlin)"] == datetime(2026, 6, 15, 2, 0)  # 2026-06-15T00:00Z, in summer time
    assert row["started (its period) (Europe/Berlin)"] == datetime(2026, 4, 4, 2, 0)
    # May is closed after April: April cannot be reopened first.
    code, text = run("--database-url", ledger.url, "reopen", "2026-04", "--reason", "x")
    assert code == 1


def _month(month: int):
    from ledger.accounting.periods import parse_period

    return parse_period(f"2026-{month:02d}")


def test_a_close_is_refused_on_an_unexplained_gap_unless_a_reason_is_given(database_url, capsys):
    with Ledger(database_url) as ledger:
        register(ledger, "a" * 64, "Ab12", "backend", "prod")
        snapshot(ledger, "prod", APRIL + timedelta(days=1), 10_000, 100)
        snapshot(ledger, "prod", APRIL + timedelta(days=20), 10_000, 400)  # 300 credits gone, the ledger knows 5
        insert(ledger, [call_values(started_at=APRIL + timedelta(days=2 + i), key_fingerprint="a" * 64, charged="1")
                        for i in range(5)])
    code, _ = run("--database-url", database_url, "close", "2026-04")
    err = capsys.readouterr().err
    assert code == 3 and "unexplained gap" in err and "--accept-gap" in err and len(err.strip().splitlines()) == 1
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(PeriodClose)) == 0
    code, text = run("--database-url", database_url, "close", "2026-04", "--accept-gap", "bypass found: batch job key")
    assert code == 0 and "accepted: bypass found: batch job key" in text
    with Ledger(database_url) as ledger, ledger.session() as session:
        row = session.scalars(select(PeriodClose)).one()
    assert (row.reconciliation, row.reason, row.calls) == ("gap_accepted", "bypass found: batch job key", 5)
    assert json.loads(row.reconciliation_detail)["has_unexplained_gap"] is True
    assert json.loads(row.totals)["figures"]["credits_charged"] == "5"
    code, _ = run("--database-url", database_url, "close", "2026-04")
    assert code == 1 and "closed already" in capsys.readouterr().err


def test_a_close_takes_a_balance_snapshot_when_accounts_are_configured(ledger, simulator):
    settings = Settings(database_url=ledger.url,
                        accounts=(AccountConfig("acme", simulator.base_url, (KeyConfig("main", key="sk-test-close-0001"),)),))
    insert(ledger, [call_values(started_at=APRIL)])
    # The snapshot is from now, not from April: nothing of April reconciles, and a close gate never passes on nothing.
    with pytest.raises(GapError, match="nothing was reconciled for acme"):
        closing.close_period(settings, ledger, _month(4))
    with ledger.session() as session:
        snapshots = session.scalars(select(BalanceSnapshot)).all()
        assert session.scalar(select(func.count()).select_from(PeriodClose)) == 0
    assert [(s.account, s.status) for s in snapshots] == [("acme", "ok")]
    result = closing.close_period(settings, ledger, _month(4), accept_gap="April predates the balance polling")
    assert (result.row.reconciliation, result.row.reason) == ("no_snapshots", "April predates the balance polling")


def test_a_closed_period_can_be_listed_and_only_a_calendar_period_closed(database_url):
    with Ledger(database_url):
        pass
    code, text = run("--database-url", database_url, "closes")
    assert code == 0 and "no period has been closed" in text
    with pytest.raises(SystemExit) as exit:
        run("--database-url", database_url, "close", "2026-13")
    assert exit.value.code == 2
    assert run("--database-url", database_url, "reopen", "2026-04", "--reason", "x")[0] == 1
