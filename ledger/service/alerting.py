"""Evaluating budgets and balance alerts: the ledger's sums in, alerts raised and resolved, the outbox delivered.

`evaluate` sums each budget's spend in SQL, reads each balance's runway from
its snapshots, and plans what to raise and resolve (`ledger.accounting.alerts`).
The plan is applied in a transaction of writes alone, each idempotent (an
INSERT ... ON CONFLICT DO NOTHING on the alert's key, a conditional UPDATE),
under a lock that evaluators take in turn, so several replicas, a restart,
or two `budgets --notify` at once raise each alert once. `budgets_job` is
the service's job: evaluate, then deliver what is due.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, NamedTuple

from ..accounting.alerts import Condition, balance_conditions, budget_conditions, plan_alerts
from ..accounting.budgets import BalanceAlert, BudgetStatus, Runway, budget_status, runway
from ..accounting.pricing import RateBook, load_rate_book
from ..config import Settings, configured_keys
from ..keys import load_secret
from ..store import alerts as outbox
from ..store.balances import ok_snapshots_of
from ..store.budgets import SpendQuery, spends
from ..store.engine import Ledger
from ..store.keys import register_keys
from .channels import close_all, senders_for
from .delivery import DeliveryPolicy, DeliveryReport, deliver_due, utc_now
from .locks import job_lock
from .runtime import Service

EVALUATION_LOCK = "budgets-evaluate"


class Evaluation(NamedTuple):
    at: datetime
    budgets: tuple[BudgetStatus, ...]
    balances: tuple[tuple[BalanceAlert, Runway], ...]
    raised: tuple[str, ...]  # alert keys this evaluation raised
    resolved: tuple[str, ...]  # alert keys whose resolved notice this evaluation queued

    def summary(self) -> str:
        return f"{len(self.budgets)} budget(s), {len(self.balances)} balance alert(s): {len(self.raised)} raised, {len(self.resolved)} resolved"


def budget_statuses(session, settings: Settings, book: RateBook, now: datetime) -> list[BudgetStatus]:
    """Where each budget stands at `now`, from one sum over the ledger each (`ledger.store.budgets.spends`)."""
    periods = [budget.period_at(now) for budget in settings.budgets]
    found = spends(session, [SpendQuery(b.scope, p.start, p.end) for b, p in zip(settings.budgets, periods)])
    return [
        budget_status(budget, period, now, spent.credits, spent.calls,
                      budget.limit_credits(book.card_at(period.start).usd_per_credit))
        for budget, period, spent in zip(settings.budgets, periods, found)
    ]


def balance_runways(session, settings: Settings, now: datetime) -> list[tuple[BalanceAlert, Runway]]:
    """Each balance alert's account: its newest balance and its runway from the last days' snapshots (one query)."""
    points = ok_snapshots_of(session, [alert.account for alert in settings.balance_alerts], now - timedelta(days=8), now)
    return [(alert, runway(alert.account, points[alert.account], now)) for alert in settings.balance_alerts]


def conditions_of(statuses, runways) -> list[Condition]:
    found: list[Condition] = []
    for status in statuses:
        found += budget_conditions(status)
    for alert, found_runway in runways:
        found += balance_conditions(alert, found_runway)
    return found


def evaluate(ledger: Ledger, settings: Settings, *, now: datetime, host: str, book: RateBook | None = None,
             write: bool = True) -> Evaluation:
    """Each budget's and balance's state at `now`; with `write`, the alerts raised and resolved on it."""
    book = book or load_rate_book(settings.rate_cards_path)
    with job_lock(ledger, EVALUATION_LOCK, wait=True) if write else _no_lock():
        if any(b.scope.by_key for b in settings.budgets):  # a scope by account or key label reads api_keys
            with ledger.session() as session:
                register_keys(session, configured_keys(settings, load_secret(settings.secret_path)), now)
        with ledger.session() as session:
            statuses = budget_statuses(session, settings, book, now)
            runways = balance_runways(session, settings, now)
            if not write:
                return Evaluation(now, tuple(statuses), tuple(runways), (), ())
            conditions = conditions_of(statuses, runways)
            ids = [c.condition_id for c in conditions]
            plan = plan_alerts(conditions, outbox.open_alerts(session, ids), outbox.episode_counts(session, ids), now)
        raised, resolved = [], []
        with ledger.session() as session:  # writes alone (SQLite: no read snapshot to go stale before them)
            for item in plan.raised:
                if outbox.raise_alert(session, item.alert_key, item.condition, now, host) is not None:
                    raised.append(item.alert_key)
            for item in plan.resolved:
                if outbox.resolve_alerts(session, item, now):
                    resolved.append(item.alerts[0].alert_key)
    return Evaluation(now, tuple(statuses), tuple(runways), tuple(raised), tuple(resolved))


class _no_lock:
    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        pass


def notify(ledger: Ledger, settings: Settings, *, host: str, clock: Callable[[], datetime] = utc_now,
           policy: DeliveryPolicy = DeliveryPolicy(), senders=None) -> tuple[Evaluation, DeliveryReport]:
    """Evaluate now and deliver what is due: what the service's job does each minute, and `budgets --notify`."""
    owned = senders is None
    senders = senders_for(settings.channels) if owned else senders  # an unset secret stops here: nothing sent
    try:
        evaluation = evaluate(ledger, settings, now=clock(), host=host)
        report = deliver_due(ledger, senders, owner=host, clock=clock, policy=policy)
    finally:
        if owned:
            close_all(senders)
    return evaluation, report


def budgets_job(service: Service) -> tuple[str, str]:
    evaluation, report = notify(service.ledger, service.settings, host=service.host)
    outcome = "ok" if not report.failed else "delivery_failed"
    return outcome, f"{evaluation.summary()}; deliveries: {report.summary()}"


def check_ready(settings: Settings) -> None:
    """At the start of a command that sends: every channel's variables are set (ConfigError naming the first that is not)."""
    close_all(senders_for(settings.channels))
