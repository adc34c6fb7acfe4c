"""The dashboard in a real browser: Debian's Chromium driven by Playwright for Python, one browser for the whole run.

    browser          the Chromium of the run (tests/web/conftest.py: every test of tests/web shares it)
    live_dashboard   the dashboard served by uvicorn on a free loopback port over the test's real ledger
    page             a new browser context's page (its own cookies), closed after the test
    sign_in(page, live_dashboard, name, role=..., projects=...)
                     adds the user and signs in through the real /login form, as a person does

Each test gets a fresh context (cookies, storage) in the one browser: starting
Chromium once keeps the suite's time down.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pytest
from signing import PASSWORD, add_user

from ledger.proxy.server import listen
from ledger.store.engine import Ledger
from ledger.web.serve import DashboardThread

TIMEOUT_MS = 15_000


@dataclass
class LiveDashboard:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    ledger: Ledger


@pytest.fixture
def live_dashboard(ledger, web_settings):
    with listen("127.0.0.1", 0) as listener:
        server = DashboardThread(web_settings, ledger, listener).start()
        try:
            yield LiveDashboard(f"http://127.0.0.1:{listener.getsockname()[1]}", ledger)
        finally:
            server.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page, dashboard: LiveDashboard, name: str, role: str = "viewer", projects=None,
            password: str = PASSWORD, then: str = "/") -> None:
    """Add the user `name` and sign in as them through /login's form; the browser ends on `then`."""
    add_user(dashboard.ledger, name, role, projects, password)
    page.goto(f"{dashboard.url}/login?next={quote(then, safe='')}")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("form.signin button[type=submit]")
    page.wait_for_url(f"{dashboard.url}{then}")
