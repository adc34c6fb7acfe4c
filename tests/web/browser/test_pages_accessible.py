"""Every page of the dashboard's navigation, a call's page and the error page: no serious or critical accessibility
violation (axe-core), as finance and as an admin, over a ledger with calls, balances, budgets and alerts; the
Spend and Overview pages log no console error (their charts drawn under the CSP)."""

from __future__ import annotations

import pytest
from accessibility import assert_accessible
from conftest import sign_in
from sqlalchemy import select
from web_money_rows import fill, hold_clock, money_settings

from ledger.store.calls import Call
from ledger.web.rendering import NAVIGATION


@pytest.fixture
def web_settings(web_settings):
    return money_settings(web_settings)


def console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"{page.url}: {message.text}") if message.type == "error"
            and not message.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    return errors


def hover_charts(page) -> None:
    """The pointer across each chart: ECharts shows its tooltips (where inline styles used to break the CSP)."""
    for chart in page.locator("[data-drawn=true]").all():
        box = chart.bounding_box()
        for tenth in range(1, 10):  # just above the axis: through every bar, every day of a line
            page.mouse.move(box["x"] + box["width"] * tenth / 10, box["y"] + box["height"] * 0.85)


def test_every_page_is_accessible_as_finance_and_as_an_admin(ledger, web_settings, monkeypatch, live_dashboard,
                                                             browser, page):
    fill(ledger, web_settings)
    hold_clock(monkeypatch)
    with ledger.session() as session:
        call_id = session.scalar(select(Call.call_id).where(Call.project == "search").limit(1))
    errors = console_errors(page)
    sign_in(page, live_dashboard, "fin", "finance")
    for path, _, action in NAVIGATION:
        if action is None:
            page.goto(live_dashboard.url + path)
            page.wait_for_load_state("load")
            if path in ("/", "/spend"):
                page.wait_for_selector("[data-drawn=true] svg")
                hover_charts(page)
                assert errors == [], path
            assert_accessible(page)
    page.goto(f"{live_dashboard.url}/calls/{call_id}")
    assert_accessible(page)
    assert page.goto(f"{live_dashboard.url}/spend?period=2026-13").status == 400  # the error page
    assert_accessible(page)
    admin = browser.new_context().new_page()
    try:
        sign_in(admin, live_dashboard, "root", "admin", then="/admin")
        assert_accessible(admin)
        admin.goto(live_dashboard.url + "/closes")  # an admin's navigation, no close form
        assert_accessible(admin)
    finally:
        admin.context.close()
