"""Delivering the outbox: each due delivery claimed for one attempt, sent, and its attempt kept.

A channel that is down is retried with exponential backoff (at least its
Retry-After) until it takes the message: an alert is delivered later, never
dropped. Two senders (replicas, or two `budgets --notify`) never send one
delivery at once: the claim is a conditional UPDATE of its lease. A sender
that dies between sending and recording leaves its lease to run out and the
delivery is sent again; the Standard Webhooks id stays the same, so a
receiver can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, NamedTuple

from .. import redact
from ..accounting.alerts import REPORT, RESOLVED, alert_title
from ..store import alerts as outbox
from ..store.engine import Ledger
from .channels import DeliveryFailed, Notice, Sender

log = redact.logger("ledger.alerts")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Attempt n after a failure waits min(max_seconds, base_seconds * 2**(n-1)), at least Retry-After."""

    base_seconds: float = 30.0
    max_seconds: float = 1800.0
    lease_seconds: float = 600.0  # longer than an attempt takes (a channel's timeout: 10 s by default, at most 300)

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        wait = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=min(self.max_seconds, max(wait, retry_after or 0.0)))


class Sent(NamedTuple):
    alert_key: str
    kind: str
    channel: str
    attempt: int
    delivered: bool
    detail: str


class DeliveryReport(NamedTuple):
    sent: tuple[Sent, ...]  # every attempt this run made
    held_elsewhere: int  # due deliveries another sender had claimed

    @property
    def delivered(self) -> int:
        return sum(1 for s in self.sent if s.delivered)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.sent if not s.delivered)

    def summary(self) -> str:
        return f"{self.delivered} delivered, {self.failed} failed (retried later), {self.held_elsewhere} held by another sender"


def notice_of(found: outbox.Claimed, at: datetime) -> Notice:
    """What a delivery sends: the alert's text, or its resolved notice."""
    alert, delivery = found.alert, found.delivery
    facts = outbox.read_facts(alert.facts)
    title = alert_title(alert.subject, alert.kind, alert.name, alert.threshold, facts)
    event = f"{alert.subject}.{alert.kind}"
    data = {**facts, "alert": alert.alert_key, "raised_at": alert.raised_at}
    if delivery.kind == RESOLVED:
        return Notice(delivery.message_id, event + ".resolved", "Resolved: " + title, alert.resolved_message or "",
                      {**data, "resolved_at": alert.resolved_at}, at)
    attachments = tuple(facts.get("files", ())) if alert.subject == REPORT else ()
    return Notice(delivery.message_id, event, title, alert.message, data, at, attachments)


def _attempt(sender: Sender | None, channel: str, notice: Notice) -> tuple[bool, str, float | None]:
    if sender is None:
        return False, f"channel {channel!r} is not configured now", None
    try:
        return True, sender.send(notice), None
    except DeliveryFailed as failure:
        return False, failure.detail, failure.retry_after
    except Exception as error:  # a sender's own bug must not stop the others
        return False, f"{type(error).__name__}: {redact.redact(str(error))[:200]}", None


def deliver_due(
    ledger: Ledger,
    senders: Mapping[str, Sender],
    *,
    owner: str,
    clock: Callable[[], datetime] = utc_now,
    policy: DeliveryPolicy = DeliveryPolicy(),
    limit: int = 200,
) -> DeliveryReport:
    """Attempt every due delivery once (at most `limit`); each attempt is kept whatever its outcome."""
    with ledger.session() as session:
        due = outbox.due_deliveries(session, clock(), limit)
    sent: list[Sent] = []
    held = 0
    lease = timedelta(seconds=policy.lease_seconds)
    for delivery_id in due:
        with ledger.session() as session:
            if not outbox.claim(session, delivery_id, owner, clock(), lease):
                held += 1
                continue
        with ledger.session() as session:
            found = outbox.claimed(session, delivery_id)
            attempt, channel, key, kind = found.delivery.attempts, found.delivery.channel, found.alert.alert_key, found.delivery.kind
            started = clock()
            notice = notice_of(found, started)
        delivered, detail, retry_after = _attempt(senders.get(channel), channel, notice)
        ended = clock()
        retry_at = None if delivered else ended + policy.backoff(attempt, retry_after)
        with ledger.session() as session:
            kept = outbox.finish(session, delivery_id, owner, attempt, started, ended, detail, owner, retry_at)
        if not kept:
            log.warning("delivery %s of %s to %s: the lease ran out during the attempt", kind, key, channel)
        if not delivered:
            log.warning("alert %s (%s) to channel %s failed on attempt %d: %s; next at %s",
                        key, kind, channel, attempt, detail, retry_at.isoformat(timespec="seconds"))
        sent.append(Sent(key, kind, channel, attempt, delivered, detail))
    return DeliveryReport(tuple(sent), held)
