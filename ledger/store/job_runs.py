"""The `job_runs` table: one row per run of a scheduled job, started then finished."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import JobRun

# A run's outcome, as `job_runs.outcome` keeps it (the service's log and the Overview read these names).
RUNNING, OK, FAILED, SKIPPED = "running", "ok", "failed", "skipped"
GAP = "gap"  # reconcile: money the ledger cannot explain
POLL_FAILED = "poll_failed"  # poll_credits: an account's balance could not be read
DIFFERS = "differs"  # verify_rollups: a bucket differs from the raw calls
RECONCILED = (OK, GAP)  # a reconcile run that reached a verdict (not one that failed, or skipped for another replica's)


def start_job_run(session: Session, job: str, started_at: datetime, host: str) -> int:
    run = JobRun(job=job, started_at=started_at, outcome=RUNNING, host=host)
    session.add(run)
    session.flush()
    return run.id


def finish_job_run(session: Session, run_id: int, ended_at: datetime, outcome: str, detail: str | None) -> None:
    run = session.get(JobRun, run_id)
    if run is not None:
        run.ended_at = ended_at
        run.outcome = outcome
        run.detail = detail


def job_runs(session: Session, job: str | None = None) -> list[JobRun]:
    query = select(JobRun).order_by(JobRun.started_at, JobRun.id)
    if job is not None:
        query = query.where(JobRun.job == job)
    return list(session.scalars(query))


def last_job_run(session: Session, job: str, outcomes: tuple[str, ...]) -> JobRun | None:
    """The newest finished run of `job` with one of `outcomes` (one query, on the job's index)."""
    query = (select(JobRun).where(JobRun.job == job, JobRun.outcome.in_(outcomes), JobRun.ended_at.is_not(None))
             .order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(1))
    return session.scalars(query).first()
