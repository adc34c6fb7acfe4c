"""Scheduled reports: each `[[reports]]` entry is a job of `credit-ledger run`, on its crontab in its zone.

A run reports the previous complete period of the entry's kind (run on the
1st of December, a monthly entry reports November), closes it first when
the entry says `close = true` (unless it is closed already), and writes
each format into the entry's folder. It runs under the job's lock (one
replica writes each report) and is kept in `job_runs`; its result lists the
files written. An entry's `channels` get a notice through the alerts'
outbox: email with the files attached, Slack and webhooks the summary and
the paths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from ..accounting.alerts import report_condition
from ..accounting.closes import is_closed
from ..accounting.periods import Period, calendar_period, preceding
from ..config.reports import ReportEntry
from ..errors import GapError, ReportError
from ..reports.run import ReportRequest, write_report
from ..reports.spend import build_report
from ..store.alerts import raise_alert
from ..store.closes import close_events
from ..store.models import JobRun, PeriodClose
from .channels import close_all, senders_for
from .closing import close_period
from .delivery import deliver_due
from .runtime import Service



@dataclass(frozen=True)
class ScheduledReportResult:
    entry: ReportEntry
    period: Period
    paths: tuple[Path, ...]  # the files written
    closed: PeriodClose | None = None  # the close this run made
    already_closed: bool = False
    gap: str | None = None  # why the close was refused (the report is written all the same)
    written_by: JobRun | None = None  # the earlier run that wrote this period's report: nothing done again

    @property
    def outcome(self) -> str:
        return "gap" if self.gap else "ok"

    @property
    def detail(self) -> str:
        parts = [f"{self.period.label} ({self.period.zone})"]
        if self.written_by is not None:
            done = self.written_by
            return f"{parts[0]}; written already by {done.host} at {done.started_at.isoformat(timespec='seconds')}"
        if self.closed is not None:
            parts.append(f"closed: {self.closed.calls} calls, digest {self.closed.calls_digest[:16]}")
        elif self.already_closed:
            parts.append("closed already")
        if self.gap:
            parts.append(f"NOT CLOSED: {self.gap}")
        parts.append("wrote " + ", ".join(str(p) for p in self.paths))
        return "; ".join(parts)


def period_to_report(entry: ReportEntry, now: datetime) -> Period:
    """The last complete period of the entry's kind before `now`, in its zone."""
    return preceding(calendar_period(entry.period, now, entry.timezone))


def written_by(session, entry: ReportEntry, period: Period, since: datetime | None = None) -> JobRun | None:
    """The latest run of this entry that wrote `period`'s report (ok, or written with its close refused), if any."""
    query = select(JobRun).where(JobRun.job == entry.job_name, JobRun.outcome.in_(("ok", "gap")),
                                 JobRun.detail.startswith(f"{period.label} ({period.zone})", autoescape=True))
    if since is not None:
        query = query.where(JobRun.started_at >= since)
    return session.scalars(query.order_by(JobRun.started_at.desc()).limit(1)).first()


def run_scheduled_report(service: Service, entry: ReportEntry, now: datetime | None = None) -> ScheduledReportResult:
    """Close (if asked), write and send the previous period's report, unless a run (this replica's or another's) did."""
    now = now or datetime.now(timezone.utc)
    period = period_to_report(entry, now)
    with service.ledger.session() as session:
        done = written_by(session, entry, period)
    if done is not None and done.outcome != "gap":  # a refused close is tried again by the next run
        return ScheduledReportResult(entry, period, (), written_by=done)
    closed = gap = None
    already = False
    if entry.close:
        with service.ledger.session() as session:
            already = is_closed(close_events(session), period) is not None
        if not already:
            try:
                client = service.credits_client() if service.settings.accounts else None
                closed = close_period(service.settings, service.ledger, period, client=client).row
            except (GapError, ReportError) as error:  # a gap, or a close the calendar in force refuses
                gap = str(error)
    paths: list[Path] = []
    for fmt in entry.formats:
        request = ReportRequest(period, entry.by, entry.account, fmt, None, entry.calls and fmt == "xlsx", entry.name,
                                entry.output_dir)
        paths += write_report(service.settings, service.ledger, request, io.StringIO(), progress_stream=io.StringIO())
    result = ScheduledReportResult(entry, period, tuple(paths), closed, already, gap)
    if entry.channels:
        send_report(service, result, now)
    return result


def _close_words(result: ScheduledReportResult) -> str:
    if result.closed is not None:
        return f"closed by this run (digest {result.closed.calls_digest[:16]})"
    if result.already_closed:
        return "closed already"
    if result.gap:
        return f"NOT CLOSED: {result.gap}"
    return "left open"


def send_report(service: Service, result: ScheduledReportResult, now: datetime) -> None:
    """The report's notice in the outbox (once per entry and period), then what is due delivered.

    Email attaches the files; Slack and webhooks get the summary and the paths.
    A channel that is down is retried by the service's budgets job, as an alert is.
    """
    entry = result.entry
    with service.ledger.session() as session:
        total = build_report(session, result.period, (), entry.account).total
    totals = {"calls": total.calls, "credits_charged": total.credits_charged, "credits_expected": total.credits_expected,
              "findings": total.findings, "usd": total.usd}
    condition = report_condition(entry.name, result.period, totals, [str(p) for p in result.paths], _close_words(result),
                                 entry.channels)
    with service.ledger.session() as session:
        raise_alert(session, f"{condition.condition_id}:{result.period.label}", condition, now, service.host)
    senders = senders_for(service.settings.channels)
    try:
        deliver_due(service.ledger, senders, owner=service.host)
    finally:
        close_all(senders)


def report_job(entry: ReportEntry) -> Callable[[Service], tuple[str, str]]:
    """The job function of one entry: (outcome, detail) as `run_job` records them."""

    def job(service: Service) -> tuple[str, str]:
        result = run_scheduled_report(service, entry)
        return result.outcome, result.detail

    job.__name__ = f"report_job[{entry.name}]"
    return job


def missed_run(service: Service, entry: ReportEntry, trigger, now: datetime) -> bool:
    """Whether the run for the last complete period was due and none ran (the service was down at the time)."""
    period = period_to_report(entry, now)
    due = trigger.get_next_fire_time(None, period.end)
    if due is None or due > now:
        return False
    with service.ledger.session() as session:
        return written_by(session, entry, period, since=due) is None
