"""The background batch writer: from the journal into the ledger, nothing lost, nothing counted twice.

`LedgerSink.emit` is the caller's path: marshal the capture, copy it framed into
the journal (a memory copy), hand it to a bounded in-memory queue. A writer
thread takes batches from the queue and has them built, priced and inserted,
one transaction each, by writer processes of their own (`writer_process.py`;
with `writer_processes=0`, or where no process can be started, by
`LedgerWriter` in the thread itself), and only then lets the journal forget
them. When the database is down, calls go on: the queue fills up to
`max_pending`, then captures wait in the journal alone and are re-read from
it when the database is back. `replay_journal` (and each
sink at start-up, in the background) writes what dead processes left behind.
With more than one writer process, lane threads write further full batches
while the writer thread's is being written (see `LedgerSink._start_lanes`).

Shutdown: `close()`, interpreter exit (atexit) and SIGTERM drain what they can
within a timeout and leave the rest in the journal. For SIGTERM, a sink made
in the main thread of a process whose SIGTERM disposition is still the
default installs a handler that raises `SystemExit(143)` in the main thread,
so the interpreter exits normally and the atexit drain runs. An application
with its own SIGTERM handler (or a sink made in another thread, where Python
cannot install one) keeps its handler: it should call `close()` itself.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from contextlib import closing
from typing import Iterable, Sequence

from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from .capture import Capture, entry_digest, frame, line_text, payload, record_of_values, record_values
from .db import Ledger, ensure_schema, normalise_url
from .errors import DatabaseError
from .journal import Entry, Journal, Segment, claim_orphans, entry_fields, live_segments, segment_paths
from .models import RejectedRecord
from .pricing import PricingPolicy, RateBook, classify, default_rate_book
from .repository import call_row, insert_rows, sync_rate_cards
from .usage import record_digest, record_to_dict
from .writer_process import ProcessWriter, WriterProcessUnavailable, can_use_process

log = logging.getLogger(__name__)

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
class SinkStats:
    emitted: int  # captures handed to emit()
    committed: int  # new rows in the ledger
    duplicates: int  # already in the ledger with the same content (replays)
    conflicts: int  # call id known with other content: kept in rejected_records
    pending: int  # emitted, not yet committed
    kept_aside: int = 0  # unreadable or torn entries kept in rejected_records
    dropped_from_memory: int = 0  # queue full or batch given up: re-read from the journal later
    replayed: int = 0  # entries of orphan segments written at start-up
    journal_errors: int = 0  # appends the journal refused (the capture still went to the writer)
    lost: int = 0  # neither journalled nor queued (journal broken and queue full)
    connected: bool = False


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


# ---------------------------------------------------------------- the database side


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
            # After db.py's pragmas: a writer waits less for a lock, then retries with backoff,
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

    def write(self, captures: Sequence[tuple[Capture | None, bytes | None, str | None]]) -> BatchResult:
        """Write one batch of (capture, journal line, problem) in one transaction; raises on an outage.
        An entry without its capture is decoded from its line here (a re-read journal's)."""
        return self.write_fields([entry_fields(c, line, p) for c, line, p in captures])

    def write_fields(self, entries: Sequence[tuple[tuple | None, bytes | None, str | None]]) -> BatchResult:
        """`write` of (capture fields, journal line, problem): on a data error, record by record."""
        rows, sources, aside = self.prepare(entries)
        try:
            return self._write_prepared(rows, sources, aside)
        except Exception as error:
            if is_outage(error):
                raise
            log.warning("a batch could not be written (%s): writing its records one by one", _reason(error))
        total = BatchResult()
        for row, values in zip(rows, sources):
            try:
                total += self._write_prepared([row], [values], [])
            except Exception as error:
                if is_outage(error):
                    raise
                total += self._keep_aside_failed(values, error)
        if aside:
            total += self._write_prepared([], [], aside)
        return total

    def prepare(self, entries: Sequence[tuple[tuple | None, bytes | None, str | None]]):
        """(`calls` rows, their record_values, kept-aside rows) of a batch of (capture fields, journal line, problem).

        Each record is built, priced and made a row in one pass (no
        intermediate values: this is the writer's hot loop). Its digest is the
        journal entry's (a replay re-reads the same entry); a capture that has
        no entry gets its record's.
        """
        rows: list[tuple] = []
        sources: list[tuple] = []
        aside: list[dict] = []
        now = datetime.now(timezone.utc)
        book, policy = self.rate_book, self.policy
        card_at = book.card_at
        for fields, line, problem in entries:
            if fields is not None and problem is None:
                try:
                    values = record_values(fields)
                    card = card_at(values[1])
                    facts = values[13]
                    usage = facts[3] or _NO_USAGE
                    klass, expected, _ = classify(
                        card, policy, values[2], values[12], values[3], facts[1], usage[0], usage[1], usage[2], facts[4]
                    )
                    digest = entry_digest(line) if line is not None else record_digest(record_of_values(values))
                    rows.append(call_row(values, klass, expected, card.name, digest, now))
                    sources.append(values)
                    continue
                except Exception as error:  # a capture no record can be made of: keep it aside
                    problem = f"capture could not be recorded: {type(error).__name__}: {error}"[:200]
            call_id = fields[0] if fields is not None else None
            aside.append(
                {
                    "call_id": call_id[:64] if isinstance(call_id, str) else None,
                    "reason": problem or "capture could not be journalled",
                    "payload": line_text(line) if line else repr(fields),
                    "received_at": now,
                }
            )
        return rows, sources, aside

    def _write_prepared(self, rows: list[tuple], sources: list[tuple], aside: list[dict]) -> BatchResult:
        assert self.ledger is not None
        with self.ledger.session() as session:
            result = insert_rows(session, rows, lambda i: record_of_values(sources[i]))
            if aside:
                session.execute(RejectedRecord.__table__.insert(), aside)
        return BatchResult(result.inserted, result.duplicates, result.conflicts, len(aside))

    def _keep_aside_failed(self, values: tuple, error: BaseException) -> BatchResult:
        record = record_of_values(values)
        row = {
            "call_id": str(record.call_id)[:64],
            "reason": f"could not be written: {_reason(error)}"[:200],
            "payload": json.dumps(record_to_dict(record), sort_keys=True, default=repr),
            "received_at": datetime.now(timezone.utc),
        }
        return self._write_prepared([], [], [row])


_NO_USAGE = (None, None, None)


def _batches(entries: Iterable[Entry], size: int):
    batch: list[tuple[Capture | None, bytes | None, str | None]] = []
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

    Segments held by a live process are left to it. A database outage raises
    (`DatabaseError` or SQLAlchemy's error) and leaves the journal as it was.
    """
    if not segment_paths(journal_dir):
        return ReplayResult()
    writer = LedgerWriter(database_url, rate_book, policy, busy_timeout=30.0)
    try:
        writer.connect()
        result = _replay_orphans(writer, journal_dir, batch_size)
    finally:
        writer.close()
    return replace(result, live_segments=live_segments(journal_dir))


def _replay_orphans(writer: LedgerWriter, journal_dir, batch_size: int, between=None) -> ReplayResult:
    segments = entries = 0
    total = BatchResult()
    with closing(claim_orphans(journal_dir)) as claims:  # an outage midway releases the claimed segment
        for claimed in claims:
            for batch in _batches(claimed.entries(with_captures=False), batch_size):  # the writer decodes the lines
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


# ---------------------------------------------------------------- the sink


_live_sinks: "weakref.WeakSet[LedgerSink]" = weakref.WeakSet()
_sigterm_installed = False


def _on_sigterm(signum, _frame) -> None:
    # Unwind the main thread; the interpreter then exits normally and atexit drains each sink.
    raise SystemExit(128 + signum)


def _install_sigterm_handler() -> None:
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _restore_sigterm_handler() -> None:
    global _sigterm_installed
    if not _sigterm_installed or _live_sinks or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _sigterm_installed = False


def _after_fork_in_child() -> None:
    for sink in list(_live_sinks):
        sink._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LedgerSink:
    """Captures in, ledger rows out: journal first, then a background batch writer."""

    def __init__(
        self,
        database_url: str,
        journal_dir: str | Path,
        *,
        rate_book: RateBook | None = None,
        policy: PricingPolicy = PricingPolicy(),
        batch_size: int = 1000,
        max_delay: float = 0.05,
        max_pending: int = 100_000,
        fsync: bool = False,
        segment_bytes: int = 4 * 1024 * 1024,
        max_attempts: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        busy_timeout: float = 2.0,
        replay_on_start: bool = True,
        handle_sigterm: bool = True,
        exit_timeout: float = 5.0,
        writer_processes: int = 2,
    ) -> None:
        self.database_url = normalise_url(database_url)  # a bad URL is a ConfigError now, not an outage later
        self.journal_dir = Path(journal_dir)
        self.batch_size = max(1, batch_size)
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.exit_timeout = exit_timeout
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        local = LedgerWriter(database_url, rate_book, policy, busy_timeout=busy_timeout)
        self._writer: LedgerWriter | ProcessWriter = local
        if writer_processes > 0 and can_use_process(self.database_url):
            self._writer = ProcessWriter(local, writer_processes)
        self._lock = threading.Lock()  # the journal's and the counters' lock (the caller's path)
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._lane_wake = threading.Event()
        self._taking = threading.Lock()
        self._interrupt = threading.Event()  # cuts a backoff short on close
        self._queue: deque[tuple[Capture | None, bytes | None, Segment | None]] = deque()  # (capture, journal payload, segment)
        self._logged: set[str] = set()
        self._emitted = 0
        self._dropped = 0
        self._lost = 0
        self._forked = False
        self._journal_errors = 0
        self._unjournalled = [0, 0]  # [handed over without a journal line, settled]
        self._totals = BatchResult()
        self._replayed = 0
        self._replay_pending = replay_on_start
        self._flush_requested = False
        self._stopping = False
        self._deadline = float("inf")
        self._closed = False
        self._journal = self._open_journal()
        self._thread = self._start_thread()
        self._lanes = self._start_lanes()
        _live_sinks.add(self)
        atexit.register(self._close_at_exit)
        if handle_sigterm:
            _install_sigterm_handler()

    def _open_journal(self) -> Journal | None:
        try:
            return Journal(self.journal_dir, fsync=self._fsync, segment_bytes=self._segment_bytes, lock=self._lock)
        except OSError as error:
            self._log_once("journal-open", "cannot open the journal at %s (%s): records are kept in memory only", self.journal_dir, error)
            return None

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="credit-ledger-writer", daemon=True)
        thread.start()
        return thread

    def _log_once(self, key: str, message: str, *args) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.error(message, *args)

    # ------------------------------------------------------------ the caller's path

    def emit(self, capture: Capture) -> None:
        """Journal the capture and hand it to the writer; never raises, never blocks on the database."""
        try:
            try:
                record = payload(capture)  # framed as the journal copies it; the writer frames its own copy
            except Exception as error:
                record = None
                self._log_once("encode", "a capture could not be journalled (%s): it goes to the writer only", type(error).__name__)
            if self._forked:
                self._start_in_child()
            with self._lock:
                self._emitted += 1
                segment = None
                journal = self._journal
                if record is not None and journal is not None and not journal.closed:
                    try:
                        segment = journal.append_record_locked(record)
                    except OSError as error:
                        self._journal_errors += 1
                        self._log_once("append", "the journal refused a record (%s): it is kept in memory only", error)
                queue = self._queue
                if len(queue) < self.max_pending:
                    if segment is None:
                        self._unjournalled[0] += 1
                    # The payload is what the writer reads; the capture (the response's bytes and all) is
                    # kept only when there is none, so that the call's memory is freed with the call.
                    queue.append((capture if record is None else None, record, segment))
                    if len(queue) >= self.batch_size and not self._wake.is_set():
                        self._wake.set()  # (set() takes a lock and notifies: not again while it is set)
                elif segment is not None:
                    segment.dropped = True  # it waits in the journal alone, re-read later
                    self._dropped += 1
                else:
                    self._lost += 1
                    self._log_once("lost", "a record was lost: the journal refuses appends and the queue is full")
        except Exception as error:  # the recorder must never break a call
            self._log_once("emit", "emit failed: %s", error)

    # ------------------------------------------------------------ waiting and stopping

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every capture emitted so far (and the start-up replay) is committed; True if so."""
        with self._lock:
            target = [(s, s.appended) for s in self._journal.segments] if self._journal else []
            unjournalled = self._unjournalled[0]

        def done() -> bool:
            return (
                all(s.done or (not s.dropped and s.settled >= n) for s, n in target)
                and self._unjournalled[1] >= unjournalled
                and not self._replay_pending
            )

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            nudge = True
            while not done():
                if self._closed and not self._thread.is_alive():
                    return False
                # The writer is told at first, then every 50 ms without news, and whenever captures wait:
                # not at each of its notices, which would have it loop for nothing while a lane's
                # batch commits, or retry at once after each failure while the database is down.
                if nudge or self._queue:
                    self._flush_requested = True
                    self._wake.set()
                if nudge:
                    self._interrupt.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                nudge = not self._progress.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Drain what can be written within `timeout`; the rest stays in the journal for a replay."""
        if self._closed:
            return
        self._closed = True
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._lane_wake.set()
        self._interrupt.set()
        self._thread.join(max(0.0, timeout))
        for lane in self._lanes:
            lane.join(max(0.0, self._deadline - time.monotonic()))
        if self._thread.is_alive() or any(lane.is_alive() for lane in self._lanes):
            self._writer.abort()  # a batch stuck on the database: it stays in the journal
            self._thread.join(1.0)
            for lane in self._lanes:
                lane.join(1.0)
        journal = self._journal
        left = journal.close() if journal is not None else []
        if left:
            log.warning("%d journal segment(s) left for the next replay in %s", len(left), self.journal_dir)
        if not self._thread.is_alive() and not any(lane.is_alive() for lane in self._lanes):
            self._writer.close()
        _live_sinks.discard(self)
        try:
            atexit.unregister(self._close_at_exit)
        except Exception:
            pass
        _restore_sigterm_handler()

    def _close_at_exit(self) -> None:
        try:
            self.close(self.exit_timeout)
        except Exception as error:
            log.error("closing the ledger sink at exit failed: %s", error)

    def __enter__(self) -> "LedgerSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> SinkStats:
        with self._lock:
            journal = self._journal
            settled = (journal.settled_total if journal else 0) + self._unjournalled[1]
            totals = self._totals
            return SinkStats(
                emitted=self._emitted,
                committed=totals.inserted,
                duplicates=totals.duplicates,
                conflicts=totals.conflicts,
                pending=max(0, self._emitted - settled),
                kept_aside=totals.kept_aside,
                dropped_from_memory=self._dropped,
                replayed=self._replayed,
                journal_errors=self._journal_errors,
                lost=self._lost,
                connected=self._writer.connected,
            )

    def _reset_after_fork(self) -> None:
        """In a forked child: a journal segment and a writer of its own (the parent keeps its own)."""
        self._lock = threading.Lock()
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._lane_wake = threading.Event()
        self._taking = threading.Lock()
        self._interrupt = threading.Event()
        self._queue = deque()
        self._lanes = []
        if self._journal is not None:
            self._journal.forget_after_fork()
        self._writer.forget_after_fork()
        self._journal = None
        self._forked = not self._closed  # the child's own journal and writer start at its first emit

    def _start_in_child(self) -> None:
        with self._lock:
            if not self._forked:
                return
            self._forked = False
            self._emitted = self._dropped = 0
            self._unjournalled = [0, 0]
            self._replay_pending = False
            self._journal = self._open_journal()
            self._thread = self._start_thread()
            self._lanes = self._start_lanes()

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        failures = 0
        attempts = 0
        batch: list[tuple[Capture | None, bytes | None, Segment | None]] = []
        while True:
            if self._stopping and (time.monotonic() >= self._deadline or (not batch and not self._queue)):
                break
            if not batch and len(self._queue) < self.batch_size and not (self._flush_requested or self._stopping):
                self._wake.wait(self.max_delay)  # emit wakes it early when a full batch is waiting
                self._wake.clear()
            try:
                if not self._writer.connected:
                    self._writer.connect()
                    log.info("the ledger writer is connected to %s", self._writer.url_for_logs)
                if not batch:
                    batch = self._take_batch()
                    if len(self._queue) >= self.batch_size and not self._lane_wake.is_set():
                        self._lane_wake.set()
                if batch:
                    attempts += 1
                    self._write_from_memory(batch)
                    batch, attempts = [], 0
                if not self._stopping:
                    self._background_work()
                failures = 0
            except WriterProcessUnavailable as error:
                self._log_once("no-process", "%s: the ledger is written from a thread of this process", error)
                assert isinstance(self._writer, ProcessWriter)
                self._writer.close()
                self._writer = self._writer.local
            except Exception as error:
                if is_outage(error):
                    self._log_once("outage", "the ledger database is unavailable (%s): records wait in the journal", _reason(error))
                    self._writer.disconnect_after_outage()
                else:  # a bug, not an outage: the batch stays in the journal, re-read later
                    self._log_once(f"bug-{type(error).__name__}", "the ledger writer failed: %r", error)
                    attempts = self.max_attempts
                if batch and attempts >= self.max_attempts:
                    self._give_up_from_memory(batch)
                    batch, attempts = [], 0
                failures += 1
                self._sleep_backoff(failures)
            finally:
                with self._progress:
                    self._progress.notify_all()
        with self._progress:
            self._progress.notify_all()

    def _take_batch(self) -> list:
        queue = self._queue
        batch = []
        with self._taking:  # the lanes take batches too
            for _ in range(min(self.batch_size, len(queue))):
                batch.append(queue.popleft())
        return batch

    # ------------------------------------------------------------ the lanes

    def _start_lanes(self) -> list[threading.Thread]:
        """Threads that write further full batches while the writer thread's is being written.

        With writer processes, each lane's batch goes to a process of its own,
        so that the processes (and the database) work on several batches at
        once instead of waiting in turn for one. A lane only writes: a batch
        it cannot write goes back to the queue, where the writer thread, which
        keeps every rule of retries, backoff, outages and shutdown, finds it.
        """
        if not isinstance(self._writer, ProcessWriter):
            return []
        lanes = [threading.Thread(target=self._lane, name=f"credit-ledger-lane-{n}", daemon=True)
                 for n in range(1, self._writer.processes)]
        for lane in lanes:
            lane.start()
        return lanes

    def _lane(self) -> None:
        while not self._stopping:
            self._lane_wake.wait()
            self._lane_wake.clear()
            while not self._stopping and isinstance(self._writer, ProcessWriter) and len(self._queue) >= self.batch_size:
                batch = self._take_batch()
                try:
                    self._write_from_memory(batch)
                except Exception:
                    with self._taking:
                        self._queue.extendleft(reversed(batch))  # the writer thread's to retry (and report)
                    break
                finally:
                    with self._progress:
                        self._progress.notify_all()

    def _write_from_memory(self, batch: list) -> None:
        """Write a batch taken from the queue, then settle it."""
        result = self._writer.write([(capture, frame(record) if record is not None else None, None) for capture, record, _ in batch])
        self._settle(batch, result)

    def _count(self, result: BatchResult) -> None:
        with self._lock:
            self._totals += result

    def _settle(self, batch: list, result: BatchResult) -> None:
        counts: dict[Segment, int] = {}
        unjournalled = 0
        for _, _, segment in batch:
            if segment is None:
                unjournalled += 1
            else:
                counts[segment] = counts.get(segment, 0) + 1
        with self._lock:
            self._totals += result
            self._unjournalled[1] += unjournalled
        if self._journal is not None:
            self._journal.settle(counts)

    def _give_up_from_memory(self, batch) -> None:
        """After max_attempts: journalled captures wait in the journal alone; the others stay queued."""
        keep = []
        for item in batch:
            segment = item[2]
            if segment is None:
                keep.append(item)
            else:
                segment.dropped = True
        self._queue.extendleft(reversed(keep))
        with self._lock:
            self._dropped += len(batch) - len(keep)

    def _background_work(self) -> None:
        """Rotate the active segment when due and map its next pages; with less than a batch waiting,
        re-read and replay orphans."""
        journal = self._journal
        if journal is not None and not journal.closed:
            journal.rotate_if_due(idle_seconds=1.0)
            journal.prepare_ahead()  # the next appends' pages: mapped here, not on the caller's path
        if len(self._queue) >= self.batch_size:
            return
        if not self._queue:
            self._flush_requested = False
        if journal is not None and not journal.closed:
            for segment in journal.to_reread():
                self._reread(segment)
        if self._replay_pending:
            result = _replay_orphans(self._writer, self.journal_dir, self.batch_size, between=self._between_orphan_batches)
            with self._lock:
                self._totals += BatchResult(result.inserted, result.duplicates, result.conflicts, result.torn)
                self._replayed += result.entries
            self._replay_pending = False

    def _between_orphan_batches(self) -> None:
        # New captures go first when a full batch of them is waiting.
        if len(self._queue) >= self.batch_size and not self._stopping:
            batch = self._take_batch()
            try:
                self._write_from_memory(batch)
            except Exception:
                self._give_up_from_memory(batch)  # journalled: re-read later; the others queued again
                raise

    def _reread(self, segment: Segment) -> None:
        journal = self._journal
        assert journal is not None
        for batch in _batches(journal.reread(segment, with_captures=False), self.batch_size):  # the writer decodes the lines
            result = self._writer.write(batch)
            self._count(result)  # each batch as it commits: an outage in the next one does not undo the count
            if self._stopping:
                return
        journal.finish_reread(segment)

    def _sleep_backoff(self, failures: int) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** min(failures - 1, 20)))
        delay *= random.uniform(0.5, 1.0)  # jitter: many processes do not retry in step
        if self._stopping:
            delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        self._interrupt.wait(delay)
        self._interrupt.clear()


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


__all__ = ["LedgerSink", "LedgerWriter", "SinkStats", "ReplayResult", "BatchResult", "replay_journal", "is_outage"]
