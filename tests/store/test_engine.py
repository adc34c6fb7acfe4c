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
