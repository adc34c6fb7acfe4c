"""A report of some projects only (a dashboard viewer limited to them): exactly those projects' calls, from the
rollups and the raw edges alike, and never the closed report's close or digest."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from ledger.accounting.group_keys import parse_group_keys
from ledger.accounting.periods import parse_period
from ledger.reports.spend import build_report
from ledger.store.reading import one_snapshot
from tests.ledger_rows import T0, call_values, insert


def test_a_report_of_some_projects_sums_only_their_calls_whole_buckets_and_edges_alike(ledger):
    rows = []
    for i in range(40):
        project = ("search", "billing", None, "<script>x</script>")[i % 4]
        # Calls on 15-minute bounds and between them, so both the rollup and the raw edges are read.
        rows.append(call_values(started_at=T0 + timedelta(minutes=7 * i), project=project, charged=f"0.{i + 1:02d}"))
    insert(ledger, rows)
    period = parse_period("2026-11", "Asia/Kathmandu")
    with one_snapshot(ledger) as session:
        everyone = build_report(session, period, parse_group_keys("project"))
        search = build_report(session, period, parse_group_keys("project,day"), projects=frozenset({"search"}))
        nothing = build_report(session, period, (), projects=frozenset())
    by_project = {group.values[0]: group.figures for group in everyone.groups}
    assert {group.values[0] for group in search.groups} == {"search"}
    assert search.total.calls == by_project["search"].calls == 10
    assert search.total.credits_charged == by_project["search"].credits_charged == sum(
        Decimal(f"0.{i + 1:02d}") for i in range(0, 40, 4))
    assert nothing.total.calls == 0 and nothing.groups == ()
    assert search.digest is None and search.close is None


def test_the_focus_and_files_of_some_projects_keep_to_them_adjustments_too_and_leave_out_top_ups(ledger, tmp_path,
                                                                                               monkeypatch):
    import io
    from datetime import datetime, timezone

    import pytest

    from ledger.config import Settings
    from ledger.errors import ReportError
    from ledger.reports.run import STDOUT, ReportRequest, write_report
    from ledger.service import closing
    from tests.ledger_rows import register, snapshot

    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)
    april = datetime(2026, 4, 1, tzinfo=timezone.utc)
    settings = Settings(database_url=ledger.url, reports_dir=str(tmp_path))
    insert(ledger, [call_values(started_at=april + timedelta(days=1), project=p) for p in ("search", "billing")])
    register(ledger, "f" * 64, "Zq9x", "prod-key", "prod")
    snapshot(ledger, "prod", april + timedelta(days=31), 1000, 10)
    snapshot(ledger, "prod", april + timedelta(days=33), 2000, 20)
    clock = iter([april + timedelta(days=40)] * 2 + [april + timedelta(days=40, seconds=1)])
    closing.close_period(settings, ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    # Late calls of April, recorded in May: May's adjustments.
    insert(ledger, [call_values(started_at=april + timedelta(days=2), recorded_at=april + timedelta(days=45),
                                project=p, model_requested=f"gemini-{p}") for p in ("search", "billing")])

    def focus(projects):
        out = io.StringIO()
        write_report(settings, ledger, ReportRequest(parse_period("2026-05", "UTC"), (), None, "focus", STDOUT,
                                                     projects=projects), out)
        return out.getvalue()

    everyone, search = focus(None), focus(frozenset({"search"}))
    assert "gemini-billing" in everyone and "Purchase" in everyone
    assert "gemini-search" in search and "Correction" in search
    assert "gemini-billing" not in search and "billing" not in search and "Purchase" not in search
    with pytest.raises(ReportError, match="no workbook of some projects"):
        write_report(settings, ledger, ReportRequest(parse_period("2026-05", "UTC"), (), None, "xlsx",
                                                     str(tmp_path / "x.xlsx"), projects=frozenset({"search"})),
                     io.StringIO())
    assert not (tmp_path / "x.xlsx").exists()
