"""A small ledger for the money pages' tests: calls of three projects this month (some priced wrong), an account's
balance snapshots, budgets of one project, of another and of every call, and alerts raised on them.

`NOW` is the pages' clock held still (`hold_clock`), so the pages and the CLI's
functions compute their projections at the same instant.
"""

from __future__ import annotations

import io
from html.parser import HTMLParser
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger_rows import call_values, insert, register, snapshot

from ledger.accounting.budgets import BalanceAlert, Budget, Scope
from ledger.accounting.periods import MONTH, calendar_period
from ledger.config import Settings
from ledger.config.accounts import AccountConfig
from ledger.config.alerts import AlertSettings, ChannelConfig
from ledger.service.alerting import evaluate

HOSTILE = "<script>alert(1)</script>\u202e" + "x" * 150  # the project column holds 200
FINGERPRINT = "f" * 64
NOW = datetime.now(timezone.utc).replace(microsecond=0)
MONTH_START = calendar_period(MONTH, NOW, "UTC").start


def at(fraction: str) -> datetime:
    """An instant `fraction` of the way from the month's start to NOW (inside this month, whatever the day)."""
    return MONTH_START + (NOW - MONTH_START) * float(fraction)


BUDGETS = (
    Budget("search-month", Scope(project="search"), "month", "UTC", Decimal(1), channels=("rec",)),
    Budget("support-month", Scope(project="support"), "month", "UTC", Decimal(100), channels=("rec",)),
    Budget("all-month", Scope(), "month", "UTC", Decimal(2), enforce=True, channels=("rec",)),
)


def money_settings(settings: Settings, *, accounts: bool = True) -> Settings:
    alerting = AlertSettings(BUDGETS, (BalanceAlert("prod", Decimal(5000), 30, ("rec",)),) if accounts else (),
                             (ChannelConfig("rec", "log"),))
    return replace(settings, alerting=alerting, accounts=(AccountConfig("prod"),) if accounts else ())


def calls(copies: int = 1) -> list[tuple]:
    """Six calls a copy: search (one overcharged), support (one of a wrong rate), a hostile project (overcharged)."""
    rows = []
    for _ in range(copies):
        rows += [
            call_values(started_at=at("0.2"), project="search", charged="0.25", expected="0.25088"),
            call_values(started_at=at("0.3"), project="search", charged="0.75", expected="0.25088",
                        pricing_class="overcharge"),
            call_values(started_at=at("0.4"), project="search", charged="0.25", expected="0.25088"),
            call_values(started_at=at("0.5"), project="support", charged="0.5", expected="0.25088",
                        pricing_class="wrong_rate"),
            call_values(started_at=at("0.6"), project="support", charged="0.25", expected="0.25088"),
            call_values(started_at=at("0.7"), project=HOSTILE, charged="1.25", expected="0.25088",
                        pricing_class="overcharge"),
        ]
    return rows


def fill(ledger, settings: Settings, copies: int = 1) -> None:
    """The calls, the key of account prod, its snapshots every few hours of the last days, the alerts raised."""
    register(ledger, FINGERPRINT, "Zq9x", "main", "prod")
    insert(ledger, calls(copies))
    taken, step, consumed = NOW - timedelta(days=9), timedelta(hours=6) / copies, 100
    while taken < NOW:
        snapshot(ledger, "prod", taken, 10_000, consumed)
        taken, consumed = taken + step, consumed + 3
    evaluate(ledger, settings, now=NOW, host="test")


def hold_clock(monkeypatch) -> None:
    """The pages' and the commands' clocks at NOW."""
    import ledger.commands.budgets
    import ledger.web.figures

    monkeypatch.setattr(ledger.web.figures, "utc_now", lambda: NOW)
    monkeypatch.setattr(ledger.commands.budgets, "utc_now", lambda: NOW)


def direct(command, *args, **kwargs) -> str:
    """What a command of ledger.commands prints."""
    out = io.StringIO()
    command(*args, out, **kwargs)
    return out.getvalue()


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str, name: str) -> list[list[str]]:
    """The rows (header first) of the page's table of class `name`, each cell's text."""
    parser = _Tables()
    parser.feed(html)
    parser.close()
    return parser.tables.get(name, [])
