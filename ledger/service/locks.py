"""Locks named after a job, held across replicas of the service: one holder at a time.

PostgreSQL: an advisory lock on a connection held for the block; SQLite: a
file lock beside the database; an in-memory database belongs to one process.
"""

from __future__ import annotations

import fcntl
import hashlib
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import make_url

from ..store.engine import Ledger


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock."""
    return int.from_bytes(hashlib.sha256(f"credit-ledger:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def job_lock(ledger: Ledger, name: str, *, wait: bool = False) -> Iterator[bool]:
    """Yields True when this process holds the lock for the block, else False (never False with `wait`)."""
    if ledger.dialect == "postgresql":
        with ledger.engine.connect() as connection:
            take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = connection.execute(text(f"SELECT {take}(:k)"), {"k": lock_key(name)}).scalar()
            got = True if wait else bool(got)
            connection.commit()
            try:
                yield got
            finally:
                if got:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(name)})
                    connection.commit()
        return
    path = make_url(ledger.url).database
    if not path or path == ":memory:":
        yield True  # one process owns an in-memory database
        return
    with open(f"{path}.{name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
