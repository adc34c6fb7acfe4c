"""The engine and sessions: URLs, a read command's refusal to create a ledger, commits and rollbacks."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ledger.config import normalise_url
from ledger.errors import ConfigError, DatabaseError
from ledger.store.engine import Ledger, create_engine_for, current_revision, ensure_schema, head_revision
from ledger.store.models import JobRun


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///ledger.db", "sqlite:///ledger.db"),
    ("sqlite://", "sqlite://"),
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgres://u:p%40ss@h:5433/db", "postgresql+psycopg://u:p%40ss@h:5433/db"),
    ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
])
def test_urls_are_opened_through_psycopg_or_sqlite(url, expected):
    assert normalise_url(url) == expected


@pytest.mark.parametrize("url", ["ledger.db", "mysql://h/db", "postgresql+psycopg2://h/db", "", 5])
def test_a_url_the_ledger_cannot_open_is_a_config_error(url):
    with pytest.raises(ConfigError):
        normalise_url(url)


def test_a_malformed_url_is_a_config_error_when_opened():
    with pytest.raises(ConfigError, match="not a database URL"):
        create_engine_for("postgresql://user@host:notaport/db")


def test_a_read_command_never_creates_a_ledger_where_none_is(tmp_path):
    with pytest.raises(DatabaseError, match="no ledger at"):
        Ledger(f"sqlite:///{tmp_path / 'typo.db'}", must_exist=True)
    assert not (tmp_path / "typo.db").exists()


def test_the_schema_is_made_once_and_a_session_commits_or_rolls_back(database_url):
    with Ledger(database_url) as ledger:
        assert current_revision(ledger.engine) == head_revision()
        ensure_schema(ledger.engine)  # already there: nothing to do
        from datetime import datetime, timezone

        with ledger.session() as session:
            session.add(JobRun(job="kept", started_at=datetime.now(timezone.utc), outcome="ok"))
        with pytest.raises(RuntimeError):
            with ledger.session() as session:
                session.add(JobRun(job="dropped", started_at=datetime.now(timezone.utc), outcome="ok"))
                session.flush()
                raise RuntimeError("the job failed half-way")
        with ledger.session() as session:
            assert session.scalars(select(JobRun.job)).all() == ["kept"]
            assert session.scalar(select(func.count()).select_from(JobRun)) == 1


def _make_ledger(url: str, errors) -> None:
    try:
        Ledger(url).close()
    except Exception as error:  # noqa: BLE001 - the test reports it
        errors.put(repr(error))


def test_threads_and_processes_making_one_new_sqlite_ledger_at_once_all_succeed(tmp_path):
    """Two recorders of one process (their writers), or the proxy's workers, on a ledger file nobody made yet."""
    import multiprocessing
    import queue
    import threading

    for trial in range(3):  # threads: Alembic's module-level proxies are shared by a process's threads
        url = f"sqlite:///{tmp_path / f'threads-{trial}.db'}"
        errors: queue.Queue = queue.Queue()
        threads = [threading.Thread(target=_make_ledger, args=(url, errors)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors.empty(), errors.get()
        with Ledger(url, must_exist=True) as ledger:
            assert ledger.has_table("calls")
    context = multiprocessing.get_context("spawn")  # processes: SQLite's DDL is not one transaction here
    url = f"sqlite:///{tmp_path / 'processes.db'}"
    errors = context.Queue()
    processes = [context.Process(target=_make_ledger, args=(url, errors)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert errors.empty(), errors.get()


def test_a_command_on_an_older_ledger_says_to_upgrade_it_and_changes_nothing(tmp_path, capsys):
    """A report on a ledger of an earlier schema upgraded it (a write: on millions of calls, a long one, and
    impossible on a read-only copy); now every command that opens an existing ledger asks for `db upgrade`."""
    from ledger.cli import main
    from ledger.store.engine import create_engine_for, upgrade

    path = tmp_path / "old.db"
    engine = create_engine_for(f"sqlite:///{path}")
    upgrade(engine, "0006")
    engine.dispose()
    before = path.read_bytes()
    for command in (["report", "--period", "2026-11"], ["calls"], ["closes"], ["alerts"], ["check"]):
        assert main(["--database-url", f"sqlite:///{path}", *command]) == 1, command
        err = capsys.readouterr().err
        assert "has schema 0006" in err and "credit-ledger db upgrade" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert path.read_bytes() == before
    engine = create_engine_for(f"sqlite:///{path}")
    assert current_revision(engine) == "0006"
    engine.dispose()
    assert main(["--database-url", f"sqlite:///{path}", "db", "upgrade"]) == 0
    assert main(["--database-url", f"sqlite:///{path}", "calls"]) == 0
