"""Real parts for the tests: a fresh ledger database and the simulator on loopback.

The ledger is a temporary SQLite file, or, when CREDIT_LEDGER_TEST_POSTGRES_URL
is set (for example postgresql://postgres@127.0.0.1:5432/test), a fresh
PostgreSQL database made on that server for each test and dropped afterwards.
Tests marked `postgres` need that server and fail, not skip, when it is set
but cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV_POSTGRES = "CREDIT_LEDGER_TEST_POSTGRES_URL"


def postgres_server_url() -> str | None:
    return os.environ.get(ENV_POSTGRES) or None


def _admin_url(server_url: str) -> str:
    url = make_url(server_url)
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def make_postgres_database() -> tuple[str, callable]:
    """A new empty database on the test server: (url, drop)."""
    admin_url = _admin_url(postgres_server_url())
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def pytest_collection_modifyitems(config, items) -> None:
    if postgres_server_url():
        return
    skip = pytest.mark.skip(reason=f"needs PostgreSQL: set {ENV_POSTGRES} (.ci/run does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    """The URL of an empty ledger database of the backend under test."""
    if postgres_server_url():
        url, drop = make_postgres_database()
        try:
            yield url
        finally:
            drop()
    else:
        yield f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database (for tests marked `postgres`)."""
    url, drop = make_postgres_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def ledger(database_url):
    from ledger.store.engine import Ledger

    with Ledger(database_url) as opened:
        yield opened


@pytest.fixture
def simulator():
    """The API simulator served by uvicorn on a free loopback port."""
    from ledger.sim.server import SimulatorServer

    with SimulatorServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_real_api(monkeypatch) -> None:
    # Nothing in the tests may reach the real API, even by a default.
    monkeypatch.setenv("AIVIDEO_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CREDIT_LEDGER_FINGERPRINT_SECRET", "test-secret-0123456789")
