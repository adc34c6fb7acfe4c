"""The Spend page in a real browser (Debian's Chromium driven by Playwright): the chart draws its bars, and a click on
a bar opens the calls behind it. The browser is the run's one Chromium (tests/web/conftest.py)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from factories import LoopbackServer
from ledger_rows import call_values, insert

from ledger.web.app import create_app
from ledger.web.viewer import Viewer

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")


class Everyone:
    def viewer_of(self, request) -> Viewer:
        return Viewer("fin", "finance", csrf="t" * 32)


@pytest.fixture
def dashboard(ledger, web_settings):
    """The dashboard under uvicorn on a free loopback port, in a thread; its root URL."""
    with LoopbackServer(create_app(web_settings, Everyone(), ledger=ledger)) as server:
        yield server.root_url


def test_the_chart_draws_its_bars_and_a_click_on_one_opens_its_calls(ledger, dashboard, browser):
    insert(ledger, [call_values(started_at=datetime(2026, 11, 10, 9, tzinfo=timezone.utc), project="search",
                                charged="2"),
                    call_values(started_at=datetime(2026, 11, 10, 10, tzinfo=timezone.utc), project="ads", charged="1")])
    page = browser.new_page()
    try:
        page.goto(f"{dashboard}/spend?period=2026-11&tz=UTC&by=project")
        box = page.locator('[data-chart="spend-daily"][data-drawn="true"]')
        box.wait_for(timeout=10_000)
        assert box.locator("svg").count() == 1
        bars = box.locator("svg path[fill='#1f77b4'], svg path[fill='#ff7f0e']")
        assert bars.count() >= 2  # a segment a project on the 10th (and the legend's marks)
        # The middle of search's segment on 2026-11-10 (the tenth day), where ECharts drew it.
        x, y = page.evaluate("""() => {
            const chart = echarts.getInstanceByDom(document.querySelector('[data-chart="spend-daily"]'));
            return chart.convertToPixel({seriesIndex: 0}, [9, 1]);
        }""")
        origin = box.bounding_box()
        page.mouse.click(origin["x"] + x, origin["y"] + y)
        page.wait_for_url("**/calls?**", timeout=10_000)
        opened = urlsplit(page.url)
        assert opened.path == "/calls"
        assert parse_qs(opened.query) == {"period": ["2026-11-10"], "tz": ["UTC"], "project": ["search"]}
    finally:
        page.close()
