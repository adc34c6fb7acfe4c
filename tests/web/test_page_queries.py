"""Every page makes a fixed number of queries whatever the config and the data: as many for 12 budgets (of every
kind of scope and period) as for 3, as many for 4 accounts as for 1, for 2 closed periods as for 1, for 5 rate cards
as for 1."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from test_money_pages import FINANCE, statements
from web_money_rows import NOW, fill, hold_clock, money_settings

from ledger.accounting.budgets import BalanceAlert, Budget, Scope
from ledger.accounting.periods import DAY, calendar_period
from ledger.accounting.pricing import RateBook, RateCard, default_rate_book
from ledger.config.accounts import AccountConfig
from ledger.service.closing import close_period
from ledger.store.rate_cards import sync_rate_cards
from ledger.web.viewer import Viewer
from ledger_rows import snapshot

SCOPES = (Scope(project="search"), Scope(), Scope(user="ann"), Scope(model="gpt-4o"), Scope(tags=(("team", "a"),)),
          Scope(project="support", user="ann"), Scope(account="prod"), Scope(user="bob", model="gpt-4o"))
PERIODS = ("month", "day", "24h", "week", "7d")


def configured(settings, budgets: int, accounts: int):
    """`budgets` budgets of every kind of scope and period, and `accounts` accounts with a balance alert each."""
    made = tuple(Budget(f"budget-{n}", SCOPES[n % len(SCOPES)], PERIODS[n % len(PERIODS)], "UTC", Decimal(n + 1))
                 for n in range(budgets))
    names = ["prod"] + [f"account-{n}" for n in range(1, accounts)]
    alerting = replace(settings.alerting, budgets=made,
                       balance_alerts=tuple(BalanceAlert(name, Decimal(5000), 30) for name in names))
    return replace(settings, alerting=alerting, accounts=tuple(AccountConfig(name) for name in names))


def plain_plans(ledger) -> int:
    """The statements a page's budgets add on PostgreSQL: their statement's settings, set and set back
    (`store.budgets.plain_plans`)."""
    return 2 if ledger.dialect == "postgresql" else 0


def queries(client_as, count_queries, settings, path) -> list[str]:
    client = client_as(FINANCE, settings)
    assert client.get(path).status_code == 200  # the first request: the app's first connections
    counter = count_queries()
    assert client.get(path).status_code == 200
    return statements(counter)


@pytest.fixture
def base(ledger, web_settings, monkeypatch):
    settings = money_settings(web_settings)
    fill(ledger, settings)
    hold_clock(monkeypatch)
    return settings


def more_accounts(ledger) -> None:
    for n in range(1, 4):
        for hours in range(1, 60, 5):
            snapshot(ledger, f"account-{n}", NOW - timedelta(hours=hours), 10_000, 1000 - hours)


@pytest.mark.parametrize("path", ["/", "/budgets", "/api/v1/budgets"])
def test_a_page_makes_as_many_queries_for_12_budgets_as_for_3(path, base, ledger, client_as, count_queries):
    few = queries(client_as, count_queries, configured(base, 3, 1), path)
    many = queries(client_as, count_queries, configured(base, 12, 1), path)
    assert len(many) == len(few), (few, many)
    assert len(few) <= {"/": 34}.get(path, 6) + plain_plans(ledger)


@pytest.mark.parametrize("path", ["/budgets", "/api/v1/budgets", "/api/v1/balances"])
def test_a_page_makes_as_many_queries_for_4_accounts_as_for_1(path, base, ledger, client_as, count_queries):
    few = queries(client_as, count_queries, configured(base, 3, 1), path)
    more_accounts(ledger)
    many = queries(client_as, count_queries, configured(base, 3, 4), path)
    assert len(many) == len(few), (few, many)
    assert len(few) <= 6 + plain_plans(ledger)


# Every page and read route of the dashboard (the admin's page too), with the parameters that change its queries.
EVERY_PAGE = ("/", "/spend", "/spend?by=user", "/spend?by=project,day", "/calls", "/calls?project=search", "/budgets",
              "/pricing", "/reconciliation", "/closes", "/rate-cards", "/admin", "/api/v1/budgets",
              "/api/v1/balances", "/api/v1/reconciliation", "/api/v1/spend?by=project", "/api/v1/calls",
              "/spend/export?format=csv", "/calls/export?format=csv")


def close_day(ledger, settings, days_ago: int) -> None:
    """A past day closed (its reconciliation's gap accepted: the test's snapshots are not the calls' own)."""
    day = calendar_period(DAY, NOW - timedelta(days=days_ago), "UTC")
    close_period(replace(settings, accounts=()), ledger, day, accept_gap="the test's snapshots")


def more_rate_cards(ledger) -> None:
    card = default_rate_book().cards[0]
    later = [RateCard(f"card-{n}", card.effective_from + timedelta(days=n + 1), card.usd_per_credit, card.rates)
             for n in range(4)]
    with ledger.session() as session:
        sync_rate_cards(session, RateBook(tuple(later)))


def test_every_page_makes_as_many_queries_for_more_accounts_budgets_closes_and_rate_cards(
        base, ledger, client_as, count_queries):
    admin = Viewer("adm", "admin", csrf="a" * 32)
    close_day(ledger, base, 4)
    few = configured(base, 3, 1)
    before = {path: queries_as(admin, client_as, count_queries, few, path) for path in EVERY_PAGE}
    more_accounts(ledger)
    close_day(ledger, base, 3)
    more_rate_cards(ledger)
    many = configured(base, 12, 4)
    after = {path: queries_as(admin, client_as, count_queries, many, path) for path in EVERY_PAGE}
    grew = {path: (len(before[path]), len(after[path])) for path in EVERY_PAGE if len(after[path]) != len(before[path])}
    assert not grew, grew
    assert max(map(len, before.values())) <= 34 + plain_plans(ledger), {path: len(found) for path, found in before.items()}


def queries_as(viewer, client_as, count_queries, settings, path) -> list[str]:
    client = client_as(viewer, settings)
    assert client.get(path).status_code == 200, path  # the first request: the app's first connections
    counter = count_queries()
    assert client.get(path).status_code == 200, path
    return statements(counter)
