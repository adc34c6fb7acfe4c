"""Evaluating budgets and balances against a real ledger, on an injected clock: each alert once, resolved once."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from factories import insert_records, make_call

from ledger.accounting.budgets import BalanceAlert, Budget, Scope
from ledger.accounting.snapshots import OK, BalanceSnapshotValue
from ledger.config.alerts import AlertSettings, ChannelConfig
from ledger.config import Settings
from ledger.service.alerting import evaluate, notify
from ledger.service.delivery import DeliveryPolicy
from ledger.store.alerts import alert_history
from ledger.store.balances import insert_snapshot

UTC = timezone.utc


class Recording:
    """A sender that keeps what it is given."""

    def __init__(self, name: str = "rec") -> None:
        self.name, self.notices = name, []

    def send(self, notice) -> str:
        self.notices.append(notice)
        return "recorded"

    def close(self) -> None:
        pass


def settings_with(database_url, tmp_path, budgets=(), balance_alerts=()) -> Settings:
    return Settings(database_url=database_url, secret_path=str(tmp_path / "secret"),
                    alerting=AlertSettings(tuple(budgets), tuple(balance_alerts), (ChannelConfig("rec", "log"),)))


def test_a_simulated_month_sends_each_threshold_once_the_forecast_first_and_the_next_month_starts_at_zero(ledger, tmp_path):
    budget = Budget("search-monthly", Scope(project="search"), "month", "Europe/Berlin", Decimal(3000),
                    thresholds=(50, 80, 100), forecast=True, channels=("rec",))
    settings = settings_with(ledger.url, tmp_path, [budget])
    sender = Recording()
    clock = [datetime(2026, 9, 30, 22, tzinfo=UTC)]  # 1 October, local midnight in Berlin (summer time)
    month_end = datetime(2026, 10, 31, 23, tzinfo=UTC)  # 1 November, local midnight (winter time: the clocks went back)
    step = timedelta(hours=6)
    while clock[0] < month_end - step:
        # 6 hours of spend, 5 credits an hour in the budget's scope and 7 outside it.
        insert_records(ledger, [make_call(clock[0] + timedelta(hours=h, minutes=1), 5, project="search") for h in range(6)]
                       + [make_call(clock[0] + timedelta(hours=h), 7, project="support") for h in range(6)])
        clock[0] += step
        notify(ledger, settings, host="test", clock=lambda: clock[0], senders={"rec": sender})
    titles = [n.title for n in sender.notices]
    assert titles == ["Budget search-monthly projected past its limit", "Budget search-monthly at 50%",
                      "Budget search-monthly at 80%", "Budget search-monthly reached its limit"]
    assert [n.event_type for n in sender.notices] == ["budget.forecast", "budget.threshold", "budget.threshold", "budget.threshold"]
    forecast = sender.notices[0]
    assert forecast.data["period"]["label"] == "2026-10" and forecast.data["projection"] > 3000
    assert "3,000.00 credits" in sender.notices[-1].text and "2026-10 (Europe/Berlin" in sender.notices[-1].text

    # 23:30 in Berlin on 31 October is still October; midnight (23:00 UTC, not 22:00) starts November at zero.
    late = notify(ledger, settings, host="test", clock=lambda: month_end - timedelta(minutes=30), senders={"rec": sender})[0]
    assert late.budgets[0].period.label == "2026-10" and late.budgets[0].spent == Decimal(3720)
    insert_records(ledger, [make_call(month_end - timedelta(minutes=10), 5, project="search")])
    (status,) = evaluate(ledger, settings, now=month_end, host="test", write=False).budgets
    assert (status.period.label, status.period.start, status.spent, status.state) == ("2026-11", month_end, 0, "ok")
    assert len(sender.notices) == 4  # nothing more in October
    for _ in range(2):  # the resolved notice goes once, whoever evaluates again
        notify(ledger, settings, host="test", clock=lambda: month_end + timedelta(minutes=5), senders={"rec": sender})
    (resolved,) = sender.notices[4:]
    assert resolved.event_type == "budget.threshold.resolved" and resolved.title == "Resolved: Budget search-monthly reached its limit"
    assert "period 2026-10 is over" in resolved.text and "2026-11 starts at 0.00" in resolved.text
    with ledger.session() as session:
        history = alert_history(session)
    assert [h.alert.alert_key for h in history] == [
        "budget:search-monthly:forecast:2026-10", "budget:search-monthly:50:2026-10", "budget:search-monthly:80:2026-10",
        "budget:search-monthly:100:2026-10"]
    assert all(h.alert.resolved_at == month_end + timedelta(minutes=5) for h in history)
    assert sum(len(attempts) for h in history for _, attempts in h.deliveries) == 5


def _snapshot(session, account, at, balance, purchased) -> None:
    insert_snapshot(session, BalanceSnapshotValue(account, at, OK, Decimal(balance), Decimal(purchased),
                                                  Decimal(purchased - balance)))


def test_a_runway_of_5_days_at_100_a_day_warns_under_7_and_a_top_up_resolves_it(ledger, tmp_path):
    alert = BalanceAlert("prod", below=Decimal(300), runway_days=7, channels=("rec",))
    settings = settings_with(ledger.url, tmp_path, balance_alerts=[alert])
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    with ledger.session() as session:
        for day in range(8, -1, -1):  # 1300 eight days ago, 100 a day since: 500 now
            _snapshot(session, "prod", now - timedelta(days=day), 500 + 100 * day, 1800)
    sender = Recording()
    evaluation, _ = notify(ledger, settings, host="t", clock=lambda: now, senders={"rec": sender})
    ((_, found),) = evaluation.balances
    assert (found.balance, found.burn_per_day, found.days_left, found.top_up_for(7)) == (500, 100, 5, 200)
    (runway,) = sender.notices  # 500 is not below 300: only the runway warns
    assert runway.event_type == "balance.runway" and runway.title == "Balance of prod runs out in 5.0 days"
    assert "runs out in 5.0 days (under 7)" in runway.text and "top-up of 200.00 credits covers 7 days" in runway.text
    # A top-up of 1000: 1500 lasts 15 days. The runway resolves, once.
    with ledger.session() as session:
        _snapshot(session, "prod", now + timedelta(hours=1), 1496, 2800)
    for minutes in (70, 80):
        notify(ledger, settings, host="t", clock=lambda: now + timedelta(minutes=minutes), senders={"rec": sender})
    (resolved,) = sender.notices[1:]
    assert resolved.event_type == "balance.runway.resolved" and "beyond 7 days" in resolved.text
    # It runs short again later: a new episode, a new alert.
    with ledger.session() as session:
        _snapshot(session, "prod", now + timedelta(days=2), 250, 2800)
    notify(ledger, settings, host="t", clock=lambda: now + timedelta(days=2), senders={"rec": sender})
    assert [n.data["alert"] for n in sender.notices[2:]] == ["balance:prod:below:1", "balance:prod:runway:2"]


def test_a_scope_by_account_counts_the_configured_keys_calls(ledger, tmp_path, monkeypatch):
    from ledger.config import AccountConfig, KeyConfig
    from ledger.keys import fingerprint

    monkeypatch.setenv("PROD_KEY", "sk-prod-000000000001")
    secret = b"test-secret-0123456789"  # conftest's CREDIT_LEDGER_FINGERPRINT_SECRET
    budget = Budget("prod-daily", Scope(account="prod"), "day", "UTC", Decimal(10), thresholds=(50,), channels=("rec",))
    settings = replace(settings_with(ledger.url, tmp_path, [budget]),
                       accounts=(AccountConfig("prod", "http://127.0.0.1:9/v1", (KeyConfig("backend", env="PROD_KEY"),)),))
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    insert_records(ledger, [make_call(now - timedelta(hours=1), 6, fingerprint=fingerprint("sk-prod-000000000001", secret)),
                            make_call(now - timedelta(hours=1), 100, fingerprint="f" * 32)])
    sender = Recording()
    evaluation, report = notify(ledger, settings, host="t", clock=lambda: now, senders={"rec": sender})
    assert evaluation.budgets[0].spent == 6 and [n.title for n in sender.notices] == ["Budget prod-daily at 50%"]
    assert report.delivered == 1


def test_a_channel_that_fails_is_retried_with_backoff_and_every_attempt_is_kept(ledger, tmp_path):
    class Flaky(Recording):
        def send(self, notice):
            from ledger.service.channels import DeliveryFailed

            if len(self.notices) < 2:
                self.notices.append(None)
                raise DeliveryFailed("HTTP 503", retry_after=90)
            return super().send(notice)

    budget = Budget("b", Scope(), "day", "UTC", Decimal(1), thresholds=(100,), channels=("rec",))
    settings = settings_with(ledger.url, tmp_path, [budget])
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    insert_records(ledger, [make_call(now - timedelta(hours=1), 2)])
    sender, policy = Flaky(), DeliveryPolicy(base_seconds=60, max_seconds=600)
    _, first = notify(ledger, settings, host="t", clock=lambda: now, senders={"rec": sender}, policy=policy)
    assert first.failed == 1
    for minutes, attempts in ((1, 1), (2, 2), (3, 2), (4, 3), (6, 3)):  # Retry-After 90 s, then 120 s of backoff
        notify(ledger, settings, host="t", clock=lambda: now + timedelta(minutes=minutes), senders={"rec": sender}, policy=policy)
        assert len(sender.notices) == attempts, minutes
    with ledger.session() as session:
        ((alert, ((delivery, attempts),)),) = alert_history(session)
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert [(a.attempt, a.outcome, a.detail) for a in attempts] == [
        (1, "failed", "HTTP 503"), (2, "failed", "HTTP 503"), (3, "delivered", "recorded")]
