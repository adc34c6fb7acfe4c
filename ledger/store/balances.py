"""Balance snapshots and top-ups, and the ledger's sums over the windows between snapshots.

Every function takes a Session. The sums for reconciliation are made in SQL:
a call counts in the window in which it ended (the platform charges a call
when it completes, before its last byte).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Sequence

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from ..accounting.records import ABORTED, ERROR, FAILED
from ..accounting.reconcile import ClassSum, LedgerSums
from ..accounting.snapshots import OK, BalanceSnapshotValue, SnapshotPoint
from ..money import ZERO
from .engine import insert_for
from .models import BalanceSnapshot, Call, TopUp

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
    )
    session.add(row)
    session.flush()
    return row.id


def snapshot_point(row: BalanceSnapshot) -> SnapshotPoint | None:
    """The figures of a stored snapshot, None where it has none (a failed poll)."""
    if row.balance is None or row.total_purchased is None or row.total_consumed is None:
        return None
    return SnapshotPoint(row.id, row.taken_at, row.balance, row.total_purchased, row.total_consumed)


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


def record_top_ups(session: Session, account: str, points: Sequence[SnapshotPoint]) -> int:
    """A top_ups row for each rise of total_purchased; idempotent per snapshot. Returns rows added."""
    rows = [
        {"account": account, "snapshot_id": b.id, "detected_at": b.taken_at, "credits": b.total_purchased - a.total_purchased}
        for a, b in zip(points, points[1:])
        if b.total_purchased > a.total_purchased
    ]
    if not rows:
        return 0
    statement = insert_for(session, TopUp.__table__).on_conflict_do_nothing(index_elements=["snapshot_id"])
    return len(session.scalars(statement.returning(TopUp.id), rows).all())


def top_ups(session: Session, account: str | None = None) -> list[TopUp]:
    query = select(TopUp).order_by(TopUp.detected_at, TopUp.id)
    if account is not None:
        query = query.where(TopUp.account == account)
    return list(session.scalars(query))


# ---------------------------------------------------------------- ledger sums

CHARGE_TIME = func.coalesce(Call.ended_at, Call.started_at)
# Calls are found through the started_at index: none is expected to last longer than this.
LONGEST_CALL = timedelta(hours=6)


def ledger_sums(
    session: Session,
    fingerprints: frozenset[str],
    all_fingerprints: frozenset[str],
    after: datetime,
    until: datetime,
) -> LedgerSums:
    """What the ledger knows of calls that ended in (after, until]: the account's, and keyless ones."""
    mine = Call.key_fingerprint.in_(sorted(fingerprints))
    known = Call.key_fingerprint.in_(sorted(all_fingerprints))
    owner = case((mine, literal("mine")), (known, literal("other")), else_=literal("none"))
    has_charge = Call.credits_charged.is_not(None)
    priced = and_(has_charge, Call.credits_expected.is_not(None))
    query = (
        select(
            owner.label("owner"),
            Call.pricing_class,
            Call.status,
            has_charge.label("has_charge"),
            func.count(),
            func.sum(Call.credits_charged),
            func.sum(case((priced, Call.credits_charged))),
            func.sum(case((priced, Call.credits_expected))),
            func.max(Call.credits_charged),
        )
        .where(
            Call.started_at > after - LONGEST_CALL,
            Call.started_at <= until,
            CHARGE_TIME > after,
            CHARGE_TIME <= until,
        )
        .group_by(owner, Call.pricing_class, Call.status, has_charge)
    )
    by_class: dict[str, list] = {}
    calls = aborted = unknown = other_calls = 0
    charged = priced_charged = expected = aborted_charged = max_charge = other_charged = ZERO
    for who, klass, status, with_charge, count, s_charged, s_priced, s_expected, m_charged in session.execute(query):
        s_charged = s_charged or ZERO
        if who != "mine":
            if who == "none":
                other_calls += count
                other_charged += s_charged
            continue
        calls += count
        charged += s_charged
        priced_charged += s_priced or ZERO
        expected += s_expected or ZERO
        max_charge = max(max_charge, m_charged or ZERO)
        entry = by_class.setdefault(klass, [0, ZERO, ZERO, ZERO])
        entry[0] += count
        entry[1] += s_charged
        entry[2] += s_priced or ZERO
        entry[3] += s_expected or ZERO
        if status in (ABORTED, FAILED):
            aborted += count
            aborted_charged += s_charged
        if not with_charge and status != ERROR:
            unknown += count  # the platform may have charged it; the ledger cannot say how much
    if not (calls or other_calls):
        return LedgerSums()
    return LedgerSums(
        calls=calls,
        charged=charged,
        priced_charged=priced_charged,
        expected=expected,
        by_class=tuple(ClassSum(k, *v) for k, v in sorted(by_class.items())),
        aborted=aborted,
        aborted_charged=aborted_charged,
        unknown_charge=unknown,
        max_charge=max_charge,
        unattributed_calls=other_calls,
        unattributed_charged=other_charged,
    )


def edge_charges(session: Session, fingerprints: frozenset[str], at: datetime, edge: timedelta) -> Decimal:
    """Charges of the account's calls that ended within `edge` of a snapshot: either side of it."""
    if edge <= timedelta(0):
        return ZERO
    query = select(func.sum(Call.credits_charged)).where(
        Call.key_fingerprint.in_(sorted(fingerprints)),
        Call.started_at > at - edge - LONGEST_CALL,
        Call.started_at <= at + edge,
        CHARGE_TIME >= at - edge,
        CHARGE_TIME <= at + edge,
    )
    return session.execute(query).scalar() or ZERO
