"""Holds on an enforced budget's room: each process's own row, rewritten while the budget's holds are locked.

What a hard limit near its end is admitted through: a process reads the
spend and the others' live holds and writes its own in one transaction that
no other process can interleave with (PostgreSQL: an advisory lock per
budget; SQLite: the database's write lock), so two processes never both take
the last credit.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from ..money import ZERO
from .models import LimitHold

EXPIRED_KEPT = timedelta(days=1)  # an expired hold (of a process that is gone) is deleted after this


def lock_budget(session: Session, budget: str) -> None:
    """Begin the session's transaction holding the budget's lock until it ends (call it first in the session)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"credit-ledger limit " + budget.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    else:
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def held_by_others(session: Session, budget: str, period: str, holder: str, now: datetime) -> Decimal:
    """What the other processes' live holds on the budget's period come to."""
    found = session.scalar(select(func.sum(LimitHold.credits)).where(
        LimitHold.budget == budget, LimitHold.period == period, LimitHold.holder != holder, LimitHold.expires_at > now))
    return found if found is not None else ZERO


def hold(session: Session, budget: str, period: str, holder: str, credits: Decimal, expires_at: datetime) -> None:
    """Set this process's hold on the budget's period (under the budget's lock)."""
    mine = (LimitHold.budget == budget, LimitHold.period == period, LimitHold.holder == holder)
    if session.execute(update(LimitHold).where(*mine).values(credits=credits, expires_at=expires_at)).rowcount:
        return
    session.add(LimitHold(budget=budget, period=period, holder=holder, credits=credits, expires_at=expires_at))
    session.execute(delete(LimitHold).where(LimitHold.budget == budget, LimitHold.expires_at < expires_at - EXPIRED_KEPT))


def release(session: Session, holder: str) -> None:
    """This process's holds go (it ends)."""
    session.execute(delete(LimitHold).where(LimitHold.holder == holder))
