"""Sessions for reading a report's figures: one snapshot of the ledger, or the calls held still for a close."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.orm import Session

from .engine import Ledger


@contextmanager
def one_snapshot(ledger: Ledger) -> Iterator[Session]:
    """A read-only session that sees one state of the ledger from its first query to its end.

    A report reads several times (groups, adjustments, counts, the rows of
    the workbook, the digest): all of them see the same calls, while
    recorders go on writing. PostgreSQL: REPEATABLE READ, READ ONLY.
    SQLite (WAL): one read transaction, begun before the first read.
    """
    with ledger.session() as session:
        if ledger.dialect == "postgresql":
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        else:
            # pysqlite runs a SELECT outside any transaction: begin one, so that every read sees one snapshot.
            session.connection().exec_driver_sql("BEGIN")
        yield session


@contextmanager
def calls_held(ledger: Ledger) -> Iterator[Session]:
    """A session in which no call can be written: what a close reads and stores is what the ledger holds.

    SQLite: BEGIN IMMEDIATE (the database's write lock, which waits for a
    writer's transaction to end). PostgreSQL: LOCK TABLE calls IN SHARE MODE,
    which waits for every transaction that is inserting calls and holds new
    inserts until this one ends; period_closes is locked against a second
    close at the same time. Writers wait (the journal holds their records);
    they do not fail.
    """
    with ledger.session() as session:
        if ledger.dialect == "postgresql":
            session.execute(text("LOCK TABLE calls IN SHARE MODE"))
            session.execute(text("LOCK TABLE period_closes IN SHARE ROW EXCLUSIVE MODE"))
        else:
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session
