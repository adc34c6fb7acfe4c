"""The Calls pages in a real browser (Debian's Chromium driven by Playwright): filter, page through, open a call.

The dashboard runs under uvicorn on a loopback port, every request as one viewer (FixedViewers: the real
sign-in is tested with it). The run's one browser (tests/web/conftest.py); the page's CSP is the real one, so a script from
data would not run even if escaping failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from factories import LoopbackServer
from ledger_rows import call_values, insert

from ledger.web.app import create_app
from ledger.web.viewer import Viewer

NOV = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")


class OneViewer:
    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer

    def viewer_of(self, request) -> Viewer:
        return self.viewer


@pytest.fixture
def served(ledger, web_settings):
    """The dashboard on a free loopback port, as a viewer of the project `search` only: its root URL."""
    app = create_app(web_settings, OneViewer(Viewer("sam", "viewer", projects=frozenset({"search"}))), ledger=ledger)
    with LoopbackServer(app) as server:
        yield server.root_url


def test_a_person_filters_pages_through_calls_and_opens_one(ledger, served, browser):
    # 150 calls of `search` (two pages), every second one by u-2, and one of `chat` the viewer may not see.
    insert(ledger, [call_values(started_at=NOV + timedelta(seconds=i // 2), call_id=f"s{i:03d}",
                                end_user="u-2" if i % 2 else "u-1") for i in range(150)]
           + [call_values(started_at=NOV, call_id="chat-call", project="chat", end_user="<script>alert(1)</script>")])
    context = browser.new_context()  # the run's one Chromium (tests/web/conftest.py)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{served}/calls?period=2026-11&tz=UTC")
        rows = page.locator("table.calls tbody tr")
        assert rows.count() == 100
        page.get_by_role("link", name="Next page (older)").click()
        assert rows.count() == 50 and page.get_by_text("No older calls.").is_visible()
        page.get_by_role("link", name="Newest").click()
        page.get_by_label("User").fill("u-2")
        page.get_by_role("button", name="Show").click()
        assert rows.count() == 75 and "user=u-2" in page.url
        page.locator("table.calls tbody tr a").first.click()
        assert page.get_by_role("heading", name="Call s149").is_visible()
        assert page.get_by_text("u-2").first.is_visible() and page.get_by_text("…Zq9x").is_visible()
        assert page.goto(f"{served}/calls/chat-call").status == 404
        assert errors == []
    finally:
        context.close()
