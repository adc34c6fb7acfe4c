"""Scheduled reports: a [[reports]] entry is a job of the service, on a crontab in its zone, kept in job_runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import openpyxl
import pytest
from ledger_rows import call_values, insert, register, snapshot

from ledger.config import settings_from_mapping
from ledger.errors import ConfigError
from ledger.service import closing
from ledger.service.jobs import CronSchedule, Service, build_scheduler, default_jobs, run_job
from ledger.service.report_jobs import missed_run, run_scheduled_report
from ledger.store.closes import close_events
from ledger.store.job_runs import job_runs

BERLIN_DEC_1 = datetime(2026, 12, 1, 5, 0, tzinfo=timezone.utc)  # 06:00 in Berlin


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)


def settings_for(url: str, folder, **entry):
    return settings_from_mapping({
        "database_url": url, "timezone": "Europe/Berlin",
        "reports": [{"name": "finance-monthly", "period": "month", "formats": ["xlsx", "csv", "focus"], "by": ["project"],
                     "close": True, "output_dir": str(folder), **entry}],
    })


def test_an_entry_is_a_crontab_job_at_six_on_the_first_in_its_zone(tmp_path):
    settings = settings_for("sqlite:///x.db", tmp_path)
    function, schedule = default_jobs(settings)["report:finance-monthly"]
    assert schedule == CronSchedule("0 6 1 * *", "Europe/Berlin")
    trigger = schedule.trigger()
    assert trigger.get_next_fire_time(None, datetime(2026, 11, 15, tzinfo=timezone.utc)) == BERLIN_DEC_1
    # Summer time: 06:00 in Berlin is 04:00 UTC.
    assert trigger.get_next_fire_time(None, datetime(2026, 6, 15, tzinfo=timezone.utc)) == datetime(2026, 7, 1, 4, tzinfo=timezone.utc)
    weekly = settings_for("sqlite:///x.db", tmp_path, period="week", schedule="30 7 * * 1")
    _, schedule = default_jobs(weekly)["report:finance-monthly"]
    assert schedule.crontab == "30 7 * * mon"  # crontab's 1 is Monday; APScheduler 3.x would read it as Tuesday
    assert schedule.trigger().get_next_fire_time(None, datetime(2026, 12, 2, tzinfo=timezone.utc)).weekday() == 0


@pytest.mark.parametrize("entry, message", [
    ({"period": "fortnight"}, "period: must be one of"),
    ({"schedule": "0 25 * * *"}, "schedule hour '25' is outside 0-23"),
    ({"formats": ["pdf"]}, "formats: must be a list of one or more of csv"),
    ({"by": ["colour"]}, "unknown group key 'colour'"),
    ({"timezone": "Europe/Atlantis"}, "must be a known time zone"),
    ({"close": "yes"}, "close: must be true or false"),
    ({"name": "a/b"}, "name: must be a name of letters"),
    ({"when": "monthly"}, "unknown setting 'when'"),
])
def test_a_bad_entry_is_a_config_error_naming_it(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message):
        settings_for("sqlite:///x.db", tmp_path, **entry)


def test_the_job_closes_the_previous_month_writes_each_format_and_is_kept_in_job_runs(ledger, tmp_path):
    settings = settings_for(ledger.url, tmp_path / "out")
    insert(ledger, [call_values(started_at=datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=d)) for d in range(30)])
    (tmp_path / "out").mkdir()
    service = Service(settings, ledger, host="test-host")
    entry = settings.reports[0]
    assert run_job(service, entry.job_name, lambda s: _as_job(run_scheduled_report(s, entry, now=BERLIN_DEC_1))) == "ok"
    ((job, outcome, detail),) = [(r.job, r.outcome, r.detail) for r in _runs(ledger)]
    assert job == "report:finance-monthly" and outcome == "ok"
    assert detail.startswith("2026-11 (Europe/Berlin); closed: 30 calls, digest ")
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["finance-monthly-2026-11-Europe-Berlin-by-project.csv",
                     "finance-monthly-2026-11-Europe-Berlin-by-project.focus.csv",
                     "finance-monthly-2026-11-Europe-Berlin-by-project.xlsx"]
    summary = {r[0].value: r[1].value for r in openpyxl.load_workbook(tmp_path / "out" / files[2])["Summary"].iter_rows() if r[0].value}
    assert summary["closed with"] == "no_snapshots" and isinstance(summary["closed at (UTC)"], datetime)
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    # Run again (a second replica after the first finished, a restart): nothing is written or closed again.
    other = Service(settings, ledger, host="replica-2")
    assert run_job(other, entry.job_name, lambda s: _as_job(run_scheduled_report(s, entry, now=BERLIN_DEC_1 + timedelta(hours=1)))) == "ok"
    again = _runs(ledger)[-1]
    assert again.host == "replica-2" and again.detail.startswith("2026-11 (Europe/Berlin); written already by test-host at ")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == written
    with ledger.session() as session:
        assert len([e for e in close_events(session) if e.action == "close"]) == 1
    assert run_scheduled_report(service, entry, now=BERLIN_DEC_1 + timedelta(hours=2)).paths == ()


def test_a_gap_leaves_the_period_open_and_the_report_written(ledger, tmp_path):
    settings = settings_for(ledger.url, tmp_path, formats=["json"])
    register(ledger, "a" * 64, "Ab12", "backend", "prod")
    snapshot(ledger, "prod", datetime(2026, 11, 2, tzinfo=timezone.utc), 10_000, 0)
    snapshot(ledger, "prod", datetime(2026, 11, 20, tzinfo=timezone.utc), 10_000, 500)
    result = run_scheduled_report(Service(settings, ledger), settings.reports[0], now=BERLIN_DEC_1)
    assert result.outcome == "gap" and "unexplained gap" in result.gap and result.closed is None
    assert [p.name for p in result.paths] == ["finance-monthly-2026-11-Europe-Berlin-by-project.json"]
    assert "NOT CLOSED" in result.detail


def test_a_run_missed_while_the_service_was_down_runs_when_it_starts(ledger, tmp_path):
    settings = settings_for(ledger.url, tmp_path, formats=["csv"], close=False)
    service = Service(settings, ledger)
    entry = settings.reports[0]
    trigger = CronSchedule(entry.schedule, entry.timezone).trigger()
    assert not missed_run(service, entry, trigger, BERLIN_DEC_1 - timedelta(minutes=1))  # not due yet
    assert missed_run(service, entry, trigger, BERLIN_DEC_1 + timedelta(hours=3))
    scheduler = build_scheduler(service, {entry.job_name: default_jobs(settings)[entry.job_name]},
                                now=BERLIN_DEC_1 + timedelta(hours=3))
    (job,) = scheduler.get_jobs()
    assert job.next_run_time == BERLIN_DEC_1 + timedelta(hours=3)
    run_job(service, entry.job_name, lambda s: _as_job(run_scheduled_report(s, entry, now=BERLIN_DEC_1 + timedelta(hours=3))))
    assert not missed_run(service, entry, trigger, BERLIN_DEC_1 + timedelta(hours=4))


def _as_job(result):
    return result.outcome, result.detail


def _runs(ledger):
    with ledger.session() as session:
        return job_runs(session)


def test_entries_that_close_periods_must_share_the_calendar_of_closes(tmp_path):
    from ledger.config import settings_from_mapping

    def entries(*more):
        return settings_from_mapping({"database_url": "sqlite:///x.db", "reports_dir": str(tmp_path), "reports": [
            {"name": "finance-monthly", "period": "month", "timezone": "Europe/Berlin", "close": True}, *more]})

    with pytest.raises(ConfigError, match=r"reports #2 \(ops-weekly\) closes weeks in UTC, #1 \(finance-monthly\) "
                                          r"months in Europe/Berlin: the ledger's closes are one kind of period in one zone"):
        entries({"name": "ops-weekly", "period": "week", "timezone": "UTC", "close": True})
    assert len(entries({"name": "ops-weekly", "period": "week", "timezone": "UTC"}).reports) == 2  # reports only
    assert len(entries({"name": "board", "period": "month", "timezone": "Europe/Berlin", "close": True}).reports) == 2
