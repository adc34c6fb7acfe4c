"""The `period_closes` table: closes and reopens, only ever added."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..accounting.closes import CLOSE, REOPEN, CloseEvent
from ..accounting.periods import Period
from .models import PeriodClose


def close_rows(session: Session) -> list[PeriodClose]:
    return list(session.scalars(select(PeriodClose).order_by(PeriodClose.cutoff_at, PeriodClose.id)))


def period_of(row: PeriodClose) -> Period:
    return Period(row.period_kind, row.period_label, row.period_start, row.period_end, row.zone)


def close_events(session: Session) -> list[CloseEvent]:
    """Every close and reopen, as the rules of `accounting.closes` take them (a small table: read whole)."""
    return [CloseEvent(row.id, row.action, period_of(row), row.cutoff_at) for row in close_rows(session)]


def insert_close(
    session: Session,
    period: Period,
    cutoff_at: datetime,
    created_at: datetime,
    *,
    calls: int,
    credits_charged: Decimal,
    credits_expected: Decimal,
    totals_json: str,
    calls_digest: str,
    reconciliation: str,
    reconciliation_json: str | None,
    reason: str | None,
    host: str | None,
) -> PeriodClose:
    row = PeriodClose(
        action=CLOSE, period_kind=period.kind, period_label=period.label, zone=period.zone,
        period_start=period.start, period_end=period.end, cutoff_at=cutoff_at, created_at=created_at,
        calls=calls, credits_charged=credits_charged, credits_expected=credits_expected, totals=totals_json,
        calls_digest=calls_digest, reconciliation=reconciliation, reconciliation_detail=reconciliation_json,
        reason=reason, host=host,
    )
    session.add(row)
    session.flush()
    return row


def insert_reopen(session: Session, period: Period, at: datetime, reason: str, host: str | None) -> PeriodClose:
    row = PeriodClose(
        action=REOPEN, period_kind=period.kind, period_label=period.label, zone=period.zone,
        period_start=period.start, period_end=period.end, cutoff_at=at, created_at=at, reason=reason, host=host,
    )
    session.add(row)
    session.flush()
    return row
