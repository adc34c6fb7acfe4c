"""The dashboard under test: the real app on a real ledger, asked through Starlette's TestClient (httpx).

`FixedViewers` stands for the sign-in: every request is the viewer a test
chooses. It lives here, not in the package: the dashboard itself finds its
viewers only by session or bearer token. `signed_in` is that real sign-in:
users in the ledger, sessions timed by a `clock` the test moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from ledger.config import Settings
from ledger.web.app import create_app
from ledger.web.viewer import Viewer
from signing import PASSWORD, Clock


@dataclass
class FixedViewers:
    viewer: Viewer | None

    def viewer_of(self, request) -> Viewer | None:
        return self.viewer


@pytest.fixture
def web_settings(database_url, tmp_path) -> Settings:
    return Settings(database_url=database_url, secret_path=str(tmp_path / "secret"),
                    journal_path=str(tmp_path / "journal"), timezone="UTC")


@pytest.fixture
def client_as(ledger, web_settings):
    """client_as(Viewer(...) or None) -> a TestClient of the dashboard on `ledger`, every request made as that viewer."""
    clients = []

    def make(viewer: Viewer | None, settings: Settings | None = None) -> TestClient:
        app = create_app(settings or web_settings, FixedViewers(viewer), ledger=ledger)
        client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


class QueryCount:
    """How many statements the ledger's engine ran while it was open (a page's queries: fixed, whatever the data)."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.statements: list[str] = []
        self._event = event
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)

    def close(self) -> None:
        self._event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def count_queries(ledger):
    """count_queries() -> a QueryCount of the ledger's engine from now on; read `.count` after the request."""
    counters = []

    def start() -> QueryCount:
        counter = QueryCount(ledger.engine)
        counters.append(counter)
        return counter

    yield start
    for counter in counters:
        counter.close()


# ---------------------------------------------------------------- signed in for real: users, sessions, a clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signed_in(ledger, web_settings, clock):
    """signed_in(name=None, password=PASSWORD) -> a TestClient of the dashboard as it runs (sessions in `ledger`, timed
    by `clock`), signed in through the real /login form as `name` (a user added with add_user), or not at all."""
    from ledger.web.serve import dashboard_app

    clients = []

    def make(name: str | None = None, password: str = PASSWORD, settings: Settings | None = None) -> TestClient:
        app = dashboard_app(settings or web_settings, ledger, clock)
        client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        if name is not None:
            answer = client.post("/login", data={"username": name, "password": password})
            assert answer.status_code == 303, answer.text
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    """Argon2id at its least cost in these tests (the package's cost takes 0.2 s a hash, which
    test_the_package_hashes_passwords_with_argon2id_at_its_own_cost holds)."""
    from argon2 import PasswordHasher

    from ledger.store import credentials

    monkeypatch.setattr(credentials, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


# ---------------------------------------------------------------- one browser for the whole run

CHROMIUM = "/usr/bin/chromium"  # Debian's, which .ci/run installs; Playwright never downloads one here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Chromium through Playwright's sync API, started once for the run (each test takes a new context of it).

    Playwright's loop counts as running in the main thread while it is open: a test that runs an event loop itself
    (asyncio.run) does so in a thread of its own, as Starlette's TestClient does. A second sync_playwright() in the
    run would refuse to start: take this fixture."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()

