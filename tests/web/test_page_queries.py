"""The money pages make a fixed number of queries whatever the config: as many for 12 budgets (of every kind of
scope and period) as for 3, and, but for the reconciliation's windows, as many for 4 accounts as for 1."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from test_money_pages import FINANCE, statements
from web_money_rows import NOW, fill, hold_clock, money_settings

from ledger.accounting.budgets import BalanceAlert, Budget, Scope
from ledger.config.accounts import AccountConfig
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
def test_a_page_makes_as_many_queries_for_12_budgets_as_for_3(path, base, client_as, count_queries):
    few = queries(client_as, count_queries, configured(base, 3, 1), path)
    many = queries(client_as, count_queries, configured(base, 12, 1), path)
    assert len(many) == len(few), (few, many)
    assert len(few) <= {"/": 30}.get(path, 6)


@pytest.mark.parametrize("path", ["/budgets", "/api/v1/budgets", "/api/v1/balances"])
def test_a_page_makes_as_many_queries_for_4_accounts_as_for_1(path, base, ledger, client_as, count_queries):
    """(The reconciliation, on the overview and its own pages, still reads each account's windows on its own.)"""
    few = queries(client_as, count_queries, configured(base, 3, 1), path)
    more_accounts(ledger)
    many = queries(client_as, count_queries, configured(base, 3, 4), path)
    assert len(many) == len(few), (few, many)
    assert len(few) <= 6
