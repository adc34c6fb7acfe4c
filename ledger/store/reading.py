"""Reading a report's figures: one snapshot of the ledger, the calls held still for a close, rows straight from the driver."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.orm import Session

from .calls import sqlite_utc_text
from .engine import Ledger

CHUNK = 5000


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


def raw_rows(session: Session, query) -> Iterator[list[tuple]]:
    """Chunks of plain tuples of a SELECT, from a DBAPI cursor of the session's connection (its transaction).

    The statement is compiled by SQLAlchemy and run on the driver's own cursor: no Row object a row, no
    result processing (these columns need none), which costs more than formatting the row
    (BENCHMARKS.md, "Reports"). PostgreSQL: a named (server-side) cursor, so rows come as the server
    sends them and memory stays flat; SQLite's cursor steps through the table as it is read.
    """
    connection = session.connection()
    dialect = connection.dialect
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    driver = connection.connection.driver_connection
    if dialect.name == "postgresql":
        cursor = driver.cursor(name=f"ledger_rows_{next(_CURSORS)}")
        cursor.itersize = CHUNK
        values = params
    else:
        cursor = driver.cursor()
        values = [_sqlite_value(params[name]) for name in compiled.positiontup]
    try:
        cursor.execute(str(compiled), values)
        while rows := cursor.fetchmany(CHUNK):
            yield rows
    finally:
        cursor.close()


_CURSORS = itertools.count(1)


def _sqlite_value(value):
    # What UTCDateTime binds on SQLite: the UTC text; every other parameter here goes as it is.
    return sqlite_utc_text(value) if isinstance(value, datetime) else value
