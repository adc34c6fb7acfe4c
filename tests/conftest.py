"""Real parts for the tests: a fresh ledger database and the simulator on loopback.

The ledger is a temporary SQLite file, or, when CREDIT_LEDGER_TEST_POSTGRES_URL
is set (for example postgresql://postgres@127.0.0.1:5432/test), a fresh
PostgreSQL database made on that server for each test and dropped afterwards.
Tests marked `postgres` need that server and fail, not skip, when it is set
but cannot be reached. A ledger at the newest schema is a copy of a template
migrated once per session (a file copy; `CREATE DATABASE ... TEMPLATE`), not a
migration per test.
"""

from __future__ import annotations

import functools
import os
import shutil
import queue
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV_POSTGRES = "CREDIT_LEDGER_TEST_POSTGRES_URL"


def _one_default_ssl_context() -> None:
    """One default SSL context for the tests' process: each httpx2 client (a few hundred a run: SDK clients, the
    credits client of each poll, the alert channels') loaded the system's CA bundle anew, 35 ms each on a quiet host
    (171 ms under load: 268 contexts took 46 s of tests/record and tests/service). The tests speak plain HTTP on
    loopback, so no test reads the bundle; the package's own processes, and the tests' child processes, are as
    they were."""
    import httpcore2

    httpcore2.default_ssl_context = functools.lru_cache(maxsize=None)(httpcore2.default_ssl_context)


_one_default_ssl_context()


def postgres_server_url() -> str | None:
    return os.environ.get(ENV_POSTGRES) or None


def _admin_url(server_url: str) -> str:
    url = make_url(server_url)
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class Dropper:
    """Drops the tests' PostgreSQL databases in a thread of its own: a DROP DATABASE waits for a checkpoint (on
    this server about as long as a small test), which need not hold up the next test. `drain` waits for the last."""

    def __init__(self) -> None:
        self._names: queue.Queue = queue.Queue()
        self._failures: list[str] = []
        self._thread: threading.Thread | None = None

    def drop(self, admin_url: str, name: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drop-test-databases", daemon=True)
            self._thread.start()
        self._names.put((admin_url, name))

    def _run(self) -> None:
        engines: dict[str, object] = {}
        while True:
            admin_url, name = self._names.get()
            try:
                if admin_url not in engines:
                    engines[admin_url] = create_engine(admin_url, isolation_level="AUTOCOMMIT")
                with engines[admin_url].connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as error:  # said at the end of the run: a database left on the server
                self._failures.append(f"{name}: {error}")
            finally:
                self._names.task_done()

    def drain(self) -> None:
        self._names.join()
        if self._failures:
            raise RuntimeError("test databases not dropped: " + "; ".join(self._failures))


DROPPER = Dropper()


class Spares:
    """PostgreSQL databases made ahead, in a thread of their own: a CREATE DATABASE (a copy of the template, or an
    empty one) waits on the server's disk (60 - 370 ms on this host under load), which need not hold up the test that
    wants one. `take` hands a test a database made for it alone and orders its replacement, so `depth` of each kind
    wait ready. `stop` ends the thread and hands the spares nobody took to DROPPER (before the template is dropped)."""

    def __init__(self, depth: int = 2) -> None:
        self._depth = depth
        self._ready: dict[str | None, queue.Queue] = {}  # by template: names, or the error that made none
        self._orders: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def take(self, admin_url: str, template: str | None) -> str:
        with self._lock:
            if template not in self._ready:
                self._ready[template] = queue.Queue()
                for _ in range(self._depth):
                    self._orders.put((admin_url, template))
            ready = self._ready[template]
            self._orders.put((admin_url, template))  # the replacement of the one taken now
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="make-test-databases", daemon=True)
                self._thread.start()
        made = ready.get()
        if isinstance(made, Exception):  # the server's error, in the test that wanted the database
            raise made
        return made[1]

    def _run(self) -> None:
        engines: dict[str, object] = {}
        while (order := self._orders.get()) is not None:
            admin_url, template = order
            name = f"ledger_test_{uuid.uuid4().hex[:12]}"
            try:
                if admin_url not in engines:
                    engines[admin_url] = create_engine(admin_url, isolation_level="AUTOCOMMIT")
                with engines[admin_url].connect() as connection:
                    connection.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
                self._ready[template].put((admin_url, name))
            except Exception as error:
                self._ready[template].put(error)
        for engine in engines.values():
            engine.dispose()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._orders.put(None)
        thread.join()
        for ready in self._ready.values():
            while not ready.empty():
                made = ready.get()
                if not isinstance(made, Exception):
                    DROPPER.drop(*made)
        self._ready.clear()


SPARES = Spares()


def make_postgres_database(template: str | None = None) -> tuple[str, callable]:
    """A new database on the test server, empty or a copy of `template` (a database nobody is connected to): (url,
    drop); `drop` hands it to DROPPER (the run's last fixture to end drains it). Made ahead by SPARES."""
    admin_url = _admin_url(postgres_server_url())
    name = SPARES.take(admin_url, template)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), lambda: DROPPER.drop(admin_url, name)


class LedgerTemplate:
    """A ledger migrated once, copied for each test that wants one at the newest schema."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._file: Path | None = None
        self._database: str | None = None
        self._drop = lambda: None

    def new_database(self, folder: Path, name: str = "ledger.db") -> tuple[str, callable]:
        """A new ledger at the newest schema on the backend under test: (url, drop)."""
        if not postgres_server_url():
            return self.new_sqlite(folder, name), lambda: None
        if self._database is None:
            url, self._drop = make_postgres_database()
            _migrate(url)  # and disposed: a template database must have no connection
            self._database = make_url(url).database
        return make_postgres_database(self._database)

    def new_sqlite(self, folder: Path, name: str = "ledger.db") -> str:
        """A new SQLite ledger file at the newest schema: its URL."""
        if self._file is None:
            self._file = self._folder / "template.db"
            _migrate(f"sqlite:///{self._file}")
            with sqlite3.connect(self._file) as connection:  # the WAL folded in: the file alone is the ledger
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
        shutil.copyfile(self._file, folder / name)
        return f"sqlite:///{folder / name}"

    def close(self) -> None:
        SPARES.stop()  # no copy of the template is being made while it is dropped
        self._drop()


def _migrate(url: str) -> None:
    from ledger.store.engine import Ledger

    Ledger(url).close()


def pytest_collection_modifyitems(config, items) -> None:
    if postgres_server_url():
        return
    skip = pytest.mark.skip(reason=f"needs PostgreSQL: set {ENV_POSTGRES} (.ci/run does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def dropped_databases() -> Iterator[Dropper]:
    """The run's PostgreSQL databases all dropped at its end (every fixture that makes one takes this one first)."""
    yield DROPPER
    SPARES.stop()
    DROPPER.drain()


@pytest.fixture(scope="session")
def ledger_template(tmp_path_factory, dropped_databases) -> Iterator[LedgerTemplate]:
    template = LedgerTemplate(tmp_path_factory.mktemp("template"))
    try:
        yield template
    finally:
        template.close()


# Folders none of whose tests looks at an empty database: their `database_url` is a ledger at the newest
# schema already (a copy of the template), which every ledger operation would have made it anyway.
STARTS_MIGRATED = ("proxy", "record", "reports", "service", "sim")


def _starts_migrated(request) -> bool:
    folder = Path(str(request.node.path)).parent
    return "ledger" in request.fixturenames or (folder.parent.name == "tests" and folder.name in STARTS_MIGRATED)


@pytest.fixture
def database_url(request, tmp_path, ledger_template) -> Iterator[str]:
    """The URL of a new ledger database of the backend under test: empty, or (where `_starts_migrated`) at the newest schema."""
    if _starts_migrated(request):
        url, drop = ledger_template.new_database(tmp_path)
    elif postgres_server_url():
        url, drop = make_postgres_database()
    else:
        url, drop = f"sqlite:///{tmp_path / 'ledger.db'}", lambda: None
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def postgres_url(dropped_databases) -> Iterator[str]:
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
