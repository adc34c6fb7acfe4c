"""Delivering the outbox: each due delivery claimed for one attempt, sent, and its attempt kept.

A channel that is down is retried with exponential backoff (at least its
Retry-After, up to a day) until it takes the message: an alert is delivered
later, never dropped. Two senders (replicas, or two `budgets --notify`) never
send one delivery at once: the claim is a conditional UPDATE of its lease. A
sender that dies between sending and recording leaves its lease to run out
and the delivery is sent again; the Standard Webhooks id stays the same, so a
receiver can tell. A message sent whole to a receiver that cannot tell a
repeat (Slack) and left unanswered is kept as sent, unconfirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, NamedTuple

from .. import redact
from ..accounting.alerts import REPORT, RESOLVED, alert_title
from ..store import alerts as outbox
from ..store.engine import Ledger
from .channels import DeliveryFailed, Notice, Sender, SentUnconfirmed

log = redact.logger("ledger.alerts")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Attempt n after a failure waits min(max_seconds, base_seconds * 2**(n-1)), or the receiver's Retry-After when longer.

    A Retry-After is honoured up to `max_retry_after_seconds`: a receiver may
    ask for hours, but a hostile or broken header cannot park alerts for ever.
    """

    base_seconds: float = 30.0
    max_seconds: float = 1800.0
    max_retry_after_seconds: float = 86400.0
    lease_seconds: float = 600.0  # longer than an attempt takes (a channel's timeout: 10 s by default, at most 300)

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        doublings = min(max(0, attempts - 1), 40)  # past 40 the cap holds anyway; 2.0**1100 would overflow
        wait = min(self.max_seconds, self.base_seconds * 2.0 ** doublings)
        asked = min(self.max_retry_after_seconds, retry_after or 0.0)  # inf from "Retry-After: inf" stops here too
        return timedelta(seconds=max(wait, asked))


class Sent(NamedTuple):
    alert_key: str
    kind: str
    channel: str
    attempt: int
    delivered: bool  # taken, or sent and unconfirmed: not tried again either way
    detail: str
    unconfirmed: bool = False  # sent whole, no answer, and not sent again (a receiver that cannot tell a repeat)


class DeliveryReport(NamedTuple):
    sent: tuple[Sent, ...]  # every attempt this run made
    held_elsewhere: int  # due deliveries another sender had claimed

    @property
    def delivered(self) -> int:
        return sum(1 for s in self.sent if s.delivered)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.sent if not s.delivered)

    @property
    def unconfirmed(self) -> int:
        return sum(1 for s in self.sent if s.unconfirmed)

    def summary(self) -> str:
        unconfirmed = f" ({self.unconfirmed} sent, unconfirmed)" if self.unconfirmed else ""
        return (f"{self.delivered} delivered{unconfirmed}, {self.failed} failed (retried later), "
                f"{self.held_elsewhere} held by another sender")


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


class Outcome(NamedTuple):
    """What one attempt came to; `outcome` is the attempt row's (outbox.DELIVERED, UNCONFIRMED or FAILED)."""

    outcome: str
    detail: str
    retry_after: float | None = None


def _attempt(sender: Sender | None, channel: str, notice: Notice) -> Outcome:
    if sender is None:
        return Outcome(outbox.FAILED, f"channel {channel!r} is not configured now")
    try:
        return Outcome(outbox.DELIVERED, sender.send(notice))
    except SentUnconfirmed as unanswered:
        return Outcome(outbox.UNCONFIRMED, unanswered.detail)
    except DeliveryFailed as failure:
        return Outcome(outbox.FAILED, failure.detail, failure.retry_after)
    except Exception as error:  # a sender's own bug must not stop the others
        return Outcome(outbox.FAILED, f"{type(error).__name__}: {redact.redact(str(error))[:200]}")


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
        outcome, detail, retry_after = _attempt(senders.get(channel), channel, notice)
        ended = clock()
        retry_at = ended + policy.backoff(attempt, retry_after) if outcome == outbox.FAILED else None
        with ledger.session() as session:
            kept = outbox.finish(session, delivery_id, owner, attempt, started, ended, detail, owner, retry_at, outcome)
        if not kept:
            log.warning("delivery %s of %s to %s: the lease ran out during the attempt", kind, key, channel)
        if retry_at is not None:
            log.warning("alert %s (%s) to channel %s failed on attempt %d: %s; next at %s",
                        key, kind, channel, attempt, detail, retry_at.isoformat(timespec="seconds"))
        elif outcome == outbox.UNCONFIRMED:
            log.warning("alert %s (%s) to channel %s on attempt %d: %s", key, kind, channel, attempt, detail)
        sent.append(Sent(key, kind, channel, attempt, retry_at is None, detail, outcome == outbox.UNCONFIRMED))
    return DeliveryReport(tuple(sent), held)
