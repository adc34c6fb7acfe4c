"""Scheduled jobs (poll credits, reconcile, replay the journal, verify the rollups, scheduled reports) and the
`run` service.

Each run takes a lock named after its job (PostgreSQL: an advisory lock on a
connection held for the run; SQLite: a file lock beside the database), so that
replicas of the service run each job one at a time. A run is logged in one
line and kept in `job_runs`; a failing run is recorded and the service goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from .. import redact
from ..accounting.pricing import load_rate_book
from ..config import Settings
from ..money import fmt
from ..sink.writer import replay_journal
from ..store.engine import Ledger
from ..store.job_runs import DIFFERS, FAILED, GAP, OK, POLL_FAILED, SKIPPED, finish_job_run, start_job_run
from ..accounting.verdict import GAP_VERDICT, StoredVerdict
from ..store.reconciliation import reconcile_as_configured
from ..store.retention import delete_old_calls, gone_ranges
from ..store.rollups import compare, describe_differences
from .alerting import budgets_job, check_ready
from .locks import job_lock, lock_key  # noqa: F401 (the service's locks: imported from here by callers)
from .polling import poll_balances
from .report_jobs import missed_run, report_job
from .runtime import Service

log = redact.logger(__name__)

RECONCILE_WINDOW_DAYS = 2  # the hourly job lists the windows of this many days
ROLLUP_VERIFY_DAYS = 2  # the daily job compares the rollups of this many days with the raw calls
ROLLUP_VERIFY_SCHEDULE = "17 3 * * *"  # daily, 03:17 UTC: a quiet hour, off the hour other jobs like
RETENTION_SCHEDULE = "43 2 * * *"  # daily, 02:43 UTC: before the rollups' verify, which then skips what went


# ---------------------------------------------------------------- jobs


def poll_credits_job(service: Service) -> tuple[str, str]:
    values = poll_balances(service.settings, service.ledger, client=service.credits_client())
    detail = "; ".join(f"{v.account} {fmt(v.balance) if v.ok else v.status}" for v in values)
    return (OK if all(v.ok for v in values) else POLL_FAILED), detail


def reconcile_job(service: Service) -> tuple[str, str]:
    """Windows of the last RECONCILE_WINDOW_DAYS days, the cumulative line from the first snapshot ever. Its detail
    is the verdict kept (`StoredVerdict`, JSON): the Overview shows the newest without reconciling again."""
    now = datetime.now(timezone.utc)
    # `now` as the end, so the verdict kept names its window's end (the settle time may move it earlier)
    result = reconcile_as_configured(service.settings, service.ledger, now - timedelta(days=RECONCILE_WINDOW_DAYS),
                                     now, settle_seconds=service.reconcile_settle_seconds, cumulative_from_first=True)
    # A run is OK unless money is unexplained; too few settled snapshots yet (the service just started) is
    # said in its verdict, in the words `reconcile` uses.
    return (GAP if result.verdict == GAP_VERDICT else OK), StoredVerdict.of(result).to_detail()


def replay_journal_job(service: Service) -> tuple[str, str]:
    settings = service.settings
    if not os.path.exists(settings.journal_path):
        return OK, "no journal"
    book = load_rate_book(settings.rate_cards_path)
    result = replay_journal(settings.database_url, settings.journal_path, rate_book=book, policy=settings.pricing)
    return OK, result.summary()


def verify_rollups_job(service: Service) -> tuple[str, str]:
    """`rollup verify` of the last days: "differs" naming the buckets (a rebuild of them mends it)."""
    start = datetime.now(timezone.utc) - timedelta(days=ROLLUP_VERIFY_DAYS)
    with service.ledger.session() as session:
        comparison = compare(session, start, skip=gone_ranges(session))
    if comparison.differences:
        lines = describe_differences(comparison.differences)
        return DIFFERS, (f"rollups differ from the calls in {len(lines)} buckets: " + "; ".join(lines[:10])
                           + ("; ..." if len(lines) > 10 else "")
                           + f"; `credit-ledger rollup rebuild --from {start:%Y-%m-%dT%H:%MZ}` makes them anew")
    return OK, f"rollups match the calls: {comparison.buckets} buckets, {comparison.calls} calls"


def retention_job(service: Service) -> tuple[str, str]:
    """`retention run`: raw calls of closed periods older than [retention] calls_days deleted."""
    days = service.settings.retention_calls_days
    assert days is not None  # the job is scheduled only with retention on
    result = delete_old_calls(service.ledger, days, datetime.now(timezone.utc))
    return OK, (f"{result.calls_deleted} calls of closed periods started before "
                  f"{result.deleted_before:%Y-%m-%dT%H:%M:%SZ} deleted (calls_days = {days})")


JobFunction = Callable[[Service], "tuple[str, str]"]


@dataclass(frozen=True)
class CronSchedule:
    """A crontab line (APScheduler 3.x's field order and day names) in a zone: `0 6 1 * *` in Europe/Berlin."""

    crontab: str
    zone: str

    def trigger(self):
        from zoneinfo import ZoneInfo

        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(self.crontab, timezone=ZoneInfo(self.zone))




def run_job(service: Service, name: str, function: JobFunction) -> str:
    """One run: lock, record in job_runs, log one line; never raises."""
    started = time.monotonic()
    try:
        with job_lock(service.ledger, name) as held:
            if not held:
                log.info("job %s skipped: another replica is running it", name)
                return SKIPPED
            begun = datetime.now(timezone.utc)
            with service.ledger.session() as session:
                run_id = start_job_run(session, name, begun, service.host)
            try:
                outcome, detail = function(service)
            except Exception as exc:  # a failing run is recorded, the service goes on
                outcome, detail = FAILED, f"{type(exc).__name__}: {exc}"[:2000]
            with service.ledger.session() as session:
                finish_job_run(session, run_id, datetime.now(timezone.utc), outcome, detail)
    except Exception as exc:  # the ledger itself is unreachable
        outcome, detail = FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    level = logging.INFO if outcome in (OK, SKIPPED) else logging.WARNING
    log.log(level, "job %s %s in %.2fs: %s", name, outcome, time.monotonic() - started, detail)
    return outcome


def default_jobs(settings: Settings) -> dict[str, tuple[JobFunction, float | CronSchedule]]:
    """Job name -> (function, interval seconds or a CronSchedule)."""
    schedule = settings.schedule
    jobs: dict[str, tuple[JobFunction, float | CronSchedule]] = {
        "poll_credits": (poll_credits_job, schedule.poll_credits_seconds),
        "reconcile": (reconcile_job, schedule.reconcile_seconds),
        "replay_journal": (replay_journal_job, schedule.replay_journal_seconds),
        "verify_rollups": (verify_rollups_job, CronSchedule(ROLLUP_VERIFY_SCHEDULE, "UTC")),
    }
    if settings.retention_calls_days is not None:
        jobs["retention"] = (retention_job, CronSchedule(RETENTION_SCHEDULE, "UTC"))
    for entry in settings.reports:
        jobs[entry.job_name] = (report_job(entry), CronSchedule(entry.schedule, entry.timezone))
    if settings.budgets or settings.balance_alerts or any(entry.channels for entry in settings.reports):
        jobs["budgets"] = (budgets_job, schedule.budgets_seconds)  # evaluates, and delivers the outbox (retries too)
    return jobs


def build_scheduler(service: Service, jobs: dict[str, tuple[JobFunction, float | CronSchedule]] | None = None, *,
                    blocking: bool = False, now: datetime | None = None):
    """An APScheduler 3.x scheduler: interval jobs first run at once; a crontab job at its times (and at once
    when the run of its last period was due while the service was down)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    jobs = default_jobs(service.settings) if jobs is None else jobs
    scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=timezone.utc)
    now = now or datetime.now(timezone.utc)
    entries = {entry.job_name: entry for entry in service.settings.reports}
    for name, (function, seconds) in jobs.items():
        if isinstance(seconds, CronSchedule):
            trigger = seconds.trigger()
            entry = entries.get(name)
            missed = entry is not None and missed_run(service, entry, trigger, now)
            scheduler.add_job(
                run_job, trigger, args=(service, name, function), id=name, name=name, max_instances=1, coalesce=True,
                misfire_grace_time=3600, **({"next_run_time": now} if missed else {}),
            )
            continue
        scheduler.add_job(
            run_job,
            "interval",
            args=(service, name, function),
            id=name,
            name=name,
            seconds=seconds,
            jitter=interval_jitter(seconds),
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
        )
    return scheduler


def interval_jitter(seconds: float) -> float:
    """How late, at most, a run of an interval job may fire after its time: a random part of it per run, so the
    replicas of the service, started together, do not try the job's lock in lockstep (one would win every round
    and the other never run it) nor hit the shared database at the same instant. A quarter of the interval,
    at most 15 s: the run stays within its own interval."""
    return min(seconds / 4, 15.0)


def _when(trigger) -> str:
    interval = getattr(trigger, "interval", None)
    return f"every {interval.total_seconds():g}s" if interval is not None else f"at {trigger}"


def run_service(
    settings: Settings,
    *,
    stop_event: threading.Event | None = None,
    jobs: dict[str, tuple[JobFunction, float | CronSchedule]] | None = None,
) -> int:
    """`credit-ledger run`: blocks until SIGINT/SIGTERM (or `stop_event`), then stops cleanly.

    What the jobs will need is checked before the service starts: a bad rate card, or a channel's
    secret unset, is one line now, not a failing job every interval (and nothing is sent).
    """
    load_rate_book(settings.rate_cards_path)
    check_ready(settings)
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("ledger").setLevel(logging.INFO)  # one line per run; libraries only warn
    try:
        with Ledger(settings.database_url) as ledger:
            service = Service(settings, ledger)
            scheduler = build_scheduler(service, jobs)
            scheduler.start()
            names = ", ".join(f"{j.id} {_when(j.trigger)}" for j in scheduler.get_jobs())
            log.info("service started on %s (%s): %s", service.host, ledger.dialect, names)
            try:
                while not stop.wait(0.5):
                    pass
            finally:
                scheduler.shutdown(wait=True)  # lets a running job finish
                service.close()
                log.info("service stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
