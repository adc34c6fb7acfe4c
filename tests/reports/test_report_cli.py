"""`credit-ledger report`, `close`, `calls`: bad input gets one line and a non-zero exit, and nothing is written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from ledger_rows import call_values, insert

from ledger.cli import main
from ledger.reports.calls import CALL_FIELDS, write_calls
from ledger.store.engine import Ledger


def run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_LEDGER_DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "ledger.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["report", "--period", "2026-13"], 2, "no such period: '2026-13'"),
        (["report", "--period", "2026-W54"], 2, "no such period"),
        (["report", "--by", "project,colour"], 2, "unknown group key 'colour'"),
        (["report", "--by", "tag:a b"], 2, "not a tag name"),
        (["report", "--tz", "Mars/Olympus"], 2, "unknown time zone 'Mars/Olympus'"),
        (["report", "--period", "2026-11", "--from", "2026-11-01"], 2, "not both"),
        (["report", "--from", "2026-12-01", "--to", "2026-11-01"], 2, "--from must come before --to"),
        (["report", "--format", "csv", "--calls"], 2, "--calls is for --format xlsx"),
        (["report", "--format", "xlsx", "--output", "missing/november.xlsx"], 1, "no such folder for the report: missing"),
        (["report", "--format", "xlsx", "--output", "-"], 1, "a workbook goes to a file"),
        (["close", "2026-11", "--tz", "Nowhere"], 2, "unknown time zone"),
        (["close", "2026-11", "--accept-gap", " "], 1, "--accept-gap needs a reason"),
        (["reopen", "2026-11"], 2, "the following arguments are required: --reason"),
        (["report", "--account", "prdo"], 1, "unknown account 'prdo' (known: none"),
    ],
)
def test_bad_report_input_gets_one_line_and_nothing_is_written(tmp_path, args, code, message):
    assert main(["--database-url", f"sqlite:///{tmp_path / 'ledger.db'}", "db", "upgrade"], out=io.StringIO()) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(args, tmp_path)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_without_output_a_file_lands_in_the_reports_folder_and_its_path_is_printed(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=datetime(2026, 11, 3, tzinfo=timezone.utc))])
    (tmp_path / "credit-ledger.toml").write_text('reports_dir = "finance/out"\ntimezone = "Europe/Berlin"\n')
    out = io.StringIO()
    assert main(["--database-url", database_url, "report", "--period", "2026-11", "--by", "user", "--format", "csv"], out=out) == 0
    assert out.getvalue() == "wrote finance/out/spend-2026-11-Europe-Berlin-by-user.csv\n"
    assert sorted(p.name for p in (tmp_path / "finance" / "out").iterdir()) == ["spend-2026-11-Europe-Berlin-by-user.csv"]


def test_calls_streams_rows_as_they_come(ledger):
    """The first chunk is written before the second is read (and a failing source leaves what was written)."""
    out = io.StringIO()
    rows = [tuple(call_values(started_at=datetime(2026, 11, 3, tzinfo=timezone.utc) + timedelta(seconds=i))) for i in range(2)]

    def chunks():
        yield [("c1", "2026-11-03 10:00:00.000000", "completed", 200, None, "chatcmpl-1", "gemini-3.1-pro",
                "gemini-3.1-pro-preview", 1, 0, 194, 229, 457, 880, 250_000_000, 250_880_000, "rounding", "=cmd", "u-1",
                '{"feature": "chat"}', "Zq9x", None)]
        assert out.getvalue().count("\n") == 2  # the header and the first row are out already
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        write_calls(chunks(), "csv", out)
    header, first = out.getvalue().splitlines()
    assert header == ",".join(CALL_FIELDS)
    assert first == ("c1,2026-11-03T10:00:00Z,completed,200,,chatcmpl-1,gemini-3.1-pro,gemini-3.1-pro-preview,yes,0,194,229,"
                     "457,880,0.25,0.25088,rounding,'=cmd,u-1,\"{\"\"feature\"\": \"\"chat\"\"}\",Zq9x,")
    assert rows  # (the ledger fixture made the schema)


def test_calls_json_and_csv_list_the_same_calls(database_url):
    import csv
    import json

    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=datetime(2026, 11, 3, tzinfo=timezone.utc) + timedelta(minutes=i),
                                    project=f"p{i}", tags={"k": str(i)}, anomalies="truncated_project" if i == 2 else None)
                        for i in range(5)])
    as_json, as_csv, newest = io.StringIO(), io.StringIO(), io.StringIO()
    assert main(["--database-url", database_url, "calls", "--format", "json"], out=as_json) == 0
    assert main(["--database-url", database_url, "calls", "--format", "csv"], out=as_csv) == 0
    assert main(["--database-url", database_url, "calls", "--format", "csv", "--limit", "2"], out=newest) == 0
    listed = json.loads(as_json.getvalue())
    rows = list(csv.DictReader(io.StringIO(as_csv.getvalue())))
    assert [c["project"] for c in listed] == [r["project"] for r in rows] == ["p0", "p1", "p2", "p3", "p4"]
    assert listed[2]["anomalies"] == ["truncated_project"] and listed[0]["tags"] == {"k": "0"}
    assert listed[0]["credits_charged"] == "0.25" and listed[0]["stream"] is True
    assert listed[0]["started_at"] == "2026-11-03T00:00:00+00:00" and rows[0]["started_at"] == "2026-11-03T00:00:00Z"
    assert [r["project"] for r in csv.DictReader(io.StringIO(newest.getvalue()))] == ["p3", "p4"]


@pytest.mark.parametrize("args", [
    ["--from", "1970-01-01", "--to", "2027-01-01", "--by", "week"],  # 1970-W01 starts on 29 December 1969
    ["--from", "1970-01-01", "--to", "1971-01-01", "--by", "day", "--tz", "America/St_Johns"],  # 31 December 1969 there
    ["--from", "1970-01-01", "--to", "1972-01-01", "--by", "month,week", "--tz", "Pacific/Kiritimati"],
])
def test_a_range_at_the_ledgers_first_or_last_year_groups_by_time_in_any_zone(tmp_path, args):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        insert(ledger, [call_values(started_at=datetime(1970, 1, 1, 5, tzinfo=timezone.utc))])
    result = run(["report", *args, "--format", "csv", "--output", "-"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") >= 3 and "Traceback" not in result.stderr


def test_more_time_groups_than_a_report_holds_is_one_line(tmp_path):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"):
        pass
    result = run(["report", "--from", "1999-01-01", "--to", "2026-05-20", "--by", "day"], tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ("credit-ledger: more than 10000 day groups in one report: "
                             "choose a coarser key (week, month) or a shorter period\n")


def test_calls_and_the_demo_summary_tell_no_project_from_an_empty_one(database_url):
    """A call without a project (NULL) and one with "" are apart in every listing, as in the reports."""
    import csv
    import json

    from ledger.sim.demo import spend_per_project

    start = datetime(2026, 11, 3, tzinfo=timezone.utc)
    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=start + timedelta(minutes=i), project=p, end_user=u)
                        for i, (p, u) in enumerate([(None, None), ("", ""), ("(none)", "(empty)")])])
        with ledger.session() as session:
            summary = spend_per_project(session, start)
    listed = {}
    for fmt in ("json", "csv", "table"):
        out = io.StringIO()
        assert main(["--database-url", database_url, "calls", "--format", fmt], out=out) == 0
        listed[fmt] = out.getvalue()
    assert [(c["project"], c["user"]) for c in json.loads(listed["json"])] == [(None, None), ("", ""), ("(none)", "(empty)")]
    rows = list(csv.DictReader(io.StringIO(listed["csv"])))
    assert [(r["project"], r["user"]) for r in rows] == [("(none)", "(none)"), ("(empty)", "(empty)"),
                                                         ('"(none)"', '"(empty)"')]
    table_rows = listed["table"].splitlines()[2:5]
    assert [line.split()[-2:] for line in table_rows] == [["(none)", "(none)"], ["(empty)", "(empty)"],
                                                           ['"(none)"', '"(empty)"']]
    assert sorted(line.split()[0] for line in summary.splitlines()[2:]) == ['"(none)"', "(empty)", "(none)"]
