"""Every CSV the ledger writes (the spend report, FOCUS, the calls), with hostile caller text, read back two ways.

The caller's text holds line breaks, quotes, separators and each way a
spreadsheet may start a formula. Python's csv reader must find every value in
its own column; LibreOffice, importing with formulas evaluated and spaces
trimmed (the most trusting settings), must show no formula and the same
cells. LibreOffice converts the three files in one run: it is slow.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import unicodedata
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_rows import call_values, insert, register

from ledger.cli import main
from ledger.store.engine import Ledger

NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)
HOSTILE = (
    "x\r=2+3", "a\nb=1", "cr\r\nlf", 'say "hi", then', "a;b,c", " =2+3", "\u3000=1+1", "＝2+3", "+1", "-1", "@SUM(A1)",
    "\t=1", "\r=1+1", "﹦3", "plain",
)
LABEL = "=cmd|' /C calc'!A0"
# LibreOffice's CSV import options: comma, double quote, UTF-8, from line 1, en-US, quoted fields not forced to text,
# no special numbers, trim spaces, evaluate formulas.
LIBREOFFICE_CSV = "CSV:44,34,76,1,,1033,false,false,false,false,true,-1,true"


def runs_as_formula(text: str) -> bool:
    """What a trusting spreadsheet may run: a formula sign first once blanks are gone, in any width."""
    first = text.lstrip()[:1]
    return text[:1] in ("\t", "\r") or unicodedata.normalize("NFKC", first) in ("=", "+", "-", "@")


def shown(text: str) -> str:
    return "'" + text if runs_as_formula(text) else text


def charged(i: int) -> Decimal:
    return Decimal(i + 1) / 8


def write_files(url: str, folder: Path) -> dict[str, Path]:
    """A ledger with one call per hostile text (as project, user, tag and key label), and its three CSVs."""
    with Ledger(url) as ledger:
        register(ledger, "a" * 64, "Ab12", LABEL, "prod")
        insert(ledger, [
            call_values(call_id=f"call-{i:04d}", started_at=NOV + timedelta(hours=i), project=text, end_user=text,
                        tags={"feature": text}, key_fingerprint="a" * 64, charged=charged(i), expected=charged(i))
            for i, text in enumerate(HOSTILE)
        ])
    files = {name: folder / name for name in ("spend.csv", "focus.csv", "calls.csv")}
    for name, argv in (("spend.csv", ["--by", "project,user,tag:feature", "--format", "csv"]),
                       ("focus.csv", ["--format", "focus"])):
        out = io.StringIO()
        assert main(["--database-url", url, "report", "--period", "2026-11", *argv, "--output", str(files[name])],
                    out=out) == 0, out.getvalue()
    out = io.StringIO()
    assert main(["--database-url", url, "calls", "--format", "csv"], out=out) == 0
    files["calls.csv"].write_text(out.getvalue(), encoding="utf-8", newline="")
    return files


def read(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def records(path: Path) -> list[dict]:
    rows = read(path)
    assert all(len(r) == len(rows[0]) for r in rows), [len(r) for r in rows]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def check_columns(files: dict[str, Path]) -> None:
    """Each caller's text in its column (neutralised where it would run), each call's credits beside it."""
    spend = [r for r in records(files["spend.csv"]) if r["row"] == "group"]
    assert len(spend) == len(HOSTILE)
    for i, text in enumerate(HOSTILE):
        (group,) = [r for r in spend if r["project"] == shown(text)]
        assert (group["user"], group["tag:feature"], group["calls"]) == (shown(text), shown(text), "1")
        assert Decimal(group["credits_charged"]) == charged(i)
    usage = [r for r in records(files["focus.csv"]) if r["ChargeCategory"] == "Usage"]
    by_project: dict[str, Decimal] = {}
    for row in usage:
        tags = json.loads(row["Tags"])
        assert tags["feature"] == tags["ledger/project"] and row["SubAccountName"] == shown(LABEL)
        by_project[tags["ledger/project"]] = by_project.get(tags["ledger/project"], Decimal(0)) + Decimal(
            row["PricingCurrencyEffectiveCost"])
    assert by_project == {text: charged(i) for i, text in enumerate(HOSTILE)}
    calls = records(files["calls.csv"])
    assert [(c["call_id"], c["project"], c["user"], Decimal(c["credits_charged"])) for c in calls] == [
        (f"call-{i:04d}", shown(text), shown(text), charged(i)) for i, text in enumerate(HOSTILE)]
    for path in files.values():
        assert not any(runs_as_formula(cell) for row in read(path) for cell in row), path.name


def test_every_csv_reads_back_with_each_value_in_its_column(database_url, tmp_path):
    check_columns(write_files(database_url, tmp_path))


def _as_written(value, text: str) -> bool:
    """A LibreOffice cell against the CSV's text: numbers as numbers, text as text (line breaks as LF, spaces trimmed)."""
    if value is None:
        return text.strip(" ") == ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(text) == Decimal(repr(float(value))) or float(text) == value
    return str(value).replace("\r\n", "\n").replace("\r", "\n") == text.replace("\r\n", "\n").replace("\r", "\n").strip(" ")


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed; .ci/run installs it")
def test_libreoffice_opens_every_csv_without_a_formula_and_each_value_in_its_column(database_url, tmp_path):
    import openpyxl

    files = write_files(database_url, tmp_path)
    converted = tmp_path / "converted"
    command = ["soffice", f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}", "--headless",
               f"--infilter={LIBREOFFICE_CSV}", "--convert-to", "xlsx", "--outdir", str(converted), *map(str, files.values())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    for name, path in files.items():
        book = openpyxl.load_workbook(converted / (path.stem + ".xlsx"))
        sheet = book.worksheets[0]
        expected = read(path)
        cells = list(sheet.iter_rows())
        assert len(cells) == len(expected), name
        for row, want in zip(cells, expected):
            assert [c for c in row if c.data_type == "f"] == [], (name, [c.value for c in row])
            values = [c.value for c in row][: len(want)] + [None] * (len(want) - len(row))
            assert all(_as_written(v, t) for v, t in zip(values, want)), (name, values, want)
            assert all(c.value is None for c in row[len(want):]), (name, [c.value for c in row])
