"""Alerts and their outbox: raised once by unique key, written before they are sent, claimed per attempt.

`raise_alert` inserts an alert and a pending delivery for each of its
channels in the caller's transaction (INSERT ... ON CONFLICT DO NOTHING on
the alert's key: a second replica's insert is a no-op). A sender `claim`s a
delivery for one attempt with a conditional UPDATE of its lease, sends, then
`finish`es it, keeping the attempt; a sender that dies mid-attempt leaves a
lease that runs out, and the delivery is tried again (at least once, recorded
once). Every function takes a Session.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable, NamedTuple, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ..accounting.alerts import ALERT, BUDGET, RESOLVED, Condition, OpenAlert, Resolve
from ..exactjson import dumps
from .engine import insert_for
from .models import Alert, AlertDelivery, DeliveryAttempt

PENDING, DELIVERED = "pending", "delivered"
# An attempt's outcome: taken; failed (tried again); or sent whole and unanswered, not tried again (Slack).
FAILED, UNCONFIRMED = "failed", "unconfirmed"
AMOUNTS = ("spent", "limit", "percent", "projection", "balance", "below", "burn_per_day", "runway_days", "top_up",
           "credits_charged", "credits_expected", "usd")


def message_id(alert_key: str, kind: str, channel: str) -> str:
    """The delivery's id, the same on every attempt (Standard Webhooks' webhook-id: receivers de-duplicate on it)."""
    return "msg_" + hashlib.sha256(f"{alert_key}\n{kind}\n{channel}".encode()).hexdigest()[:32]


def read_facts(text: str) -> dict[str, Any]:
    """An alert's facts as stored, amounts back as Decimals."""
    facts = json.loads(text)
    for name in AMOUNTS:
        if isinstance(facts.get(name), str):
            facts[name] = Decimal(facts[name])
    return facts


def _deliveries(alert_id: int, alert_key: str, kind: str, channels: Iterable[str], now: datetime) -> list[dict]:
    return [
        {"alert_id": alert_id, "kind": kind, "channel": channel, "message_id": message_id(alert_key, kind, channel),
         "status": PENDING, "attempts": 0, "created_at": now, "next_attempt_at": now}
        for channel in channels
    ]


def _add_deliveries(session: Session, rows: list[dict]) -> None:
    if rows:
        statement = insert_for(session, AlertDelivery.__table__).on_conflict_do_nothing(
            index_elements=["alert_id", "kind", "channel"])
        session.execute(statement, rows)


def raise_alert(session: Session, alert_key: str, condition: Condition, now: datetime, host: str) -> int | None:
    """Insert the alert and its pending deliveries; its id, or None when it was raised already."""
    statement = insert_for(session, Alert.__table__).on_conflict_do_nothing(index_elements=["alert_key"]).returning(Alert.id)
    alert_id = session.scalar(statement, {
        "alert_key": alert_key, "condition_id": condition.condition_id, "subject": condition.subject,
        "name": condition.name, "kind": condition.kind, "threshold": condition.threshold,
        "period_label": condition.period_label, "period_end": condition.period_end, "raised_at": now,
        "raised_by": host, "message": condition.message, "facts": dumps(condition.facts, sort_keys=True),
    })
    if alert_id is not None:
        _add_deliveries(session, _deliveries(alert_id, alert_key, ALERT, condition.channels, now))
    return alert_id


def resolve_alerts(session: Session, resolve: Resolve, now: datetime) -> bool:
    """Mark the group resolved and queue its one notice; False when another evaluator resolved it first."""
    carrier = resolve.alerts[0]
    won = session.execute(
        update(Alert).where(Alert.id == carrier.id, Alert.resolved_at.is_(None))
        .values(resolved_at=now, resolved_message=resolve.message)
    ).rowcount
    if not won:
        return False
    others = [alert.id for alert in resolve.alerts[1:]]
    if others:
        session.execute(update(Alert).where(Alert.id.in_(others), Alert.resolved_at.is_(None))
                        .values(resolved_at=now, resolved_message=f"resolved with {carrier.alert_key}"))
    _add_deliveries(session, _deliveries(carrier.id, carrier.alert_key, RESOLVED, resolve.channels, now))
    return True


def open_alerts(session: Session, condition_ids: Sequence[str]) -> list[OpenAlert]:
    if not condition_ids:
        return []
    rows = session.scalars(select(Alert).where(Alert.condition_id.in_(sorted(set(condition_ids))),
                                               Alert.resolved_at.is_(None)).order_by(Alert.id))
    return [OpenAlert(r.id, r.alert_key, r.condition_id, r.subject, r.name, r.kind, r.threshold, r.period_label,
                      r.period_end, read_facts(r.facts)) for r in rows]


def episode_counts(session: Session, condition_ids: Sequence[str]) -> dict[str, int]:
    if not condition_ids:
        return {}
    query = (select(Alert.condition_id, func.count()).where(Alert.condition_id.in_(sorted(set(condition_ids))))
             .group_by(Alert.condition_id))
    return dict(session.execute(query).all())


# ---------------------------------------------------------------- the outbox


def due_deliveries(session: Session, now: datetime, limit: int = 200) -> list[int]:
    """Pending deliveries whose next attempt is due and that nobody holds."""
    query = (select(AlertDelivery.id)
             .where(AlertDelivery.status == PENDING, AlertDelivery.next_attempt_at <= now,
                    or_(AlertDelivery.lease_until.is_(None), AlertDelivery.lease_until < now))
             .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id).limit(limit))
    return list(session.scalars(query))


def claim(session: Session, delivery_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    """Take the delivery for one attempt; False when another sender holds it or it is done."""
    return bool(session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id, AlertDelivery.status == PENDING, AlertDelivery.next_attempt_at <= now,
               or_(AlertDelivery.lease_until.is_(None), AlertDelivery.lease_until < now))
        .values(lease_owner=owner, lease_until=now + lease, attempts=AlertDelivery.attempts + 1)
    ).rowcount)


class Claimed(NamedTuple):
    """A claimed delivery with what it sends."""

    delivery: AlertDelivery
    alert: Alert


def claimed(session: Session, delivery_id: int) -> Claimed:
    delivery = session.get(AlertDelivery, delivery_id)
    return Claimed(delivery, session.get(Alert, delivery.alert_id))


def finish(session: Session, delivery_id: int, owner: str, attempt: int, started_at: datetime, ended_at: datetime,
           detail: str, host: str, next_attempt_at: datetime | None, outcome: str = DELIVERED) -> bool:
    """Record the attempt; done when `next_attempt_at` is None (its `outcome`: delivered or unconfirmed), else pending again from then.

    False (and nothing changed but the attempt kept) when the lease was lost meanwhile.
    """
    session.add(DeliveryAttempt(delivery_id=delivery_id, attempt=attempt, started_at=started_at, ended_at=ended_at,
                                outcome=FAILED if next_attempt_at else outcome, detail=detail[:2000], host=host))
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if next_attempt_at is None:
        values.update(status=DELIVERED, delivered_at=ended_at, last_error=None)
    else:
        values.update(next_attempt_at=next_attempt_at, last_error=detail[:2000])
    return bool(session.execute(
        update(AlertDelivery).where(AlertDelivery.id == delivery_id, AlertDelivery.lease_owner == owner).values(**values)
    ).rowcount)


# ---------------------------------------------------------------- history


class AlertHistory(NamedTuple):
    alert: Alert
    deliveries: tuple[tuple[AlertDelivery, tuple[DeliveryAttempt, ...]], ...]


def alert_history(session: Session, since: datetime | None = None, *, budgets: Sequence[str] | None = None,
                  open_only: bool = False) -> list[AlertHistory]:
    """Every alert raised since `since`, oldest first, with its deliveries and their attempts.

    `budgets`: only the alerts of the budgets so named (a dashboard viewer limited to some projects sees
    those of its budgets alone); `open_only`: only those not resolved.
    """
    query = select(Alert).order_by(Alert.raised_at, Alert.id)
    if budgets is not None:
        query = query.where(Alert.subject == BUDGET, Alert.name.in_(sorted(set(budgets))))
    if open_only:
        query = query.where(Alert.resolved_at.is_(None))
    if since is not None:
        query = query.where(or_(Alert.raised_at >= since, Alert.resolved_at >= since))
    alerts = list(session.scalars(query))
    if not alerts:
        return []
    ids = [a.id for a in alerts]
    deliveries = list(session.scalars(select(AlertDelivery).where(AlertDelivery.alert_id.in_(ids))
                                      .order_by(AlertDelivery.id)))
    attempts: dict[int, list[DeliveryAttempt]] = {}
    if deliveries:
        for attempt in session.scalars(select(DeliveryAttempt).where(
                DeliveryAttempt.delivery_id.in_([d.id for d in deliveries])).order_by(DeliveryAttempt.id)):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    by_alert: dict[int, list] = {}
    for delivery in deliveries:
        by_alert.setdefault(delivery.alert_id, []).append((delivery, tuple(attempts.get(delivery.id, ()))))
    return [AlertHistory(a, tuple(by_alert.get(a.id, ()))) for a in alerts]
