"""The workbook as a finance person sees and prints it: every figure fits its column, every sheet prints
landscape, one page wide, its header row on each page; the Summary says what each figure covers."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import openpyxl
import pytest
from ledger_rows import call_values, insert, register, snapshot

from ledger.cli import main
from ledger.reports.xlsx import NUMBER_FORMATS, shown_width
from ledger.store.engine import Ledger

NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)
PROJECTS = ["search", "support", None, "", "(none)", "multi\nline"]


@pytest.fixture
def workbook(database_url, tmp_path, monkeypatch):
    """400 calls of November (UTC) over six projects, one balance snapshot: the workbook with every call."""
    monkeypatch.chdir(tmp_path)
    with Ledger(database_url) as ledger:
        register(ledger, "f" * 64, "Zq9x", "backend", "prod")
        insert(ledger, [call_values(started_at=NOV + timedelta(minutes=97 * i), project=PROJECTS[i % 6],
                                    end_user=f"u-{i % 5}", charged="0.25") for i in range(400)])
        snapshot(ledger, "prod", NOV + timedelta(days=10), 1000, 400)
    path = tmp_path / "november.xlsx"
    out = io.StringIO()
    assert main(["--database-url", database_url, "report", "--period", "2026-11", "--by", "project", "--format", "xlsx",
                 "--calls", "--output", str(path)], out=out) == 0, out.getvalue()
    return path


def summary_rows(book) -> list[tuple]:
    return [tuple(v for v in row if v is not None) for row in book["Summary"].iter_rows(values_only=True)]


def test_every_figure_fits_its_column_the_total_rows_share_too(workbook):
    book = openpyxl.load_workbook(workbook)
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                kind = next((k for k, f in NUMBER_FORMATS.items() if f == cell.number_format), None)
                if kind is None or cell.value is None or kind in ("date", "datetime"):
                    continue
                width = ws.column_dimensions[cell.column_letter].width
                assert width >= shown_width(cell.value, kind) * (1.15 if cell.font.b else 1), (ws.title, cell.coordinate)
    total = [row for row in book["By project"].iter_rows(values_only=True) if row[0] == "total"][0]
    assert total[-1] == 1  # the share column of the total row: 100.00%, in a column that holds it


def test_every_sheet_prints_landscape_one_page_wide_with_its_header_row_on_each_page(workbook):
    book = openpyxl.load_workbook(workbook)
    assert [ws.title for ws in book.worksheets] == ["Summary", "By project", "Daily", "Findings", "Calls"]
    for ws in book.worksheets:
        setup = ws.page_setup
        assert (setup.orientation, setup.fitToWidth or 1, setup.fitToHeight) == ("landscape", 1, 0), ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        assert ws.print_title_rows == "$1:$1", ws.title
        assert "page &P of &N" in ws.oddFooter.center.text and ws.oddHeader.right.text == "&A", ws.title


def test_the_summary_says_what_each_figure_covers_and_why_one_snapshot_is_no_reconciliation(workbook):
    rows = summary_rows(openpyxl.load_workbook(workbook))
    labels = [row[0] for row in rows if row]
    assert labels.count("from (UTC)") == 1 and labels.count("to (UTC)") == 1  # a UTC report: its bounds once
    assert any(row[:1] == ("total (calls started in the period)",) for row in rows)
    assert ("prod: one snapshot in the period: a reconciliation needs two",) in rows
    headers = next(row for row in rows if "opening balance" in row)
    assert "charged (ledger, opening to closing)" in headers and "consumed (platform, opening to closing)" in headers
    assert any(row and row[0].startswith("charged (ledger): the calls between") for row in rows)


def test_a_berlin_report_gives_its_local_bounds_and_the_utc_ones(database_url, tmp_path):
    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=NOV + timedelta(days=3))])
    path = tmp_path / "berlin.xlsx"
    assert main(["--database-url", database_url, "report", "--period", "2026-11", "--tz", "Europe/Berlin",
                 "--format", "xlsx", "--output", str(path)], out=io.StringIO()) == 0
    labels = [row[0] for row in summary_rows(openpyxl.load_workbook(path)) if row]
    assert [label for label in labels if label.startswith(("from (", "to ("))] == [
        "from (Europe/Berlin)", "to (Europe/Berlin)", "from (UTC)", "to (UTC)"]


@pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice); .ci/run installs it")
def test_libreoffice_prints_400_calls_on_a_few_landscape_pages(workbook, tmp_path):
    """As printed to PDF by LibreOffice: a page per sheet and a few for the calls, not dozens with columns split."""
    profile = tmp_path / "lo-profile"  # a profile of its own: another soffice running at the same time is no matter
    subprocess.run(["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(workbook)], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "HOME": str(tmp_path)})
    pdf = (tmp_path / "november.pdf").read_bytes()
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    boxes = [tuple(map(float, box)) for box in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)]
    assert 5 <= len(pages) <= 10, len(pages)  # 78 portrait pages before (36 without the Calls sheet)
    assert boxes and all(width > height for width, height in boxes), boxes


def test_the_row_sheets_show_caller_text_on_one_line_as_the_groups_show_it(workbook):
    calls = openpyxl.load_workbook(workbook)["Calls"]
    header = [c.value for c in calls[1]]
    projects = {row[header.index("project")] for row in calls.iter_rows(min_row=2, values_only=True)}
    assert projects == {"search", "support", "(none)", "(empty)", '"(none)"', '"multi\\nline"'}
