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
    """The chart's JSON, its amounts (exact decimal strings) as Decimals."""
    found = re.search(rf'<script type="application/json" id="{chart_id}">(.*?)</script>', html, re.S)
    assert found, html
    block = json.loads(found.group(1))
    for series in block["option"]["series"]:
        series["data"] = [Decimal(v) for v in series["data"]]
    return block


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


def test_the_zone_moves_a_call_across_a_day_boundary_as_the_cli_report_does(ledger, client_as):
    # 20:00 UTC on the 10th is 01:30 on the 11th in India.
    insert(ledger, [call_values(started_at=datetime(2026, 11, 10, 20, tzinfo=timezone.utc), charged="1.5")])
    client = client_as(FINANCE)
    for zone, day in (("UTC", "2026-11-10"), ("Asia/Kolkata", "2026-11-11")):
        page = client.get("/spend", params={"period": "2026-11", "tz": zone, "by": "day"})
        assert page.status_code == 200, page.text
        assert [r[:1] + r[5:6] for r in table_rows(page.text)] == [[day, "1.5"]]
        block = chart_block(page.text)
        (series,) = block["option"]["series"]
        days = block["option"]["xAxis"]["data"]
        assert dict(zip(days, series["data"]))[day] == Decimal("1.5")
        assert sum(series["data"]) == Decimal("1.5")
        assert f"times in <strong class=\"zone\">{zone}</strong>" in page.text
        # The bar opens that local day's calls.
        assert block["links"][0][days.index(day)] == f"/calls?period={day}&tz={zone.replace('/', '%2F')}"


def test_bars_segments_and_rows_open_the_calls_behind_them(ledger, client_as):
    ledger_of_three_projects(ledger)
    page = client_as(FINANCE).get("/spend", params={"period": "2026-11", "tz": "Europe/Berlin", "by": "project,user",
                                                    "account": "", "project": ""})
    assert page.status_code == 200, page.text
    block = chart_block(page.text)
    names = [s["name"] for s in block["option"]["series"]]
    assert sorted(names) == ["ads", "billing", "search"]
    first_day = block["option"]["xAxis"]["data"][0]
    link = block["links"][names.index("billing")][0]
    assert link == f"/calls?period={first_day}&tz=Europe%2FBerlin&project=billing"
    links = re.findall(r'<tr class="group">.*?<a href="([^"]+)">calls</a>', page.text, re.S)
    assert unescape(links[0]).startswith("/calls?period=2026-11&tz=Europe%2FBerlin&project=")
    assert "&user=u-" in unescape(links[0])
    total_link = re.search(r'<tr class="total">.*?<a href="([^"]+)">', page.text, re.S).group(1)
    assert unescape(total_link) == "/calls?period=2026-11&tz=Europe%2FBerlin"


def test_a_custom_range_links_to_its_own_bounds(ledger, client_as):
    insert(ledger, [call_values(started_at=datetime(2026, 11, 10, 12, tzinfo=timezone.utc), tags={"team": "core"})])
    page = client_as(FINANCE).get("/spend", params={"from": "2026-11-10T06:00Z", "to": "2026-11-12", "tz": "UTC",
                                                    "by": "tag:team"})
    assert page.status_code == 200, page.text
    block = chart_block(page.text)
    assert block["option"]["xAxis"]["data"] == ["2026-11-10", "2026-11-11"]
    # The first day is cut by the range's start: its bar opens the calls from that start, not the whole day.
    assert block["links"][0][0] == "/calls?from=2026-11-10T06%3A00%3A00Z&to=2026-11-11T00%3A00%3A00Z&tz=UTC&tag=team%3Dcore"
    assert block["links"][0][1] == "/calls?period=2026-11-11&tz=UTC&tag=team%3Dcore"


def test_many_values_are_the_top_ten_and_other_whose_segments_add_up_to_the_day(ledger, client_as):
    insert(ledger, [call_values(started_at=NOV + timedelta(hours=i), project=f"p{i:02d}", charged=f"{i + 1}")
                    for i in range(14)])
    page = client_as(FINANCE).get("/spend", params={"period": "2026-11", "tz": "UTC", "by": "project"})
    block = chart_block(page.text)
    names = [s["name"] for s in block["option"]["series"]]
    assert len(names) == 11 and names[-1] == "(other)" and names[0] == "p13"
    assert sum(s["data"][0] for s in block["option"]["series"]) == sum(range(1, 15))
    assert block["links"][-1][0] is None  # "(other)" is many projects: no one view of their calls
    assert len(table_rows(page.text)) == 14


@pytest.mark.parametrize("by", ["user", "user,project", "project,user", "tag:team", "model", "key"])
def test_the_top_ten_chart_is_the_one_of_every_value_by_day(ledger, client_as, by):
    """Each top value's calls summed a day, "(other)" each day's total less theirs: the figures of grouping every
    value by day (`daily`, the workbook's), whatever the values (none, empty, quoted, a tag missing)."""
    users = [None, "", "(none)", '"q"', *(f"u{i:02d}" for i in range(14))]
    insert(ledger, [call_values(started_at=NOV + timedelta(days=i % 6, hours=i), end_user=users[i % len(users)],
                                project=("a", "b", None)[i % 3], tags={"team": f"t{i % 13}"} if i % 5 else None,
                                model_reported=f"m{i % 12}", key_last4=f"{i % 11:04d}", charged=f"{(i * 7) % 23}.5")
                    for i in range(90)])
    from ledger.reports.xlsx_figures import daily
    from ledger.store.spend import usd_per_credit

    page = client_as(FINANCE).get("/spend", params={"period": "2026-11", "tz": "Asia/Kolkata", "by": by})
    assert page.status_code == 200, page.text
    block = chart_block(page.text)
    with one_snapshot(ledger) as session:
        report = build_report(session, parse_period("2026-11", "Asia/Kolkata"), parse_group_keys(by))
        every = daily(session, report, usd_per_credit(session))
    assert [s["name"] for s in block["option"]["series"]] == every.series
    assert len(every.series) == (3 if by.startswith("project") else 11)
    days = [day.label for day in every.days]
    assert [s["data"] for s in block["option"]["series"]] == [[every.table[d][i] for d in days]
                                                              for i in range(len(every.series))]


def test_a_table_of_many_groups_shows_the_biggest_200_and_the_rest_summed_and_adds_up_to_the_total(ledger, client_as):
    insert(ledger, [call_values(started_at=NOV + timedelta(hours=i), end_user=f"u{i:03d}", charged=f"{i % 17}.125")
                    for i in range(230)])
    client = client_as(FINANCE)
    query = {"period": "2026-11", "tz": "UTC", "by": "user"}
    page = client.get("/spend", params=query)
    with one_snapshot(ledger) as session:
        report = build_report(session, parse_period("2026-11", "UTC"), parse_group_keys("user"))
    rows, (rest,), (total,) = table_rows(page.text), table_rows(page.text, "rest"), table_rows(page.text, "total")
    assert [tuple(r[:1]) for r in rows] == [g.values for g in report.groups[:200]]
    assert rest[0] == "(30 more groups: every row in the export)"
    assert Decimal(rest[5]) == sum(g.figures.credits_charged for g in report.groups[200:])
    assert sum(Decimal(r[5]) for r in rows) + Decimal(rest[5]) == Decimal(total[5]) == report.total.credits_charged
    assert sum(int(r[1]) for r in rows) + int(rest[1]) == 230 == int(total[1])
    export = client.get("/spend/export", params={**query, "format": "csv"})
    assert len(export.text.splitlines()) > 230  # every group, as the CLI's report writes it


def test_late_calls_of_a_closed_period_are_shown_as_the_cli_report_shows_them(ledger, client_as):
    april = datetime(2026, 4, 1, tzinfo=timezone.utc)
    settings = Settings(database_url=ledger.url)
    insert(ledger, [call_values(started_at=april + timedelta(days=1))])
    clock = iter([april + timedelta(days=40)] * 2 + [april + timedelta(days=40, seconds=1)])
    closing.close_period(settings, ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    insert(ledger, [call_values(started_at=april + timedelta(days=2), recorded_at=april + timedelta(days=45),
                                charged="0.75")])
    client = client_as(FINANCE)
    may = client.get("/spend", params={"period": "2026-05", "tz": "UTC", "by": "project"})
    assert may.status_code == 200, may.text
    assert ("Prior-period adjustment 2026-04: 1 calls recorded after its close, 0.75 credits charged "
            "(not in the total above).") in may.text
    april_page = client.get("/spend", params={"period": "2026-04", "tz": "UTC", "by": "project"})
    assert "Closed " in april_page.text and "digest matches" in april_page.text
    assert [r[5] for r in table_rows(april_page.text)] == ["0.25"]


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)


def test_the_chart_is_the_same_from_the_reports_own_groups_as_from_its_own_query(ledger, client_as):
    ledger_of_three_projects(ledger)
    client = client_as(FINANCE)
    charts = [chart_block(client.get("/spend", params={"period": "2026-11", "tz": "Asia/Tokyo", "by": by}).text)
              for by in ("project", "day,project", "project,day", "project,user")]
    assert all(chart["option"] == charts[0]["option"] for chart in charts[1:])
    assert sum(sum(s["data"]) for s in charts[0]["option"]["series"]) == sum(Decimal(f"0.{i + 1:02d}") for i in range(30))


def test_the_links_name_groups_as_the_calls_page_reads_them(ledger, client_as):
    insert(ledger, [call_values(started_at=NOV, project=None, tags={"team": "(core)"}),
                    call_values(started_at=NOV + timedelta(hours=1), project="(none)"),
                    call_values(started_at=NOV + timedelta(hours=2), model_requested="gemini-3.1-pro",
                                model_reported="gemini-3.1-pro-preview")])
    client = client_as(FINANCE)
    for by, expected in (
        ("project", {"(none)": "project=%28none%29", '"(none)"': "project=%22%28none%29%22"}),
        ("tag:team", {'"(core)"': "tag=team%3D%28core%29", "(none)": None}),
        ("model", {"gemini-3.1-pro-preview (requested gemini-3.1-pro)": "model=gemini-3.1-pro-preview"}),
    ):
        page = client.get("/spend", params={"period": "2026-11", "tz": "UTC", "by": by})
        links = dict(re.findall(r'<tr class="group"><td title="([^"]*)">.*?<td>(?:<a href="([^"]+)">)?', page.text,
                                re.S))
        for label, parameter in expected.items():
            link = links[label.replace('"', "&#34;")]  # the title attribute, escaped
            if parameter is None:
                assert link == "", page.text
            else:
                assert unescape(link).endswith(f"tz=UTC&{parameter}"), link
                assert client.get(unescape(link)).status_code == 200


def test_the_views_project_filter_is_a_name_and_its_calls_link_the_label_calls_reads(ledger, client_as):
    insert(ledger, [call_values(started_at=NOV, project="(none)", charged="3"), call_values(started_at=NOV, project=None)])
    page = client_as(FINANCE).get("/spend", params={"period": "2026-11", "tz": "UTC", "project": "(none)"})
    (total,) = table_rows(page.text, "total")
    assert total[4] == "3"  # the project named "(none)", not the call of no project
    total_link = re.search(r'<tr class="total">.*?<a href="([^"]+)">', page.text, re.S).group(1)
    assert unescape(total_link) == "/calls?period=2026-11&tz=UTC&project=%22%28none%29%22"
