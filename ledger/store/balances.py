"""Balance snapshots and top-ups; the ledger's sums over the windows between snapshots are snapshot_windows.py's.

Every function takes a Session. The functions named `..._of` read every account
asked for in one query, whatever their number (a page reads them for each
account configured).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Mapping, Sequence

from sqlalchemy import and_, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from ..accounting.snapshots import OK, BalanceSnapshotValue, SnapshotPoint, TopUpValue, top_ups_between
from ..money import ZERO
from .models import BalanceSnapshot, Credits

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
    # The columns a point holds, not the snapshot entities (their raw responses, the ORM's identity map): a page
    # reads a month of hourly polls of every account this way.
    query = (select(BalanceSnapshot.account, *_POINT_COLUMNS)
             .where(BalanceSnapshot.account.in_(sorted(found)), BalanceSnapshot.status == OK,
                    BalanceSnapshot.balance.is_not(None), BalanceSnapshot.total_purchased.is_not(None),
                    BalanceSnapshot.total_consumed.is_not(None))
             .order_by(BalanceSnapshot.account, BalanceSnapshot.taken_at, BalanceSnapshot.id))
    if start is not None:
        query = query.where(BalanceSnapshot.taken_at >= start)
    if end is not None:
        query = query.where(BalanceSnapshot.taken_at <= end)
    for account, *point in session.execute(query):
        found[account].append(SnapshotPoint(*point))
    return found


_POINT_COLUMNS = (BalanceSnapshot.id, BalanceSnapshot.taken_at, BalanceSnapshot.balance,
                  BalanceSnapshot.total_purchased, BalanceSnapshot.total_consumed, BalanceSnapshot.answered_at)


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


def bracketing_snapshots_of(
    session: Session, accounts: Sequence[str], start: datetime, end: datetime
) -> dict[str, tuple[SnapshotPoint | None, list[SnapshotPoint], SnapshotPoint | None]]:
    """`bracketing_snapshots` of each of `accounts`, in three queries whatever their number."""
    before = _first_of(session, accounts, BalanceSnapshot.taken_at < start, last=True)
    after = _first_of(session, accounts, BalanceSnapshot.taken_at >= end)
    inside = ok_snapshots_of(session, accounts, start, end)
    return {name: (before[name], [p for p in inside[name] if p.taken_at < end], after[name]) for name in accounts}


def first_ok_snapshots_of(session: Session, accounts: Sequence[str]) -> dict[str, SnapshotPoint | None]:
    """`first_ok_snapshot` of each of `accounts`, in one query."""
    return _first_of(session, accounts)


def _first_of(session: Session, accounts: Sequence[str], *conditions, last: bool = False
              ) -> dict[str, SnapshotPoint | None]:
    """Each account's first (or `last`) usable snapshot meeting `conditions`: a row numbered 1 in its account."""
    found: dict[str, SnapshotPoint | None] = {name: None for name in accounts}
    if not found:
        return found
    order = (BalanceSnapshot.taken_at.desc(), BalanceSnapshot.id.desc()) if last else (
        BalanceSnapshot.taken_at, BalanceSnapshot.id)
    rank = func.row_number().over(partition_by=BalanceSnapshot.account, order_by=order).label("rank")
    ranked = (select(BalanceSnapshot.id, rank)
              .where(BalanceSnapshot.account.in_(sorted(found)), BalanceSnapshot.status == OK, *conditions).subquery())
    for row in session.scalars(select(BalanceSnapshot).join(ranked, ranked.c.id == BalanceSnapshot.id)
                               .where(ranked.c.rank == 1)):
        found[row.account] = snapshot_point(row)
    return found


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


def refunds_between_of(session: Session, ranges: Mapping[str, tuple[datetime, datetime]]) -> dict[str, Decimal]:
    """`refunds_between` of each account over its own [start, end] (`ranges`), in one query: a fall between
    consecutive usable snapshots counts where both were taken in the account's range."""
    found = {name: ZERO for name in ranges}
    if not found:
        return found
    order = (BalanceSnapshot.taken_at, BalanceSnapshot.id)
    rises = (
        select(BalanceSnapshot.account, BalanceSnapshot.taken_at,
               (BalanceSnapshot.total_consumed - func.lag(BalanceSnapshot.total_consumed).over(
                   partition_by=BalanceSnapshot.account, order_by=order)).label("rise"),
               func.lag(BalanceSnapshot.taken_at).over(partition_by=BalanceSnapshot.account, order_by=order)
               .label("previous_at"))
        .where(BalanceSnapshot.account.in_(sorted(found)), BalanceSnapshot.status == OK,
               BalanceSnapshot.total_consumed.is_not(None),
               BalanceSnapshot.taken_at >= min(start for start, _ in ranges.values()),
               BalanceSnapshot.taken_at <= max(end for _, end in ranges.values()))
        .subquery()
    )
    within = or_(*[and_(rises.c.account == name, rises.c.previous_at >= start, rises.c.taken_at <= end)
                   for name, (start, end) in ranges.items()])
    query = (select(rises.c.account, type_coerce(func.sum(rises.c.rise), Credits))
             .where(rises.c.rise < 0, within).group_by(rises.c.account))
    for name, total in session.execute(query):
        found[name] = total if total is not None else ZERO
    return found


def failed_polls_of(session: Session, accounts: Sequence[str], start: datetime | None, end: datetime | None
                    ) -> dict[str, dict[str, int]]:
    """`failed_polls` of each of `accounts`, in one query."""
    found: dict[str, dict[str, int]] = {name: {} for name in accounts}
    if not found:
        return found
    query = (select(BalanceSnapshot.account, BalanceSnapshot.status, func.count())
             .where(BalanceSnapshot.account.in_(sorted(found)), BalanceSnapshot.status != OK)
             .group_by(BalanceSnapshot.account, BalanceSnapshot.status)
             .order_by(BalanceSnapshot.account, BalanceSnapshot.status))
    if start is not None:
        query = query.where(BalanceSnapshot.taken_at >= start)
    if end is not None:
        query = query.where(BalanceSnapshot.taken_at <= end)
    for name, status, count in session.execute(query):
        found[name][status] = count
    return found


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

