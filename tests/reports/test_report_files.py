"""`credit-ledger report` files: CSV (schema 1), JSON, the workbook read back with openpyxl, formula injection neutralised."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from ledger_rows import call_values, insert, register

from ledger.cli import main
from ledger.config.reports import FORMATS
from ledger.reports import xlsx_rows
from ledger.reports.files import EXTENSIONS
from ledger.reports.spend_out import CSV_COLUMNS
from ledger.store.engine import Ledger

HOSTILE = '=HYPERLINK("http://x","y")'
NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def month(database_url, tmp_path, monkeypatch):
    """November 2026 (UTC): 3 projects (one hostile), two keys, tags, one overcharge; and a call in December."""
    monkeypatch.chdir(tmp_path)
    with Ledger(database_url) as ledger:
        register(ledger, "a" * 64, "Ab12", "backend", "prod")
        rows = []
        for i in range(30):
            rows.append(call_values(
                started_at=NOV + timedelta(hours=11 * i), project=["search", "support", HOSTILE][i % 3],
                end_user=f"u-{i % 4}", tags={"feature": ["chat", "summary"][i % 2]} if i % 5 else None,
                key_fingerprint="a" * 64 if i % 2 else "b" * 64, key_last4="Ab12" if i % 2 else "Cd34",
                charged="1.25" if i != 7 else "9.5", expected="1.25088" if i != 7 else "1.25088",
                pricing_class="rounding" if i != 7 else "overcharge"))
        rows.append(call_values(started_at=datetime(2026, 12, 2, tzinfo=timezone.utc)))
        insert(ledger, rows)
    return database_url


def run(*argv) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def written(text: str):
    line = next(line for line in text.splitlines() if line.startswith("wrote "))
    return line.split(" ", 1)[1].split(" (")[0]


def test_csv_has_the_fixed_schema_one_row_per_group_and_a_total_and_neutralised_text(month):
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--by", "project,tag:feature", "--format", "csv")
    assert code == 0, text
    path = written(text)
    assert path.startswith("reports/spend-2026-11-UTC-by-project-tag-feature") and path.endswith(".csv")
    with open(path, encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0][: len(CSV_COLUMNS)]) == CSV_COLUMNS and rows[0][len(CSV_COLUMNS):] == ["project", "tag:feature"]
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    groups = [r for r in body if r["row"] == "group"]
    (total,) = [r for r in body if r["row"] == "total"]
    assert sum(int(g["calls"]) for g in groups) == int(total["calls"]) == 30
    assert sum(Decimal(g["credits_charged"]) for g in groups) == Decimal(total["credits_charged"]) == Decimal("1.25") * 29 + Decimal("9.5")
    assert Decimal(total["usd"]) == Decimal(total["credits_charged"]) * Decimal("0.005")
    hostile = [g for g in groups if "HYPERLINK" in g["project"]]
    assert hostile and all(g["project"] == "'" + HOSTILE and g["group"].startswith("'=") for g in hostile)
    assert all(not cell.startswith(("=", "+", "@")) for r in rows[1:] for cell in r)


def test_json_is_one_document_with_exact_amounts_as_strings(month):
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--by", "key", "--format", "json", "--output", "-")
    assert code == 0
    doc = json.loads(text)
    assert doc["period"] == {"label": "2026-11", "kind": "month", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
                             "zone": "UTC"}
    assert doc["group_by"] == ["key"] and doc["empty"] is False
    assert {g["key"]["key"] for g in doc["groups"]} == {"backend", "…Cd34"}
    assert doc["totals"]["credits_charged"] == "45.75" and doc["totals"]["findings"] == 1
    assert sum(Decimal(g["credits_charged"]) for g in doc["groups"]) == Decimal("45.75")
    assert doc["close"] is None and doc["adjustments"] == []


def test_the_table_says_when_a_period_has_no_calls(month):
    code, text = run("--database-url", month, "report", "--period", "2026-10")
    assert code == 0 and "no calls in this period" in text
    code, text = run("--database-url", month, "report", "--period", "2026-10", "--format", "json", "--output", "-")
    assert json.loads(text)["empty"] is True and json.loads(text)["totals"]["calls"] == 0


def test_the_workbook_reads_back_numeric_with_a_chart_no_formula_and_the_hostile_name_as_text(month, tmp_path):
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--tz", "Europe/Berlin", "--by",
                     "project,model", "--format", "xlsx", "--calls", "--output", str(tmp_path / "nov.xlsx"))
    assert code == 0, text
    assert written(text) == str(tmp_path / "nov.xlsx")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    book = openpyxl.load_workbook(tmp_path / "nov.xlsx")
    assert book.sheetnames == ["Summary", "By project", "By model", "By project, model", "Daily", "Findings", "Calls"]
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)  # no formula anywhere
    by_project = book["By project"]
    assert by_project.freeze_panes == "A2" and by_project.auto_filter.ref == "A1:L4"
    header = [c.value for c in by_project[1]]
    assert header[:2] == ["project", "calls"]
    projects = {r[0].value: r for r in by_project.iter_rows(min_row=2, max_row=4)}
    assert HOSTILE in projects and projects[HOSTILE][0].data_type == "s"
    assert all(isinstance(c.value, (int, float)) for r in projects.values() for c in r[1:11])
    assert projects["search"][6].number_format == "#,##0.00#######"  # credits charged
    total = [c.value for c in by_project[5]]
    assert total[0] == "total" and total[1] == 30 and total[6] == pytest.approx(45.75)

    daily = book["Daily"]
    assert len(daily._charts) == 1
    assert daily["A2"].is_date and daily["A2"].value == datetime(2026, 11, 1)
    assert daily.max_row == 31  # the header and November's 30 days in Berlin

    calls = book["Calls"]
    assert calls.max_row == 31 and calls.auto_filter.ref == "A1:U31" and calls.freeze_panes == "A2"
    first = [c.value for c in calls[2]]
    assert first[1] == datetime(2026, 11, 1, 1, 0) and calls["B2"].is_date  # 00:00 UTC is 01:00 in Berlin
    assert isinstance(first[10], float) and first[10] == 1.25 and calls["K2"].number_format == "#,##0.00#######"
    assert HOSTILE in [c.value for c in calls["N"]]
    findings = book["Findings"]
    assert findings.max_row == 2 and findings["C2"].value == "overcharge" and findings["F2"].value == pytest.approx(8.24912)
    summary = {r[0].value: r[1].value for r in book["Summary"].iter_rows() if r[0].value}
    assert summary["period"] == "2026-11" and summary["zone"] == "Europe/Berlin"
    assert summary["reconciliation"] == "nothing to reconcile (no balance snapshots)"


def test_calls_past_the_row_limit_go_on_to_more_sheets(month, tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_rows, "EXCEL_ROWS", 13)  # 12 calls a sheet
    from ledger.reports import xlsx

    monkeypatch.setattr(xlsx, "EXCEL_ROWS", 13)
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--format", "xlsx", "--calls",
                     "--output", str(tmp_path / "x.xlsx"))
    assert code == 0, text
    book = openpyxl.load_workbook(tmp_path / "x.xlsx")
    parts = [book[n] for n in ("Calls", "Calls 2", "Calls 3")]
    assert [p.max_row for p in parts] == [13, 13, 7]
    ids = [c.value for p in parts for c in p["A"][1:]]
    assert len(ids) == len(set(ids)) == 30
    assert [p.auto_filter.ref for p in parts] == ["A1:U13", "A1:U13", "A1:U7"]


def test_a_report_that_fails_half_way_leaves_no_file(month, tmp_path, monkeypatch):
    from ledger.reports import xlsx

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(xlsx, "assemble", broken)
    code, _ = run("--database-url", month, "report", "--period", "2026-11", "--format", "xlsx", "--output", str(tmp_path / "y.xlsx"))
    assert code == 1
    assert [p.name for p in tmp_path.iterdir() if "y.xlsx" in p.name] == []


def test_streamed_xml_escapes_markup_and_control_characters():
    cell = xlsx_rows._text_cell("a<b&c\x01_x0041_ ")
    assert cell == '<c t="inlineStr"><is><t xml:space="preserve">a&lt;b&amp;c_x0001__x005F_x0041_ </t></is></c>'
    assert xlsx_rows._text_cell("=1+1") == '<c t="inlineStr"><is><t>=1+1</t></is></c>'  # a string cell, not a formula


def test_the_workbook_is_a_valid_package(month, tmp_path):
    assert run("--database-url", month, "report", "--period", "2026-11", "--format", "xlsx", "--output", str(tmp_path / "z.xlsx"))[0] == 0
    with zipfile.ZipFile(tmp_path / "z.xlsx") as archive:
        assert archive.testzip() is None
        assert "xl/charts/chart1.xml" in archive.namelist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_report_format_goes_to_a_file_or_a_folder_under_its_own_extension(month, tmp_path, fmt):
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--format", fmt, "--output", str(tmp_path))
    assert code == 0, text
    path = written(text)
    assert path.endswith(f"spend-2026-11-UTC.{EXTENSIONS[fmt]}") and (tmp_path / path.rsplit("/", 1)[1]).stat().st_size > 0
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--format", fmt,
                     "--output", str(tmp_path / f"named.{EXTENSIONS[fmt]}"))
    assert code == 0, text
    assert written(text) == str(tmp_path / f"named.{EXTENSIONS[fmt]}")


def test_a_table_written_to_a_file_is_the_table_the_terminal_shows(month, tmp_path):
    code, shown = run("--database-url", month, "report", "--period", "2026-11", "--by", "project")
    assert code == 0 and "45.75" in shown
    code, text = run("--database-url", month, "report", "--period", "2026-11", "--by", "project",
                     "--output", str(tmp_path / "nov.txt"))
    assert code == 0, text
    assert (tmp_path / "nov.txt").read_text(encoding="utf-8") == shown
