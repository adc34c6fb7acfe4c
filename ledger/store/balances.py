"""Balance snapshots and top-ups, and the ledger's sums over the windows between snapshots.

Every function takes a Session. The sums for reconciliation are made in SQL:
a call counts in the window in which it ended (the platform charges a call
when it completes, before its last byte).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Sequence

from sqlalchemy import Column, Integer, MetaData, Table, and_, case, func, select, type_coerce
from sqlalchemy.orm import Session

from ..accounting.pricing import CLEAN_CLASSES, ROUNDING
from ..accounting.pricing import OK as OK_CLASS
from ..accounting.records import ABORTED, COMPLETED, ERROR, FAILED
from ..accounting.reconcile import NO_OVERLAP, ClassSum, LedgerSums, Overlap
from ..accounting.snapshots import OK, BalanceSnapshotValue, SnapshotPoint, TopUpValue, top_ups_between
from ..money import ZERO
from .models import BalanceSnapshot, Call, Credits, UTCDateTime, as_utc

# ---------------------------------------------------------------- snapshots and top-ups


def insert_snapshot(session: Session, value: BalanceSnapshotValue) -> int:
    row = BalanceSnapshot(
        account=value.account,
        key_fingerprint=value.key_fingerprint,
        taken_at=value.taken_at,
        balance=value.balance,
        total_purchased=value.total_purchased,
        total_consumed=value.total_consumed,
        status=value.status,
        raw_response=value.raw_response,
        answered_at=value.received_at,
    )
    session.add(row)
    session.flush()
    return row.id


def snapshot_point(row: BalanceSnapshot) -> SnapshotPoint | None:
    """The figures of a stored snapshot, None where it has none (a failed poll)."""
    if row.balance is None or row.total_purchased is None or row.total_consumed is None:
        return None
    return SnapshotPoint(row.id, row.taken_at, row.balance, row.total_purchased, row.total_consumed, row.answered_at)


def _ok(account: str):
    return select(BalanceSnapshot).where(BalanceSnapshot.account == account, BalanceSnapshot.status == OK)


def snapshot_accounts(session: Session) -> list[str]:
    return list(session.scalars(select(BalanceSnapshot.account).distinct().order_by(BalanceSnapshot.account)))


def ok_snapshots(
    session: Session, account: str, start: datetime | None = None, end: datetime | None = None
) -> list[SnapshotPoint]:
    query = _ok(account).order_by(BalanceSnapshot.taken_at, BalanceSnapshot.id)
    if start is not None:
        query = query.where(BalanceSnapshot.taken_at >= start)
    if end is not None:
        query = query.where(BalanceSnapshot.taken_at <= end)
    return [point for point in map(snapshot_point, session.scalars(query)) if point is not None]


def ok_snapshots_of(
    session: Session, accounts: Sequence[str], start: datetime | None = None, end: datetime | None = None
) -> dict[str, list[SnapshotPoint]]:
    """`ok_snapshots` of each of `accounts` (each oldest first), in one query whatever their number."""
    found: dict[str, list[SnapshotPoint]] = {name: [] for name in accounts}
    if not found:
        return found
    query = (select(BalanceSnapshot).where(BalanceSnapshot.account.in_(sorted(found)), BalanceSnapshot.status == OK)
             .order_by(BalanceSnapshot.account, BalanceSnapshot.taken_at, BalanceSnapshot.id))
    if start is not None:
        query = query.where(BalanceSnapshot.taken_at >= start)
    if end is not None:
        query = query.where(BalanceSnapshot.taken_at <= end)
    for row in session.scalars(query):
        point = snapshot_point(row)
        if point is not None:
            found[row.account].append(point)
    return found


def bracketing_snapshots(
    session: Session, account: str, start: datetime, end: datetime
) -> tuple[SnapshotPoint | None, list[SnapshotPoint], SnapshotPoint | None]:
    """The last usable snapshot before `start`, those in [start, end), and the first at or after `end`."""
    ordered = _ok(account).order_by(BalanceSnapshot.taken_at, BalanceSnapshot.id)
    before = session.scalars(
        _ok(account).where(BalanceSnapshot.taken_at < start)
        .order_by(BalanceSnapshot.taken_at.desc(), BalanceSnapshot.id.desc()).limit(1)
    ).first()
    after = session.scalars(ordered.where(BalanceSnapshot.taken_at >= end).limit(1)).first()
    inside = [p for p in ok_snapshots(session, account, start, end) if p.taken_at < end]
    return (None if before is None else snapshot_point(before)), inside, (None if after is None else snapshot_point(after))


def refunds_between(session: Session, account: str, start: datetime, end: datetime) -> Decimal:
    """The falls of total_consumed between consecutive usable snapshots taken in [start, end]: credits the
    platform refunded (0 or less), summed in SQL over however many polls there were."""
    previous = func.lag(BalanceSnapshot.total_consumed).over(order_by=(BalanceSnapshot.taken_at, BalanceSnapshot.id))
    rises = (
        select((BalanceSnapshot.total_consumed - previous).label("rise"))
        .where(BalanceSnapshot.account == account, BalanceSnapshot.status == OK,
               BalanceSnapshot.total_consumed.is_not(None), BalanceSnapshot.taken_at >= start,
               BalanceSnapshot.taken_at <= end)
        .subquery()
    )
    total = session.scalar(select(type_coerce(func.sum(rises.c.rise), Credits)).where(rises.c.rise < 0))
    return total if total is not None else ZERO


def failed_polls(session: Session, account: str, start: datetime | None, end: datetime | None) -> dict[str, int]:
    """How many polls of the account gave no usable figures, by status."""
    query = (
        select(BalanceSnapshot.status, func.count())
        .where(BalanceSnapshot.account == account, BalanceSnapshot.status != OK)
        .group_by(BalanceSnapshot.status)
    )
    if start is not None:
        query = query.where(BalanceSnapshot.taken_at >= start)
    if end is not None:
        query = query.where(BalanceSnapshot.taken_at <= end)
    return {status: count for status, count in session.execute(query)}


def first_ok_snapshot(session: Session, account: str) -> SnapshotPoint | None:
    row = session.scalars(_ok(account).order_by(BalanceSnapshot.taken_at, BalanceSnapshot.id).limit(1)).first()
    return None if row is None else snapshot_point(row)


def previous_ok_snapshot(session: Session, account: str, before_id: int) -> SnapshotPoint | None:
    row = session.scalars(
        _ok(account)
        .where(BalanceSnapshot.id != before_id)
        .order_by(BalanceSnapshot.taken_at.desc(), BalanceSnapshot.id.desc())
        .limit(1)
    ).first()
    return None if row is None else snapshot_point(row)


def last_ok_before(session: Session, account: str, instant: datetime) -> SnapshotPoint | None:
    row = session.scalars(
        _ok(account).where(BalanceSnapshot.taken_at < instant)
        .order_by(BalanceSnapshot.taken_at.desc(), BalanceSnapshot.id.desc()).limit(1)
    ).first()
    return None if row is None else snapshot_point(row)


def top_ups_in(session: Session, start: datetime, end: datetime, account: str | None = None) -> list[TopUpValue]:
    """The top-ups detected in [start, end), read from the snapshots at each call, whatever has run before.

    Each account's usable snapshots of the range follow the last one before it, so a top-up between the
    two is the range's (detected by its first snapshot), as the poller dates it.
    """
    found: list[TopUpValue] = []
    for name in [account] if account is not None else snapshot_accounts(session):
        before = last_ok_before(session, name, start)
        points = [p for p in ok_snapshots(session, name, start, end) if p.taken_at < end]
        found += top_ups_between(name, ([before] if before is not None else []) + points)
    return sorted(found, key=lambda t: (t.detected_at, t.account))


# ---------------------------------------------------------------- the ledger between snapshots

CHARGE_TIME = func.coalesce(Call.ended_at, Call.started_at)
# Calls in flight at the first snapshot are looked for this far back: none is expected to last longer.
LONGEST_CALL = timedelta(hours=6)


def windows_and_overlaps(
    session: Session,
    fingerprints: frozenset[str],
    all_fingerprints: frozenset[str],
    points: Sequence[SnapshotPoint],
    billing_settle: timedelta,
) -> tuple[list[LedgerSums], list[Overlap]]:
    """The ledger's sums for each window between consecutive `points`, and the overlap of each poll: one statement.

    A call is in the window in which it started (started_at in (sent_i, sent_i+1]):
    the windows partition the started_at index, so each call is read once. At
    the same pass, each window's calls that may have been booked on the other
    side of a snapshot are summed: started before the poll's answer came back
    (`booked_early` of the window's first snapshot), or ended within the
    billing's settle time of the next poll's request (`booked_late` of that
    snapshot). A call that outlasts a whole window is read again on its own.
    """
    if len(points) < 2:
        return [], [NO_OVERLAP] * len(points)
    sent = [p.taken_at for p in points]
    answered = [p.answered_at or p.taken_at for p in points]
    last = len(points) - 1
    # Window i is (sent[i], sent[i+1]]; window -1 holds the calls in flight at the first poll,
    # window `last` those that started while the last poll was answered.
    bounds = [(-1, sent[0] - LONGEST_CALL, sent[0], sent[0], sent[0] - billing_settle, sent[1] - billing_settle)]
    for i in range(last):
        after_next = sent[i + 2] - billing_settle if i + 2 <= last else sent[last] + LONGEST_CALL
        bounds.append((i, sent[i], sent[i + 1], answered[i], sent[i + 1] - billing_settle, after_next))
    bounds.append((last, sent[last], answered[last], answered[last], answered[last] + LONGEST_CALL, answered[last] + LONGEST_CALL))
    window = _windows_table(session, bounds)
    # Two statements, each one pass over the windows' calls: the account's calls summed per window
    # (no sort: the windows come in order), and the few calls that are not plain (another key, not
    # completed, a finding) grouped finely. Plain calls are then what the first has and the second does not.
    joined = window.join(Call, and_(Call.started_at > window.c.lo, Call.started_at <= window.c.hi))
    mine = Call.key_fingerprint.in_(sorted(fingerprints))
    is_ok = Call.pricing_class == OK_CLASS
    totals = (
        select(
            window.c.idx, func.count(), func.sum(Call.credits_charged), func.sum(Call.credits_expected),
            func.max(Call.credits_charged),
            func.sum(case((Call.started_at <= window.c.early_until, Call.credits_charged))),
            func.sum(case((CHARGE_TIME > window.c.late_after, Call.credits_charged))),
            func.count(case((CHARGE_TIME > window.c.beyond_after, 1))),
            func.count(case((is_ok, 1))), func.sum(case((is_ok, Call.credits_charged))),
        )
        .select_from(joined).where(mine).group_by(window.c.idx)
    )
    plain = and_(mine, Call.status == COMPLETED, Call.pricing_class.in_(sorted(CLEAN_CLASSES)))
    has_charge, has_expected = Call.credits_charged.is_not(None), Call.credits_expected.is_not(None)
    others = (
        select(
            window.c.idx, Call.key_fingerprint, Call.pricing_class, Call.status, has_charge, has_expected,
            func.count(), func.sum(Call.credits_charged), func.sum(Call.credits_expected),
        )
        .select_from(joined).where(~plain)
        .group_by(window.c.idx, Call.key_fingerprint, Call.pricing_class, Call.status, has_charge, has_expected)
    )
    sums = {i: _Window() for i in range(last)}
    early = [ZERO] * len(points)
    late = [ZERO] * len(points)
    outlasting: list[int] = []
    for idx, count, s_charged, s_expected, m_charged, s_early, s_late, n_beyond, n_ok, s_ok in session.execute(totals):
        if 0 <= idx < last:
            sums[idx].total(count, s_charged, s_expected, m_charged, n_ok, s_ok)
        if idx >= 0:
            early[idx] += s_early or ZERO
        if idx + 1 <= last:
            late[idx + 1] += s_late or ZERO
        if n_beyond and idx + 2 <= last:
            outlasting.append(idx)
    for idx, fp, klass, status, with_charge, with_expected, count, s_charged, s_expected in session.execute(others):
        if not 0 <= idx < last:
            continue
        if fp in fingerprints:
            sums[idx].not_plain(klass, status, with_charge, with_expected, count, s_charged, s_expected)
        elif fp not in all_fingerprints:
            sums[idx].unattributed(count, s_charged)
    for idx in sorted(set(outlasting)):  # calls longer than a window: booked late at every poll they outlast
        lo, hi = sent[0] - LONGEST_CALL if idx < 0 else sent[idx], sent[idx + 1]
        rows = session.execute(
            select(CHARGE_TIME, Call.credits_charged).where(
                Call.key_fingerprint.in_(sorted(fingerprints)), Call.started_at > lo, Call.started_at <= hi,
                CHARGE_TIME > sent[idx + 2] - billing_settle,
            )
        )
        for ended, charged in rows:
            for k in range(idx + 2, last + 1):
                if as_utc(ended) + billing_settle > sent[k]:
                    late[k] += charged or ZERO
    overlaps = [Overlap(booked_late=late[k], booked_early=early[k]) for k in range(len(points))]
    return [sums[i].value() for i in range(last)], overlaps


_WINDOWS = Table(
    "reconcile_windows", MetaData(),  # a temporary table of the session's, never part of the schema
    Column("idx", Integer, primary_key=True),  # the windows come out in this order: grouping by it needs no sort
    Column("lo", UTCDateTime), Column("hi", UTCDateTime), Column("early_until", UTCDateTime),
    Column("late_after", UTCDateTime), Column("beyond_after", UTCDateTime),
    prefixes=["TEMPORARY"],
)


def _windows_table(session: Session, bounds: list[tuple]) -> Table:
    """The windows as rows of a temporary table of this connection, emptied and filled anew."""
    connection = session.connection()
    _WINDOWS.create(connection, checkfirst=True)
    connection.execute(_WINDOWS.delete())
    connection.execute(_WINDOWS.insert(), [
        {"idx": i, "lo": lo, "hi": hi, "early_until": early, "late_after": late, "beyond_after": beyond}
        for i, lo, hi, early, late, beyond in bounds
    ])
    if connection.dialect.name == "postgresql":
        # Without statistics the planner guesses a thousand windows and a plan costly enough for
        # JIT compilation, which alone takes longer than the statements.
        connection.exec_driver_sql("ANALYZE reconcile_windows")
    return _WINDOWS


class _Window:
    """A window's sums as the rows of the two statements come in."""

    def __init__(self) -> None:
        self.by_class: dict[str, list] = {}
        self.calls = self.aborted = self.unknown = self.other_calls = 0
        self.charged = self.priced_charged = self.expected = self.aborted_charged = self.max_charge = ZERO
        self.other_charged = ZERO
        # what is plain (completed, clean) of the account's calls: the totals less what is not
        self.plain = [0, ZERO, ZERO]  # calls, charged (= priced), expected
        self.plain_ok = [0, ZERO]  # of which in the class ok: calls, charged (= expected)

    def total(self, count, s_charged, s_expected, m_charged, n_ok, s_ok) -> None:
        self.calls += count
        self.charged += s_charged or ZERO
        self.max_charge = max(self.max_charge, m_charged or ZERO)
        self.plain = [count, s_charged or ZERO, s_expected or ZERO]
        self.plain_ok = [n_ok, s_ok or ZERO]

    def not_plain(self, klass, status, with_charge, with_expected, count, s_charged, s_expected) -> None:
        s_charged, s_expected = s_charged or ZERO, s_expected or ZERO
        self.plain[0] -= count
        self.plain[1] -= s_charged
        self.plain[2] -= s_expected
        if klass == OK_CLASS:
            self.plain_ok[0] -= count
            self.plain_ok[1] -= s_charged
        priced = s_charged if with_expected else ZERO
        expected = s_expected if with_charge else ZERO
        self._add(klass, count, s_charged, priced, expected)
        if status in (ABORTED, FAILED):
            self.aborted += count
            self.aborted_charged += s_charged
        if not with_charge and status != ERROR:
            self.unknown += count  # the platform may have charged it; the ledger cannot say how much

    def _add(self, klass, count, charged, priced, expected) -> None:
        self.priced_charged += priced
        self.expected += expected
        entry = self.by_class.setdefault(klass, [0, ZERO, ZERO, ZERO])
        entry[0] += count
        entry[1] += charged
        entry[2] += priced
        entry[3] += expected

    def unattributed(self, count, s_charged) -> None:
        self.other_calls += count
        self.other_charged += s_charged or ZERO

    def value(self) -> LedgerSums:
        calls, charged, expected = self.plain
        ok_calls, ok_charged = self.plain_ok
        if ok_calls:
            self._add(OK_CLASS, ok_calls, ok_charged, ok_charged, ok_charged)  # charged what the card says
        if calls - ok_calls:
            self._add(ROUNDING, calls - ok_calls, charged - ok_charged, charged - ok_charged, expected - ok_charged)
        self.plain = [0, ZERO, ZERO]
        self.plain_ok = [0, ZERO]
        if not (self.calls or self.other_calls):
            return LedgerSums()
        return LedgerSums(
            calls=self.calls,
            charged=self.charged,
            priced_charged=self.priced_charged,
            expected=self.expected,
            by_class=tuple(ClassSum(k, *v) for k, v in sorted(self.by_class.items())),
            aborted=self.aborted,
            aborted_charged=self.aborted_charged,
            unknown_charge=self.unknown,
            max_charge=self.max_charge,
            unattributed_calls=self.other_calls,
            unattributed_charged=self.other_charged,
        )
