"""The Spend page: the report's groups and total in a table beside a daily chart, links to the calls behind them,
the zone moving calls across days, adjustments as the CLI shows them, and a viewer limited to projects."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import unescape

import pytest
from ledger_rows import call_values, insert

from ledger.accounting.group_keys import parse_group_keys
from ledger.accounting.periods import parse_period
from ledger.config import Settings
from ledger.reports.spend import build_report
from ledger.service import closing
from ledger.store.reading import one_snapshot
from ledger.web.viewer import Viewer

FINANCE = Viewer("fin", "finance", csrf="t" * 32)
SEARCH_ONLY = Viewer("sam", "viewer", projects=frozenset({"search"}), csrf="s" * 32)
NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)


def chart_block(html: str, chart_id: str = "spend-daily") -> dict:
    found = re.search(rf'<script type="application/json" id="{chart_id}">(.*?)</script>', html, re.S)
    assert found, html
    return json.loads(found.group(1), parse_float=Decimal)


def table_rows(html: str, css: str = "group") -> list[list[str]]:
    rows = re.findall(rf'<tr class="{css}">(.*?)</tr>', html, re.S)
    return [[unescape(cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)] for row in rows]


def ledger_of_three_projects(ledger) -> None:
    rows = []
    for i in range(30):
        project = ("search", "billing", "ads")[i % 3]
        rows.append(call_values(started_at=NOV + timedelta(days=i % 5, hours=i), project=project,
                                charged=f"0.{i + 1:02d}", end_user=f"u-{i % 4}"))
    insert(ledger, rows)


def test_the_table_is_the_reports_groups_and_adds_up_to_its_total(ledger, client_as):
    ledger_of_three_projects(ledger)
    page = client_as(FINANCE).get("/spend", params={"period": "2026-11", "tz": "UTC", "by": "project,day"})
    assert page.status_code == 200, page.text
    with one_snapshot(ledger) as session:
        report = build_report(session, parse_period("2026-11", "UTC"), parse_group_keys("project,day"))
    rows = table_rows(page.text)
    assert [tuple(r[:2]) for r in rows] == [g.values for g in report.groups]
    assert [Decimal(r[6]) for r in rows] == [g.figures.credits_charged for g in report.groups]
    assert sum(Decimal(r[6]) for r in rows) == report.total.credits_charged
    (total,) = table_rows(page.text, "total")
    assert total[0] == "(total)" and Decimal(total[5]) == report.total.credits_charged == sum(
        Decimal(f"0.{i + 1:02d}") for i in range(30))
    assert int(total[1]) == 30
