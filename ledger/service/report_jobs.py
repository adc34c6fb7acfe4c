"""Scheduled reports: each `[[reports]]` entry is a job of `credit-ledger run`, on its crontab in its zone.

A run reports the previous complete period of the entry's kind (run on the
1st of December, a monthly entry reports November), closes it first when
the entry says `close = true` (unless it is closed already), and writes
each format into the entry's folder. It runs under the job's lock (one
replica writes each report) and is kept in `job_runs`; its result lists the
files written, for whatever is to be done with them next (a channel to send
them to, say).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sqlalchemy import select

from ..accounting.closes import is_closed
from ..accounting.periods import Period, calendar_period, preceding
from ..config_reports import ReportEntry
from ..errors import GapError
from ..reports.run import ReportRequest, write_report
from ..store.closes import close_events
from ..store.models import JobRun, PeriodClose
from .closing import close_period

if TYPE_CHECKING:
    from .jobs import Service


@dataclass(frozen=True)
class ScheduledReportResult:
    entry: ReportEntry
    period: Period
    paths: tuple[Path, ...]  # the files written
    closed: PeriodClose | None = None  # the close this run made
    already_closed: bool = False
    gap: str | None = None  # why the close was refused (the report is written all the same)

    @property
    def outcome(self) -> str:
        return "gap" if self.gap else "ok"

    @property
    def detail(self) -> str:
        parts = [f"{self.period.label} ({self.period.zone})"]
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


def run_scheduled_report(service: "Service", entry: ReportEntry, now: datetime | None = None) -> ScheduledReportResult:
    now = now or datetime.now(timezone.utc)
    period = period_to_report(entry, now)
    closed = gap = None
    already = False
    if entry.close:
        with service.ledger.session() as session:
            already = is_closed(close_events(session), period) is not None
        if not already:
            try:
                client = service.credits_client() if service.settings.accounts else None
                closed = close_period(service.settings, service.ledger, period, client=client).row
            except GapError as error:
                gap = str(error)
    paths: list[Path] = []
    for fmt in entry.formats:
        request = ReportRequest(period, entry.by, entry.account, fmt, None, entry.calls and fmt == "xlsx", entry.name,
                                entry.output_dir)
        paths += write_report(service.settings, service.ledger, request, io.StringIO(), progress_stream=io.StringIO())
    return ScheduledReportResult(entry, period, tuple(paths), closed, already, gap)


def report_job(entry: ReportEntry) -> Callable[["Service"], tuple[str, str]]:
    """The job function of one entry: (outcome, detail) as `run_job` records them."""

    def job(service: "Service") -> tuple[str, str]:
        result = run_scheduled_report(service, entry)
        return result.outcome, result.detail

    job.__name__ = f"report_job[{entry.name}]"
    return job


def missed_run(service: "Service", entry: ReportEntry, trigger, now: datetime) -> bool:
    """Whether the run for the last complete period was due and none ran (the service was down at the time)."""
    period = period_to_report(entry, now)
    due = trigger.get_next_fire_time(None, period.end)
    if due is None or due > now:
        return False
    with service.ledger.session() as session:
        runs = session.scalars(
            select(JobRun.detail).where(JobRun.job == entry.job_name, JobRun.started_at >= due,
                                        JobRun.outcome.in_(("ok", "gap")))
        ).all()
    return not any((detail or "").startswith(f"{period.label} ({period.zone})") for detail in runs)
