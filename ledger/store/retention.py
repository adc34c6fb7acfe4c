"""Retention: raw calls of closed periods deleted after N days, their sums kept in the rollups.

A call is deleted only when no reader needs its raw row any more: it started
before the run's `deleted_before` (now less `[retention] calls_days`), a
close in force covers its start, it was recorded before that close's cutoff
(strictly before the cutoff's 15-minute recorded bucket, which readers take
from raw rows), and neither of its buckets is one a close or reopen leaves
undecided (an off-grid bound of a period, the recorded bucket of any close's
cutoff or reopen). A late call (an adjustment of a later period) stays, and
so does every call of a period never closed. Rollup rows are never deleted:
whole buckets and the closes' digests keep closed periods reproducible.

`retention_runs` records each run; readers of raw rows read `horizon()`.
`retired_calls` keeps each deleted row's call id and record digest, written
in the transaction that deletes the row: the writer reads them (`retired`)
so that a replay of a deleted call is a no-op, not a second count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Sequence, TextIO

from sqlalchemy import and_, false, func, not_, or_, select, update
from sqlalchemy.orm import Session

from ..accounting.buckets import BUCKET, floor, mixed_buckets
from ..accounting.closes import CloseEvent, active_closes
from .closes import close_events
from ..terminal import Progress
from .engine import IDS_A_STATEMENT, Ledger, insert_for
from .models import Call, RetentionRun, RetiredCall

BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Horizon:
    """Raw calls of closed periods started before `before` may be gone (deleted by a run with `calls_days`)."""

    before: datetime
    calls_days: int

    def note(self) -> str:
        return (f"calls started before {self.before:%Y-%m-%dT%H:%M:%SZ} in closed periods were deleted by retention "
                f"(calls_days = {self.calls_days}); totals come from the rollups")

    def reaches(self, start: datetime | None) -> bool:
        """Whether a range starting at `start` (None: the beginning) reaches before the horizon."""
        return start is None or start < self.before


_HORIZON = (select(RetentionRun.deleted_before, RetentionRun.calls_days).where(RetentionRun.calls_deleted > 0)
            .order_by(RetentionRun.deleted_before.desc(), RetentionRun.id.desc()).limit(1))


def horizon(session: Session) -> Horizon | None:
    """The latest instant before which a run deleted calls, or None when retention never deleted any."""
    row = session.execute(_HORIZON).first()
    return None if row is None else Horizon(row[0], row[1])


def retained_ranges(events: Sequence[CloseEvent], before: datetime) -> list[tuple[datetime, datetime]]:
    """The ranges of start times whose raw calls retention may have deleted: of every period ever closed, what
    lies before `before` (a period reopened since keeps its gaps)."""
    return sorted({(e.period.start, min(e.period.end, before)) for e in events
                   if e.action == "close" and e.period.start < before})


def gone_ranges(session: Session) -> list[tuple[datetime, datetime]]:
    """`retained_ranges` of the ledger's horizon: empty when retention never deleted a call."""
    found = horizon(session)
    return [] if found is None else retained_ranges(close_events(session), found.before)


def deletable(events: Sequence[CloseEvent], before: datetime):
    """The WHERE of the calls a run may delete (see the module's docstring)."""
    started_mixed, recorded_mixed = mixed_buckets(
        [t for e in events for t in (e.period.start, e.period.end)], [e.at for e in events])
    keep = [not_(and_(Call.started_at >= b, Call.started_at < b + BUCKET)) for b in sorted(started_mixed)]
    keep += [not_(and_(Call.recorded_at >= b, Call.recorded_at < b + BUCKET)) for b in sorted(recorded_mixed)]
    closed = [
        and_(Call.started_at >= c.period.start, Call.started_at < min(c.period.end, before),
             Call.recorded_at < floor(c.at))
        for c in active_closes(events) if c.period.start < before
    ]
    return and_(or_(*closed) if closed else false(), *keep)


def count_deletable(session: Session, before: datetime) -> int:
    return session.scalar(select(func.count()).select_from(Call).where(deletable(close_events(session), before))) or 0


def start_run(session: Session, ran_at: datetime, before: datetime, calls_days: int) -> int:
    """Record a run before it deletes anything: its horizon holds from its first batch on."""
    run = RetentionRun(ran_at=ran_at, deleted_before=before, calls_days=calls_days, calls_deleted=0)
    session.add(run)
    session.flush()
    return run.id


def delete_batch(session: Session, run_id: int, before: datetime, size: int = BATCH) -> int:
    """Delete up to `size` deletable calls (lowest ids first), keep their ids in `retired_calls` and count them on
    the run, in the caller's transaction: how many. The closes are read again in it, so a period reopened since
    keeps its calls."""
    found = session.execute(select(Call.id, Call.call_id, Call.record_digest)
                            .where(deletable(close_events(session), before)).order_by(Call.id).limit(size)).all()
    if not found:
        return 0
    session.execute(insert_for(session, RetiredCall.__table__).on_conflict_do_nothing(index_elements=["call_id"]),
                    [{"call_id": call_id, "record_digest": digest, "retention_run_id": run_id} for _, call_id, digest in found])
    deleted = session.execute(Call.__table__.delete().where(Call.id.in_([row[0] for row in found]))).rowcount or 0
    if deleted:
        session.execute(update(RetentionRun).where(RetentionRun.id == run_id)
                        .values(calls_deleted=RetentionRun.calls_deleted + deleted))
    return deleted


def retired(session: Session, rows: Sequence[tuple], started_at: int) -> dict[str, str]:
    """{call id: record digest} of the `rows` (call id first, `started_at` at that position) whose raw row retention
    deleted: a batch the writer has just inserted, in its transaction.

    One query a batch (the horizon); the ids are looked up only for rows
    started before it (retention deleted no other), so a batch of recent
    calls costs that one query. Read after the insert: on PostgreSQL a
    retention batch deleting one of these ids concurrently holds the insert
    on the call id's unique index until it commits, and is then seen here.
    """
    row = session.connection().execute(_HORIZON).first()  # Core: the ORM's result handling is most of its cost
    if row is None:
        return {}
    before = row[0]
    old = [values[0] for values in rows if values[started_at] < before]
    found: dict[str, str] = {}
    for at in range(0, len(old), IDS_A_STATEMENT):
        found.update(session.execute(select(RetiredCall.call_id, RetiredCall.record_digest)
                                     .where(RetiredCall.call_id.in_(old[at : at + IDS_A_STATEMENT]))).all())
    return found



def cutoff_for(now: datetime, calls_days: int) -> datetime:
    """`deleted_before` of a run at `now`: calls_days whole days earlier."""
    return now - timedelta(days=calls_days)


class RetentionResult(NamedTuple):
    deleted_before: datetime
    calls_deleted: int


def delete_old_calls(ledger: Ledger, calls_days: int, now: datetime,
                     progress_stream: TextIO | None = None, batch: int = BATCH) -> RetentionResult:
    """Delete the calls this module allows before `now` less calls_days, a batch a transaction (a run cut short
    leaves whole batches, and the next run goes on), with a progress line on a terminal."""
    before = cutoff_for(now, calls_days)
    with ledger.session() as session:
        total = count_deletable(session, before)
        run_id = start_run(session, now, before, calls_days)
    progress = Progress(total, "retention (calls)", progress_stream)
    deleted = 0
    while True:
        with ledger.session() as session:
            done = delete_batch(session, run_id, before, batch)
        if not done:
            break
        deleted += done
        progress.advance(done)
    progress.finish()
    return RetentionResult(before, deleted)
