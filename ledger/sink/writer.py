"""The database writer: batches of captures built into records, priced and inserted, one transaction each.

`LedgerWriter` is what every writer runs, in a writer process of the sink's
own (`ledger.sink.processes`) or in the sink's thread: a batch of journal
entries in, one transaction out; a batch that fails on its data is written
record by record, and what cannot be written is kept aside in
`rejected_records`, never dropped. `replay_journal` writes what dead
processes left in a journal.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import astuple, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from .. import redact
from ..accounting.parsing import plain_text
from ..accounting.pricing import PricingPolicy, RateBook, default_rate_book, price
from ..accounting.records import CallRecord, record_digest, record_to_dict
from ..errors import DatabaseError, describe
from ..store.calls import call_row, insert_rows
from ..store.engine import Ledger, ensure_schema
from ..store.models import RejectedRecord
from ..store.rate_cards import sync_rate_cards
from .capture import build_record
from .segments import UNDECODABLE, UNREADABLE_LINE, Entry, claim_orphans, live_segments, segment_paths
from .wire import decode, entry_digest, line_text

log = redact.logger(__name__)

# Errors that mean "the database is not there now", as opposed to "this batch cannot be written".
OUTAGES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError, DatabaseError)


def _driver_outages() -> tuple[type[BaseException], ...]:
    # The batch insert talks to the driver directly: its own errors come unwrapped.
    import sqlite3

    found: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        import psycopg

        found += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:
        pass
    return tuple(found)


DRIVER_OUTAGES = _driver_outages()


def is_outage(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OUTAGES + DRIVER_OUTAGES)


# One entry of a batch: the capture (None where only its journal line is at hand), its journal
# line (None where it could not be journalled), and what is wrong with it (None: nothing).
BatchEntry = tuple  # (Capture | RawCapture | None, bytes | None, str | None)


@dataclass(frozen=True, slots=True)
class BatchResult:
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    kept_aside: int = 0  # lines or captures that could not become a record (rejected_records)

    def __add__(self, other: "BatchResult") -> "BatchResult":
        return BatchResult(
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.conflicts + other.conflicts,
            self.kept_aside + other.kept_aside,
        )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    segments: int = 0  # orphan segments replayed and deleted
    entries: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    torn: int = 0  # entries kept aside: torn, unreadable, or no record could be made of them
    live_segments: int = 0  # held by a live process: left alone

    def summary(self) -> str:
        return (
            f"replayed {self.segments} journal segment(s), {self.entries} entries: {self.inserted} new, "
            f"{self.duplicates} already in the ledger, {self.conflicts} conflicting (kept aside), "
            f"{self.torn} torn or unreadable line(s) kept aside; {self.live_segments} live segment(s) left alone"
        )


class LedgerWriter:
    """Builds, prices and inserts batches; one transaction per batch."""

    def __init__(
        self,
        database_url: str,
        rate_book: RateBook | None = None,
        policy: PricingPolicy = PricingPolicy(),
        *,
        busy_timeout: float = 2.0,
    ) -> None:
        self.database_url = database_url
        self.rate_book = rate_book or default_rate_book()
        self.policy = policy
        self.busy_timeout = busy_timeout
        self.ledger: Ledger | None = None

    def connect(self) -> None:
        """Open the ledger (upgrading its schema) and sync the rate cards; raises when the database is down."""
        if self.ledger is not None:
            return
        ledger = Ledger(self.database_url, upgrade_schema=False)
        if ledger.dialect == "sqlite":
            # After the engine's pragmas: a writer waits less for a lock, then retries with backoff,
            # so that close() keeps its timeout while another connection holds the file.
            ms = int(self.busy_timeout * 1000)
            event.listen(ledger.engine, "connect", lambda conn, _rec: conn.execute(f"PRAGMA busy_timeout={ms}"))
        try:
            ensure_schema(ledger.engine)
            with ledger.session() as session:
                sync_rate_cards(session, self.rate_book)
        except BaseException:
            ledger.close()
            raise
        self.ledger = ledger

    @property
    def connected(self) -> bool:
        return self.ledger is not None

    @property
    def url_for_logs(self) -> str:
        return repr(self.ledger.engine.url) if self.ledger is not None else "?"

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    def disconnect_after_outage(self) -> None:
        if self.ledger is not None:
            self.ledger.engine.dispose()  # stale connections go; the engine reconnects on next use

    def abort(self) -> None:
        """A thread cannot be interrupted: a batch stuck on the database waits for its busy timeout."""

    def forget_after_fork(self) -> None:
        if self.ledger is not None:
            self.ledger.engine.dispose(close=False)  # the parent's connections stay the parent's
            self.ledger = None

    def write(self, entries: Sequence[BatchEntry]) -> BatchResult:
        """Write one batch in one transaction; raises on an outage. On a data error, record by record.

        An entry without its capture is decoded from its journal line here (a
        re-read journal's, or what a writer process was sent).
        """
        records, rows, aside = self.prepare(entries)
        try:
            return self._write_prepared(rows, records, aside)
        except Exception as error:
            if is_outage(error):
                raise
            log.warning("a batch could not be written (%s): writing its records one by one", describe(error))
        total = BatchResult()
        for row, record in zip(rows, records):
            try:
                total += self._write_prepared([row], [record], [])
            except Exception as error:
                if is_outage(error):
                    raise
                total += self._keep_aside_failed(record, error)
        if aside:
            total += self._write_prepared([], [], aside)
        return total

    def prepare(self, entries: Sequence[BatchEntry]) -> tuple[list[CallRecord], list[tuple], list[dict]]:
        """(records, their `calls` rows, kept-aside rows) of a batch: each entry built, priced and packed in one pass.

        A row's digest is its journal entry's (a replay re-reads the same
        entry); a capture that has no entry gets its record's.
        """
        records: list[CallRecord] = []
        rows: list[tuple] = []
        aside: list[dict] = []
        now = datetime.now(timezone.utc)
        book, policy = self.rate_book, self.policy
        for capture, line, problem in entries:
            if capture is None and problem is None and line is not None:
                try:
                    capture = decode(line)
                except UNDECODABLE:
                    problem = UNREADABLE_LINE
            if capture is not None and problem is None:
                try:
                    record = build_record(capture)
                    digest = entry_digest(line) if line is not None else record_digest(record)
                    rows.append(call_row(record, price(record, book, policy), digest, now))
                    records.append(record)
                    continue
                except Exception as error:  # a capture no record can be made of: keep it aside
                    problem = f"capture could not be recorded: {type(error).__name__}: {error}"[:200]
            call_id = capture.call_id if capture is not None else None
            aside.append(
                {
                    "call_id": call_id[:64] if isinstance(call_id, str) else None,
                    "reason": plain_text(problem or "capture could not be journalled"),
                    "payload": line_text(line) if line else repr(capture),
                    "received_at": now,
                }
            )
        return records, rows, aside

    def _write_prepared(self, rows: list[tuple], records: list[CallRecord], aside: list[dict]) -> BatchResult:
        assert self.ledger is not None
        with self.ledger.session() as session:
            result = insert_rows(session, rows, records)
            if aside:
                session.execute(RejectedRecord.__table__.insert(), aside)
        return BatchResult(result.inserted, result.duplicates, result.conflicts, len(aside))

    def _keep_aside_failed(self, record: CallRecord, error: BaseException) -> BatchResult:
        row = {
            "call_id": str(record.call_id)[:64],
            "reason": plain_text(f"could not be written: {describe(error)}"[:200]),
            "payload": json.dumps(record_to_dict(record), sort_keys=True, default=repr),
            "received_at": datetime.now(timezone.utc),
        }
        return self._write_prepared([], [], [row])


def batches(entries: Iterable[Entry], size: int):
    """The journal's entries as batches of `size` (capture, line, problem)."""
    batch: list[BatchEntry] = []
    for entry in entries:
        batch.append((entry.capture, entry.line, entry.problem))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay_journal(
    database_url: str,
    journal_dir: str | Path,
    *,
    rate_book: RateBook | None = None,
    policy: PricingPolicy = PricingPolicy(),
    batch_size: int = 1000,
) -> ReplayResult:
    """Write every orphan segment of the journal into the ledger and delete it; idempotent.

    The proxy's workers' journals (`proxy-<n>` folders inside it) are replayed
    too. Segments held by a live process are left to it. A database outage
    raises (`DatabaseError` or SQLAlchemy's error) and leaves the journal as it was.
    """
    folders = journal_folders(journal_dir)
    if not any(segment_paths(folder) for folder in folders):
        return ReplayResult()
    writer = LedgerWriter(database_url, rate_book, policy, busy_timeout=30.0)
    total = ReplayResult()
    try:
        writer.connect()
        for folder in folders:
            result = replace(replay_orphans(writer, folder, batch_size), live_segments=live_segments(folder))
            total = ReplayResult(*(a + b for a, b in zip(astuple(total), astuple(result))))
    finally:
        writer.close()
    return total


def journal_folders(journal_dir: str | Path) -> list[Path]:
    """The journal and the proxy workers' journals inside it (`proxy-<n>`)."""
    journal_dir = Path(journal_dir)
    inner = sorted(p for p in journal_dir.glob("proxy-*") if p.is_dir() and p.name[6:].isdigit()) if journal_dir.is_dir() else []
    return [journal_dir, *inner]


def replay_orphans(writer, journal_dir: str | Path, batch_size: int, between=None) -> ReplayResult:
    """Write the orphan segments with `writer` (a LedgerWriter's interface), deleting each once committed.

    `between` is called after each batch (the sink writes new captures first there).
    """
    segments = entries = 0
    total = BatchResult()
    with closing(claim_orphans(journal_dir)) as claims:  # an outage midway releases the claimed segment
        for claimed in claims:
            for batch in batches(claimed.entries(with_captures=False), batch_size):  # the writer decodes the lines
                total += writer.write(batch)
                entries += len(batch)
                if between is not None:
                    between()
            claimed.remove()
            segments += 1
            log.info("replayed journal segment %s", claimed.path.name)
    torn = total.kept_aside
    if torn:
        log.warning("%d torn or unreadable journal line(s) kept aside in rejected_records", torn)
    return ReplayResult(segments, entries, total.inserted, total.duplicates, total.conflicts, torn)
