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
