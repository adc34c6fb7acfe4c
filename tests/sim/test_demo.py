"""`credit-ledger demo` end to end: simulator, openai SDK, recorder, ledger, check, reconcile."""

from __future__ import annotations

import io
import json

import openpyxl
import pytest

from sqlalchemy import func, select

from ledger.sim import demo
from ledger.cli import main
from ledger.store.engine import Ledger
from ledger.store.models import Call


@pytest.fixture(autouse=True)
def _writer_thread(tmp_path, monkeypatch) -> None:
    # The demo's recorder writes from a thread here: the writer processes are test_writer's subject.
    config = tmp_path / "writer-thread.toml"
    config.write_text("[recorder]\nwriter_processes = 0\n")
    monkeypatch.setenv("CREDIT_LEDGER_CONFIG", str(config))


def run(argv) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def test_demo_finds_every_injected_fault_and_nothing_else(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, text = run(["--database-url", database_url, "demo", "--calls", "60"])
    assert code == 0, text
    for fault, klass in demo.EXPECTED_CLASS.items():
        assert any(line.split()[:3] == [fault, klass, klass] and line.rstrip().endswith("found") for line in text.splitlines()), fault
    assert "clean calls flagged: 0 of" in text
    assert "verdict: reconciled" in text
    # One budget and one balance alert, evaluated and delivered to the log.
    fired = [line for line in text.splitlines() if line.startswith("raised: ")]
    assert any(line.startswith("raised: balance:demo-") and line.endswith(":below:1") for line in fired), text
    assert any(line.startswith("raised: budget:demo-") and ":50:" in line for line in fired), text
    assert text.count(" to demo-log (attempt 1): delivered, logged") == len(fired)
    # It ends with its run's workbook: every call of the run, by project and model.
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("Excel report of this run: reports/demo-") and last.endswith("-by-project-model.xlsx")
    book = openpyxl.load_workbook(tmp_path / last.split(": ", 1)[1])
    assert book["Calls"].max_row == 61 and {"Summary", "By project", "By model", "Daily"} <= set(book.sheetnames)
    with Ledger(database_url, must_exist=True) as ledger, ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 60
        projects = set(session.scalars(select(Call.project).distinct()))
        assert projects == set(demo.PROJECTS)
        # sync and async, streaming and not, both efforts, all through the recorder
        assert set(session.scalars(select(Call.stream).distinct())) == {True, False}
        assert set(session.scalars(select(Call.reasoning_effort).distinct())) == {"low", "high"}

    # The check command agrees with the demo: the eight faults, nothing else.
    code, text = run(["--database-url", database_url, "check", "--json"])
    assert code == 0
    findings = json.loads(text)["findings"]
    assert sorted(f["pricing_class"] for f in findings) == sorted(demo.EXPECTED_CLASS.values())


def test_a_second_demo_in_the_same_ledger_reconciles_on_its_own(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["--database-url", database_url, "demo", "--calls", "20"])[0] == 0
    code, text = run(["--database-url", database_url, "demo", "--calls", "20", "--seed", "3"])
    assert code == 0, text
    # Each run is its own account: the ledger-wide reconciliation is clean too.
    code, text = run(["--database-url", database_url, "reconcile"])
    assert code == 0, text
    assert text.count("cumulative") == 2


def test_the_demo_fails_loudly_when_a_fault_is_not_found_as_expected(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(demo.EXPECTED_CLASS, "overcharge", "undercharge")
    code, text = run(["--database-url", database_url, "demo", "--calls", "20"])
    assert code == 1
    assert "demo: FAILED: injected overcharge was not found as undercharge" in text


def test_the_workload_is_deterministic_and_holds_every_fault():
    a, b = demo.workload(50, seed=5), demo.workload(50, seed=5)
    assert a == b and len(a) == 50
    injected = [s.injected for s in a if s.injected]
    assert sorted(injected) == sorted([*demo.EXPECTED_CLASS, *demo.CLEAN_ODDITIES])
    assert {s.asynchronous for s in a} == {True, False} and {s.by_header for s in a} == {True, False}
    assert next(s for s in a if s.fault == "cut_stream").stream
    assert not next(s for s in a if s.fault == "malformed_body").stream
