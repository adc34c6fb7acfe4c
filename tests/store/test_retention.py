"""Retention: raw calls of closed periods deleted after [retention] calls_days, the closed periods' reports, totals
and digests unchanged, and the row-level outputs saying that rows are gone."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import openpyxl
import pytest
from factories import make_capture
from ledger_rows import call_values, insert
from sqlalchemy import func, select

from ledger.accounting.periods import parse_period
from ledger.cli import main
from ledger.commands import retention as retention_command
from ledger.accounting.records import CallRecord
from ledger.config import Settings, settings_from_mapping
from ledger.errors import ConfigError
from ledger.service import closing
from ledger.service.jobs import default_jobs
from ledger.accounting.budgets import Scope
from ledger.store import budgets, retention
from ledger.sink.journal import Journal
from ledger.sink.segments import segment_paths
from ledger.sink.wire import encode
from ledger.sink.writer import replay_journal
from ledger.store.calls import CALL_COLUMNS, insert_rows
from ledger.store.models import Call, CallRollup, RetentionRun
from ledger.store.rollup_tables import QUARTERLY, TABLES

APRIL = datetime(2026, 4, 1, tzinfo=timezone.utc)
CUTOFF = datetime(2026, 5, 11, 9, 7, 30, tzinfo=timezone.utc)  # April's close: its recorded bucket starts at 09:00
LATER = datetime(2026, 12, 1, tzinfo=timezone.utc)  # retention runs then, calls_days = 30: 2026-11-01 is the horizon


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)


def run(url: str, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--database-url", url, *argv], out=out), out.getvalue()


def _april_ledger(ledger) -> dict[str, str]:
    """April's calls (closed at CUTOFF), a late one, one in the cutoff's recorded bucket, and May's (never closed)."""
    projects, users = ["search", "chat", "", None], ["u-1", "u-2", None]
    batches: dict[datetime, list[tuple]] = {}
    for i in range(60):
        started = APRIL + timedelta(days=i % 30, hours=i % 24, minutes=(7 * i) % 60, seconds=i)
        recorded = started + timedelta(hours=1 + i % 3)
        batches.setdefault(recorded, []).append(call_values(
            started_at=started, recorded_at=recorded, project=projects[i % 4], end_user=users[i % 3],
            charged=f"{i % 7}.{i:03d}", status="error" if i % 11 == 0 else "completed",
            tags={"team": f"t{i % 2}"} if i % 5 else None))
    kept = {
        # Recorded before the cutoff, in its recorded bucket: readers take that bucket from raw rows.
        "in_cutoff_bucket": call_values(started_at=APRIL + timedelta(days=29, hours=23), charged="1.5",
                                        recorded_at=datetime(2026, 5, 11, 9, 1, tzinfo=timezone.utc)),
        "may": call_values(started_at=APRIL + timedelta(days=31), charged="2.25"),
    }
    for recorded, rows in batches.items():
        insert(ledger, rows)
    for row in kept.values():
        insert(ledger, [row])
    clock = iter([CUTOFF] * 2 + [CUTOFF + timedelta(seconds=1)])
    closing.close_period(Settings(database_url=ledger.url), ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    # Recorded after April's close: an adjustment of May, which stays.
    late = call_values(started_at=APRIL + timedelta(days=3), charged="0.75", recorded_at=CUTOFF + timedelta(days=2))
    insert(ledger, [late])
    return {name: row[0] for name, row in {**kept, "late": late}.items()}


# Every grouping in JSON (its rows, totals and note), every format in two groupings: a format writes the rows its
# report was given, and retention changes only those rows and the note (a third of the report runs fewer).
FORMATS_OF = {"": ("json", "csv", "focus", "table", "xlsx"), "project,user": ("json",), "day,model": ("json",),
              "tag:team,key": ("json", "csv", "table", "xlsx")}


def _outputs(url: str, tmp_path, tag: str) -> dict[str, object]:
    """April's and May's reports and the year's, in every grouping and format of FORMATS_OF."""
    found: dict[str, object] = {}
    for period in ("2026-04", "2026-05", "2026"):
        for by, formats in FORMATS_OF.items():
            extra = ["--by", by] if by else []
            for fmt in formats:
                path = tmp_path / f"{tag}-{period}-{by.replace(',', '-').replace(':', '')}.xlsx"
                output = str(path) if fmt == "xlsx" else "-"
                code, text = run(url, "report", "--period", period, "--format", fmt, "--output", output, *extra)
                assert code == 0, text
                if fmt == "json":
                    text = json.loads(text)
                    text.pop("generated_at")  # the one figure that moves between two runs
                elif fmt == "xlsx":
                    book = openpyxl.load_workbook(path)
                    text = {name: [[c.value for c in row] for row in book[name].iter_rows()
                                   if row[0].value != "generated (UTC)"] for name in book.sheetnames}
                found[f"{period} {by} {fmt}"] = text
    return found


def test_retention_deletes_closed_calls_only_and_every_report_of_the_closed_month_stays_the_same(ledger, tmp_path):
    ids = _april_ledger(ledger)
    before = _outputs(ledger.url, tmp_path, "before")
    assert before["2026-04  json"]["close"]["digest_matches"] is True

    settings = Settings(database_url=ledger.url, retention_calls_days=30)
    out = io.StringIO()
    assert retention_command.run(settings, out, now=LATER) == 0
    assert "60 calls of closed periods started before 2026-11-01T00:00:00Z deleted (calls_days = 30)" in out.getvalue()
    with ledger.session() as session:
        left = set(session.scalars(select(Call.call_id)))
        (run_row,) = session.scalars(select(RetentionRun))
    assert left == set(ids.values())  # the late call, the one in the cutoff's bucket, and May's stay
    assert (run_row.calls_deleted, run_row.calls_days) == (60, 30)

    after = _outputs(ledger.url, tmp_path, "after")
    note = ("calls started before 2026-11-01T00:00:00Z in closed periods were deleted by retention (calls_days = 30); "
            "totals come from the rollups")
    for name, value in before.items():
        if name.startswith("2026-04") or name.startswith("2026 "):
            if name.endswith("json"):
                document = after[name]
                assert document.pop("calls_deleted") == note, name
                if name.startswith("2026-04"):
                    assert document["close"]["digest_matches"] is None and document["digest"] == value["digest"]
                    document["close"]["digest_matches"] = True
                assert document == value, name
            elif name.endswith("table"):
                lines = after[name].splitlines()
                assert note in lines and "DIGEST DIFFERS" not in after[name], name
                lines.remove(note)
                old = value.splitlines()
                if name.startswith("2026-04"):
                    assert lines[1].endswith("(the close's digest: not recomputed)") and old[1].endswith("digest matches")
                    lines[1], old[1] = lines[1].rsplit("…", 1)[0], old[1].rsplit("…", 1)[0]
                assert lines == old, name
            elif name.endswith("xlsx"):
                sheets = dict(after[name])
                summary = [row for row in sheets.pop("Summary") if row[:1] not in (["raw calls"], ["digest now"])]
                assert [row for row in value["Summary"] if row[:1] != ["digest now"]] == summary, name
                assert ["raw calls", note] in [row[:2] for row in after[name]["Summary"]], name
                expected = {k: v for k, v in value.items() if k not in ("Summary", "Findings")}
                assert {k: v for k, v in sheets.items() if k != "Findings"} == expected, name
            else:
                assert after[name] == value, name
        else:  # May: never closed, its rows and its adjustment unchanged
            assert after[name] == value, name

    # Row-level outputs say the rows are gone, where they are.
    code, text = run(ledger.url, "calls", "--since", "2026-04-01", "--until", "2026-05-01")
    assert code == 0 and text.splitlines()[-2:] == ["2 calls", note]
    code, text = run(ledger.url, "calls", "--since", "2026-05-01")
    assert code == 0 and note not in text

    # A second run finds nothing more; the first run's horizon still holds.
    assert retention_command.run(settings, io.StringIO(), now=LATER + timedelta(days=1)) == 0
    with ledger.session() as session:
        assert retention.horizon(session).before == datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_rollup_verify_skips_and_rebuild_refuses_the_buckets_retention_emptied_and_april_stays_closed(ledger, capsys):
    _april_ledger(ledger)
    settings = Settings(database_url=ledger.url, retention_calls_days=30)
    retention_command.run(settings, io.StringIO(), now=LATER)
    code, text = run(ledger.url, "rollup", "verify")
    assert code == 0, text
    assert "skipped 62 buckets of closed periods before 2026-11-01T00:00:00Z" in text
    assert "rollups match the calls: 1 buckets, 1 calls" in text
    code, text = run(ledger.url, "rollup", "rebuild", "--from", "2026-04-20")
    assert code == 1 and "rollup rebuild refused: retention deleted the raw calls of closed periods from 2026-04-01T00:00Z" in capsys.readouterr().err
    code, text = run(ledger.url, "rollup", "rebuild", "--from", "2026-05-01")
    assert code == 0, text
    assert run(ledger.url, "report", "--period", "2026-04", "--format", "json", "--output", "-")[0] == 0
    code, text = run(ledger.url, "reopen", "2026-04", "--reason", "x")
    assert code == 1 and "2026-04 (UTC) stays closed" in capsys.readouterr().err
    # A range whose bound is off the grid inside the emptied month cannot be split from the rollups.
    code, text = run(ledger.url, "report", "--from", "2026-04-10T10:05:00Z", "--to", "2026-05-01T00:00:00Z")
    assert code == 1 and "2026-04-10T10:05:00Z is off the 15-minute grid where raw calls are gone" in capsys.readouterr().err


def test_nothing_is_deleted_from_a_period_never_closed_and_batches_resume(ledger):
    old = [call_values(started_at=APRIL + timedelta(hours=h)) for h in range(25)]
    insert(ledger, old)
    assert retention.delete_old_calls(ledger, 30, LATER).calls_deleted == 0
    clock = iter([CUTOFF] * 2 + [CUTOFF + timedelta(seconds=1)])
    closing.close_period(Settings(database_url=ledger.url), ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    # Not yet N days old: kept.
    assert retention.delete_old_calls(ledger, 30, APRIL + timedelta(days=20)).calls_deleted == 0
    result = retention.delete_old_calls(ledger, 30, LATER, batch=10)
    assert result.calls_deleted == 25
    with ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 0
        runs = [r.calls_deleted for r in session.scalars(select(RetentionRun).order_by(RetentionRun.id))]
    assert runs == [0, 0, 25]


def test_calls_days_is_off_by_default_a_whole_number_of_days_and_a_daily_job_when_set():
    assert settings_from_mapping({}).retention_calls_days is None
    assert settings_from_mapping({"retention": {"calls_days": 90}}).retention_calls_days == 90
    for bad in (0, -1, "90", 1.5, True):
        with pytest.raises(ConfigError, match="retention.calls_days"):
            settings_from_mapping({"retention": {"calls_days": bad}})
    with pytest.raises(ConfigError):
        settings_from_mapping({"retention": {"days": 3}})
    assert "retention" not in default_jobs(Settings())
    assert "retention" in default_jobs(replace(Settings(), retention_calls_days=30))
    with pytest.raises(ConfigError, match="retention is off"):
        retention_command.run(Settings(), io.StringIO())


def test_a_project_budget_over_a_year_sums_the_same_after_retention(ledger):
    _april_ledger(ledger)
    year = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))
    scopes = [Scope(project="search"), Scope(), Scope(user="u-2"), Scope(project="chat", user="u-1")]
    with ledger.session() as session:
        before = [budgets.spend(session, scope, *year) for scope in scopes]
    assert before[0].calls > 0 and before[1].calls == 63
    retention.delete_old_calls(ledger, 30, LATER)
    with ledger.session() as session:
        assert [budgets.spend(session, scope, *year) for scope in scopes] == before
        # A window after the horizon stays on the raw calls' index, and finds what is there.
        assert budgets.spend(session, Scope(), LATER - timedelta(days=1), LATER).calls == 0


def test_rebuild_after_a_gone_period_that_ends_inside_a_utc_day_is_refused_until_the_next_utc_midnight(ledger, capsys):
    # April in Asia/Kolkata ends at 2026-04-30T18:30Z: the wider rollups' day 2026-04-30 holds deleted calls' sums, and a
    # rebuild from 18:30 would make that whole UTC day anew from what is left.
    april = parse_period("2026-04", "Asia/Kolkata")
    insert(ledger, [call_values(started_at=april.start + timedelta(hours=7 * i), charged="1.25",
                                recorded_at=april.start + timedelta(hours=7 * i, seconds=5)) for i in range(110)])
    clock = iter([CUTOFF] * 2 + [CUTOFF + timedelta(seconds=1)])
    closing.close_period(Settings(database_url=ledger.url), ledger, april, now=lambda: next(clock))
    settings = Settings(database_url=ledger.url, retention_calls_days=30)
    assert retention_command.run(settings, io.StringIO(), now=LATER) == 0
    code, _ = run(ledger.url, "rollup", "rebuild", "--from", "2026-04-30T18:30Z")
    assert code == 1 and "rebuild from 2026-05-01T00:00Z on" in capsys.readouterr().err

    def april_report() -> dict:
        code, text = run(ledger.url, "report", "--period", "2026-04", "--tz", "Asia/Kolkata", "--format", "json", "--output", "-")
        assert code == 0
        return {k: v for k, v in json.loads(text).items() if k != "generated_at"}

    before = april_report()
    assert before["totals"]["calls"] == 103
    assert run(ledger.url, "rollup", "rebuild", "--from", "2026-05-01T00:00Z")[0] == 0
    assert april_report() == before


# ---------------------------------------------------------------- replays after retention


def _journal(folder, captures) -> None:
    """A journal segment holding `captures`, left as an orphan (as a process killed before its writes)."""
    journal = Journal(folder)
    with journal.lock:
        for capture in captures:
            journal.append_locked(encode(capture))
    journal.close()


def _copy(folder, into) -> None:
    into.mkdir()
    for path in segment_paths(folder):
        (into / path.name).write_bytes(path.read_bytes())


def _ledger_state(ledger) -> dict[str, object]:
    """Every rollup table's totals, and the open period's report (its adjustments of closed periods) as JSON."""
    found: dict[str, object] = {}
    with ledger.session() as session:
        for table in TABLES:
            model = table.model
            found[table.name] = session.execute(select(func.sum(model.calls), func.sum(model.credits_charged),
                                                       func.sum(model.prompt_tokens))).one()
    code, text = run(ledger.url, "report", "--period", "2026-05", "--format", "json", "--output", "-")
    assert code == 0, text
    found["2026-05"] = {k: v for k, v in json.loads(text).items() if k != "generated_at"}
    return found


class _WritersClock(datetime):
    """The writer's clock (its recorded_at), set by the test."""

    at = APRIL

    @classmethod
    def now(cls, tz=None):
        return cls.at


def test_a_replay_after_retention_is_a_no_op_and_a_call_never_recorded_still_counts_late(ledger, tmp_path, monkeypatch):
    # April's calls written from a journal, April closed, retention deletes their rows; the same journal
    # replayed (a copy: a segment kept twice, a proxy's spool sent again) must count none of them again.
    monkeypatch.setattr("ledger.sink.writer.datetime", _WritersClock)
    captures = [make_capture(i) for i in range(12)]  # started 2026-04-16
    _journal(tmp_path / "journal", captures)
    _copy(tmp_path / "journal", tmp_path / "again")
    _WritersClock.at = datetime(2026, 5, 2, 10, tzinfo=timezone.utc)
    assert replay_journal(ledger.url, tmp_path / "journal").inserted == 12
    clock = iter([CUTOFF] * 2 + [CUTOFF + timedelta(seconds=1)])
    closing.close_period(Settings(database_url=ledger.url), ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    settings = Settings(database_url=ledger.url, retention_calls_days=30)
    assert retention_command.run(settings, io.StringIO(), now=LATER) == 0
    with ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 0
    before = _ledger_state(ledger)
    assert before[QUARTERLY.name][0] == 12

    _WritersClock.at = LATER + timedelta(days=1)
    again = replay_journal(ledger.url, tmp_path / "again")
    assert (again.inserted, again.duplicates, again.conflicts) == (0, 12, 0)
    assert _ledger_state(ledger) == before

    # The same call id with other content is a conflict, kept aside, as when its row was there.
    other = make_capture(0, call_id=captures[0].call_id, prompt_tokens=999)
    _journal(tmp_path / "other", [other])
    assert replay_journal(ledger.url, tmp_path / "other").conflicts == 1
    assert _ledger_state(ledger) == before

    # A call of April never recorded (no row, no id retention removed) is recorded: a late call, May's adjustment.
    late = make_capture(12)
    _journal(tmp_path / "late", [late])
    assert replay_journal(ledger.url, tmp_path / "late").inserted == 1
    after = _ledger_state(ledger)
    assert after[QUARTERLY.name][0] == 13
    adjustments = after["2026-05"]["adjustments"]
    assert [(a["closed_period"]["label"], a["calls"]) for a in adjustments] == [("2026-04", 1)], adjustments
    assert [c["call_id"] for c in after["2026-05"]["adjustment_calls"]] == [late.call_id]
    with ledger.session() as session:
        assert list(session.scalars(select(Call.call_id))) == [late.call_id]


_STARTED, _STATUS = CALL_COLUMNS.index("started_at"), CALL_COLUMNS.index("status")


def test_a_replay_written_while_retention_deletes_the_same_call_counts_once(ledger):
    # Retention's batch has deleted the row and kept its id, not yet committed, while a writer inserts the same
    # record: the writer waits (PostgreSQL: on the call id's unique index; SQLite: on the write lock) and then
    # finds the id retention kept.
    row = call_values(started_at=APRIL + timedelta(days=2), recorded_at=APRIL + timedelta(days=2, hours=1))
    insert(ledger, [row])
    clock = iter([CUTOFF] * 2 + [CUTOFF + timedelta(seconds=1)])
    closing.close_period(Settings(database_url=ledger.url), ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    replay = tuple(LATER if name == "recorded_at" else value for name, value in zip(CALL_COLUMNS, row))
    results = []

    def write() -> None:
        with ledger.session() as session:
            results.append(insert_rows(session, [replay], [CallRecord(row[0], row[_STARTED], row[_STATUS])]))

    writer = threading.Thread(target=write)
    before = retention.cutoff_for(LATER, 30)
    with ledger.session() as session:
        run_id = retention.start_run(session, LATER, before, 30)
        assert retention.delete_batch(session, run_id, before) == 1
        writer.start()
        writer.join(0.5)  # the writer is held until retention's batch commits
    writer.join(30)
    assert [(r.inserted, r.duplicates, r.conflicts) for r in results] == [(0, 1, 0)]
    with ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 0
        assert session.scalar(select(func.sum(CallRollup.calls))) == 1
