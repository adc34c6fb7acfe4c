"""The README's screenshots, made by this test: the main pages over a fixed demo-like ledger (the money pages' calls,
balances, budgets and alerts, held at 2026-11-20 12:00 UTC), each loaded and checked (its heading, its chart drawn);
saved as PNG to docs/dashboard/ only when CREDIT_LEDGER_SCREENSHOTS=1:

    CREDIT_LEDGER_SCREENSHOTS=1 .venv/bin/python -m pytest tests/web/browser/test_screenshots.py
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
import web_money_rows
from conftest import sign_in
from sqlalchemy import select
from web_money_rows import fill, hold_clock, money_settings

from ledger.accounting.periods import MONTH, calendar_period, parse_period
from ledger.service.closing import close_period
from ledger.store.calls import Call

FOLDER = Path(__file__).resolve().parents[3] / "docs" / "dashboard"
HELD = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PAGES = (  # (file, path, a heading or text the page shows, whether a chart is drawn)
    ("overview", "/", "Overview", True),
    ("spend", "/spend?period=2026-11&by=project", "Spend", True),
    ("calls", "/calls?period=2026-11", "Calls", False),
    ("call", "/calls/{call_id}", "overcharge", False),
    ("budgets", "/budgets", "Budgets", False),
    ("closes", "/closes", "close (in force)", False),
)


@pytest.fixture
def web_settings(web_settings):
    return money_settings(web_settings)


def test_the_main_pages_load_and_are_screenshotted_when_asked(ledger, web_settings, monkeypatch, live_dashboard,
                                                              page):
    monkeypatch.setattr(web_money_rows, "NOW", HELD)
    monkeypatch.setattr(web_money_rows, "MONTH_START", calendar_period(MONTH, HELD, "UTC").start)
    monkeypatch.setattr(web_money_rows, "HOSTILE", "research")  # a demo's project name (hostile text: other tests)
    fill(ledger, web_settings, copies=3)
    close_period(web_settings, ledger, parse_period("2026-10", "UTC"), now=lambda: HELD,
                 accept_gap="the demo's account began in November")
    hold_clock(monkeypatch)
    with ledger.session() as session:
        call_id = session.scalar(select(Call.call_id).where(Call.pricing_class == "overcharge",
                                                            Call.project == "search").limit(1))
    save = os.environ.get("CREDIT_LEDGER_SCREENSHOTS") == "1"
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in(page, live_dashboard, "fin", "finance")
    for name, path, shown, chart in PAGES:
        answer = page.goto(live_dashboard.url + path.format(call_id=call_id))
        assert answer.status == 200, path
        assert page.get_by_text(shown).first.is_visible(), path
        if chart:
            page.wait_for_selector("[data-drawn=true] svg")
        if save:
            FOLDER.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(FOLDER / f"{name}.png"))
