"""The database away: a page answers the 503 error page (the API its JSON), no traceback, and the same app answers
the page again as soon as the database is back, even when it went away and came back between two requests (the
pool's connections are checked before use: none is handed out dead).

The database goes away for real: the app reaches the PostgreSQL server through a
TCP proxy on loopback, which drops every connection and stops listening, then
listens again (the server itself keeps running for the other tests); an SQLite
ledger's file is moved away, then back.
"""

from __future__ import annotations

import os

import pytest
from db_proxy import Proxy
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient
from test_money_pages import FINANCE
from web_money_rows import fill, hold_clock, money_settings

from ledger.store.engine import Ledger
from ledger.web.app import create_app

class AsFinance:
    """Every request is the finance viewer (the sign-in is not the subject here)."""

    def viewer_of(self, request):
        return FINANCE


PAGES = ("/", "/budgets", "/reconciliation", "/calls", "/pricing", "/closes")


@pytest.mark.postgres
def test_the_database_away_is_a_503_page_and_the_same_app_recovers_when_it_is_back(ledger, database_url, web_settings,
                                                                                   monkeypatch):
    settings = money_settings(web_settings)
    fill(ledger, settings)
    hold_clock(monkeypatch)
    url = make_url(database_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with Ledger(through, must_exist=True) as remote, TestClient(
                create_app(settings, AsFinance(), ledger=remote), raise_server_exceptions=False) as client:
            normal = {path: client.get(path) for path in PAGES}
            assert all(page.status_code == 200 for page in normal.values()), normal
            proxy.cut()  # a blip while nobody asks: the pooled connections are dead when the next request comes
            proxy.restore()
            for path in PAGES:
                assert client.get(path).status_code == 200, path
            proxy.cut()
            for path in PAGES:
                page = client.get(path)
                assert page.status_code == 503, (path, page.text[-300:])
                assert "cannot be reached" in page.text and "Traceback" not in page.text
            api = client.get("/api/v1/budgets")
            assert api.status_code == 503 and "did not answer" in api.json()["error"]["message"]
            proxy.restore()
            for path in PAGES:
                page = client.get(path)
                assert page.status_code == 200, (path, page.text[-300:])
                assert "cannot be reached" not in page.text
            assert client.get("/api/v1/budgets").status_code == 200
    finally:
        proxy.cut()


def test_the_ledger_file_away_is_a_503_page_and_the_same_app_recovers_when_it_is_back(ledger, database_url,
                                                                                     web_settings, monkeypatch):
    if not database_url.startswith("sqlite"):
        pytest.skip("an SQLite ledger's file (PostgreSQL away: the test above)")
    settings = money_settings(web_settings)
    fill(ledger, settings)
    hold_clock(monkeypatch)
    path = make_url(database_url).database
    away = path + ".away"
    with Ledger(database_url, must_exist=True) as own, TestClient(
            create_app(settings, AsFinance(), ledger=own), raise_server_exceptions=False) as client:
        assert all(client.get(page_path).status_code == 200 for page_path in PAGES)
        os.rename(path, away)
        for page_path in PAGES:
            page = client.get(page_path)
            assert page.status_code == 503, (page_path, page.text[-300:])
            assert "cannot be reached" in page.text and "Traceback" not in page.text
        assert client.get("/api/v1/budgets").status_code == 503
        assert not os.path.exists(path)  # no empty ledger made in its place
        os.rename(away, path)
        for page_path in PAGES:
            assert client.get(page_path).status_code == 200, page_path
