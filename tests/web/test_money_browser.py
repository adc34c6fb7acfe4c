"""The overview in a real browser (Debian's Chromium, never downloaded): its charts drawn as SVG from their JSON
blocks under the page's CSP, no script error, the hostile project on the pricing page shown as text."""

from __future__ import annotations

import os

import pytest
from factories import LoopbackServer
from web_money_rows import HOSTILE, fill, hold_clock, money_settings

from ledger.web.app import create_app
from ledger.web.viewer import Viewer

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")


class Finance:
    def viewer_of(self, request) -> Viewer:
        return Viewer("fin", "finance", csrf="t" * 32)


def test_the_overview_draws_its_charts_and_runs_no_script_from_data(ledger, web_settings, monkeypatch, browser):
    settings = money_settings(web_settings)
    fill(ledger, settings)
    hold_clock(monkeypatch)
    problems: list[str] = []
    with LoopbackServer(create_app(settings, Finance(), ledger=ledger)) as server:
        context = browser.new_context()  # the run's one Chromium (tests/web/conftest.py)
        try:
            page = context.new_page()
            page.on("console", lambda message: problems.append(message.text) if message.type == "error"
                    and not message.text.startswith("Failed to load resource") else None)
            page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
                    if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("dialog", lambda dialog: problems.append(f"a dialog opened: {dialog.message}"))
            page.goto(server.root_url + "/")
            page.wait_for_selector('[data-chart="budgets-chart"][data-drawn="true"] svg')
            assert page.locator('[data-chart="balance-0"][data-drawn="true"] svg').count() == 1
            assert page.locator('[data-chart="budgets-chart"] svg text', has_text="all-month").count() >= 1
            page.goto(server.root_url + "/pricing")
            cell = page.locator("table.findings td", has_text="<script>alert(1)</script>")
            assert cell.count() == 1 and cell.get_attribute("title") == HOSTILE  # cut for display, whole in its title
        finally:
            context.close()
    assert problems == []
