"""Engines, sessions and schema upgrades: the one place that commits.

The database is `CREDIT_LEDGER_DATABASE_URL` (or --database-url), by default
the SQLite file `ledger.db` in the working directory. The schema is only ever
made by the Alembic migrations; `Ledger` upgrades an empty database.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from contextlib import contextmanager
from importlib import resources
from typing import Any, Iterator
from urllib.parse import quote

from sqlalchemy import Engine, Table, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..config import DEFAULT_DATABASE_URL, database_url_from_env, normalise_url
from ..errors import ConfigError, DatabaseError, describe


BUSY_TIMEOUT_MS = 30_000  # how long SQLite waits for another process's lock before "database is locked"
SCHEMA_WAIT_SECONDS = 15.0  # how long a new ledger's schema check waits for another process's migration


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: journal_mode already waits on a lock
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_file(url: str) -> str | None:
    """The file of an SQLite URL (None: in memory, or given as a `file:` URI)."""
    parsed = make_url(url)
    path = parsed.database
    if path in (None, "", ":memory:") or parsed.query.get("uri") == "true":
        return None
    return os.path.abspath(path)


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _keep_to_existing_file(engine: Engine, path: str) -> None:
    """An SQLite engine of an existing ledger: a connection opens the file and never makes one (the file away is
    an error until it is back), and a pooled connection is used only while the file at `path` is still the one it
    opened (a file moved away, or replaced by a restored copy, is opened anew): what pool_pre_ping does for a
    server's connections."""

    @event.listens_for(engine, "do_connect")
    def _open_existing(dialect, record, cargs, cparams) -> None:
        cargs[:] = [f"file:{quote(path, safe='/')}?mode=rw"]
        cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _opened(dbapi_connection, record) -> None:
        record.info["ledger_file"] = _file_identity(path)

    @event.listens_for(engine, "checkout")
    def _still_there(dbapi_connection, record, proxy) -> None:
        found = _file_identity(path)
        if found is None or found != record.info.get("ledger_file"):
            raise DisconnectionError(f"the ledger file {path} is no longer the one this connection opened")


def create_engine_for(url: str, *, existing: bool = False, **kwargs) -> Engine:
    """An engine of the ledger at `url`; `existing`: a ledger that must be there already (an SQLite file is
    never made, and is opened anew when it was moved or replaced)."""
    url = normalise_url(url)
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"not a database URL: {url!r} ({describe(exc)})") from None
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        path = _sqlite_file(url)
        if existing and path is not None:
            _keep_to_existing_file(engine, path)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


def insert_for(session: Session | Any, table: Table):
    """An INSERT of `table` in the session's dialect, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    dialect = session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def alembic_config(url: str | None = None, connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("ledger.migrations")))
    cfg.attributes["database_url"] = normalise_url(url) if url else database_url_from_env()
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


# Alembic keeps the migration being run in module-level proxies (`alembic.op`, `alembic.context`): two
# threads of one process upgrading at once (two recorders' writers on a new ledger) would run each other's
# operations. One upgrade at a time per process; other processes are kept apart by the database.
_UPGRADING = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    try:
        with _UPGRADING, engine.connect() as connection:
            command.upgrade(alembic_config(engine.url.render_as_string(False), connection), revision)
            connection.commit()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot upgrade the ledger at {engine.url!r}: {describe(exc)}") from exc


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    with _UPGRADING, engine.connect() as connection:
        command.downgrade(alembic_config(engine.url.render_as_string(False), connection), revision)
        connection.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def locked_ledger(error: BaseException, url: str | None) -> str | None:
    """One line for a SQLite ledger another process held past BUSY_TIMEOUT_MS ("database is locked"); None otherwise."""
    text = describe(error)
    if not isinstance(error, OperationalError) or not ("locked" in text or "busy" in text):
        return None
    path = make_url(url).database if url else None
    return (f"the ledger {path or ''} is locked by another process (still busy after {BUSY_TIMEOUT_MS // 1000} s: "
            f"{text}); try again when it has finished")


# Values a statement's IN list holds at most: under SQLite's limit of 32766 parameters.
IDS_A_STATEMENT = 5000


@functools.cache
def head_revision() -> str:
    """The newest revision of the migration scripts (read once a process: they do not change under it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(DEFAULT_DATABASE_URL)).get_current_head()


def ensure_schema(engine: Engine) -> None:
    """Upgrade to the newest schema unless it is there already (cheap when it is).

    Another thread or process may be making the same new ledger at this moment
    (SQLite's DDL is not one transaction here): its tables appear under ours,
    or the file is locked while it writes them. Then this waits for that
    schema to reach the newest, up to 15 s; a database that cannot be reached
    at all fails at once.
    """
    deadline = time.monotonic() + SCHEMA_WAIT_SECONDS
    while True:
        try:
            if current_revision(engine) == head_revision():
                return
        except SQLAlchemyError as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise DatabaseError(f"cannot reach the ledger database {engine.url!r}: {describe(exc)}") from exc
            time.sleep(0.1)
            continue
        try:
            upgrade(engine)  # a thread that waited for another's upgrade finds the schema at head: nothing to do
            return
        except DatabaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _require_ledger_file(url: str) -> None:
    """Commands that only read refuse to create a ledger where none is (a typo, say), or to make one of a
    file that is none: the file is looked at read-only, before the engine (whose pragmas write) opens it."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        return
    if parsed.query.get("uri") == "true" and path.startswith("file:"):  # `file:PATH?mode=ro`: the file is PATH
        path = path.removeprefix("file:")
    if not os.path.exists(path):
        raise DatabaseError(f"no ledger at {path} (run the demo, the recorder or `credit-ledger db upgrade` first)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise DatabaseError(f"cannot read the ledger at {path}: {exc.strerror}") from None
    if head != b"SQLite format 3\0":
        raise DatabaseError(f"{path} is not a ledger (not an SQLite database)")
    import sqlite3

    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot read the ledger at {path}: {exc}") from None
    if found is None:
        raise DatabaseError(f"{path} holds no ledger (no credit-ledger schema): `credit-ledger db upgrade` makes it one")


def _require_ledger_schema(engine: Engine) -> None:
    """A command on an existing ledger never makes a ledger of a database that is none (an empty file, someone
    else's database), nor upgrades an older one: on a ledger of millions of calls an upgrade is a long write
    (building the rollups), which a report, run against a read-only copy or a replica, must not start."""
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseError(f"cannot read the ledger at {engine.url!r}: {describe(exc)}") from None
    if revision is None:
        engine.dispose()
        raise DatabaseError(
            f"{engine.url!r} holds no ledger (no credit-ledger schema): `credit-ledger db upgrade` makes it one"
        )
    if revision != head_revision():
        engine.dispose()
        raise DatabaseError(
            f"the ledger at {engine.url!r} has schema {revision} and this credit-ledger reads {head_revision()}: "
            "`credit-ledger db upgrade` brings it there (a command on an existing ledger does not change its schema)"
        )


class Ledger:
    """An engine on an upgraded ledger and a session factory."""

    def __init__(
        self, url: str | None = None, *, upgrade_schema: bool = True, must_exist: bool = False, **engine_kwargs
    ) -> None:
        self.url = normalise_url(url) if url else database_url_from_env()
        if must_exist:
            _require_ledger_file(self.url)
        self.engine = create_engine_for(self.url, existing=must_exist, **engine_kwargs)
        if must_exist:
            _require_ledger_schema(self.engine)
        if upgrade_schema and not must_exist:  # a command on an existing ledger found it at head, or refused
            ensure_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def has_table(self, name: str) -> bool:
        return inspect(self.engine).has_table(name)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
