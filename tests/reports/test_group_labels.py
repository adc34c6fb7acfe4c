"""No project, an empty project and a project named `(none)` are three groups in every report format, shown
with labels that cannot be mistaken for each other, and the groups still add up to the total."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from ledger_rows import call_values, insert

from ledger.cli import main
from ledger.terminal import printable
from ledger.store.engine import Ledger

NOV = datetime(2026, 11, 2, tzinfo=timezone.utc)
# project -> (credits charged, the label every report gives it); each charge distinct, so a merge shows in the sums
PROJECTS = {
    None: ("1", "(none)"), "": ("2", "(empty)"), "(none)": ("4", '"(none)"'), "(empty)": ("8", '"(empty)"'),
    "multi\nline": ("16", "multi\nline"), " search": ("32", " search"), "search": ("64", "search"),
}
ONE_LINE = {"multi\nline": '"multi\\nline"'}  # as a spreadsheet cell shows it: one line, no row drawn over
TOTAL = Decimal(127)


@pytest.fixture
def ledger_url(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=NOV + timedelta(hours=i), project=project, charged=charged,
                                    end_user=project, tags={"team": project} if project is not None else None)
                        for i, (project, (charged, _)) in enumerate(PROJECTS.items())])
    return database_url


def report(url, *args) -> str:
    out = io.StringIO()
    assert main(["--database-url", url, "report", "--period", "2026-11", *args], out=out) == 0, out.getvalue()
    return out.getvalue()


EXPECTED = {label: Decimal(charged) for charged, label in PROJECTS.values()}


@pytest.mark.parametrize("key", ["project", "user", "tag:team"])
def test_csv_and_json_groups_are_distinct_and_add_up(ledger_url, key):
    rows = list(csv.DictReader(io.StringIO(report(ledger_url, "--by", key, "--format", "csv", "--output", "-"))))
    groups = {r[key]: Decimal(r["credits_charged"]) for r in rows if r["row"] == "group"}
    assert groups == EXPECTED
    assert sum(groups.values()) == Decimal(next(r for r in rows if r["row"] == "total")["credits_charged"]) == TOTAL
    document = json.loads(report(ledger_url, "--by", key, "--format", "json", "--output", "-"), parse_float=Decimal)
    assert {g["key"][key]: Decimal(g["credits_charged"]) for g in document["groups"]} == EXPECTED


def test_the_table_shows_each_group_on_one_line(ledger_url):
    lines = report(ledger_url, "--by", "project").splitlines()
    for label in EXPECTED:
        assert sum(line.startswith(printable(label) + " ") for line in lines) == 1, (label, lines)


def test_the_workbook_sheets_and_the_charts_legend_name_each_group(ledger_url, tmp_path):
    report(ledger_url, "--by", "project", "--format", "xlsx", "--output", str(tmp_path / "n.xlsx"))
    book = openpyxl.load_workbook(tmp_path / "n.xlsx")
    by_project = {row[0]: Decimal(str(row[6])) for row in book["By project"].iter_rows(min_row=2, values_only=True)}
    shown = {ONE_LINE.get(label, label): credits for label, credits in EXPECTED.items()}
    assert by_project.pop("total") == TOTAL and by_project == shown
    legend = [c.value for c in book["Daily"][1]][1:-1]  # the series' names: the chart's legend
    assert sorted(legend) == sorted(shown) and all(legend) and not any("\n" in v for v in legend)


def test_focus_tags_no_project_apart_from_an_empty_one(ledger_url):
    rows = list(csv.DictReader(io.StringIO(report(ledger_url, "--format", "focus", "--output", "-"))))
    usage = [r for r in rows if r["ChargeCategory"] == "Usage"]
    by_project: dict = {}
    for row in usage:
        project = json.loads(row["Tags"]).get("ledger/project") if row["Tags"] else None
        cost = Decimal(row["PricingCurrencyEffectiveCost"])
        by_project[project] = by_project.get(project, 0) + cost
    assert by_project == {project: Decimal(charged) for project, (charged, _) in PROJECTS.items()}
