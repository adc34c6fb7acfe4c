"""The ledger sink: what a Recorder emits its captures into, journal first, then a background batch writer.

`emit` is the caller's path (`ledger.sink.intake`); the writer thread
(`ledger.sink.writer_loop`) has the batches built, priced and inserted, one
transaction each, by writer processes of the sink's own
(`ledger.sink.processes`; with `writer_processes=0`, or where no process can
be started, by a LedgerWriter in the thread), and only then lets the journal
forget them. When the database is down, calls go on: the queue fills up to
`max_pending`, then captures wait in the journal alone and are re-read from
it when the database is back. Each sink replays at start-up, in the
background, what dead processes left in its journal. Its life ends with its
process's (`ledger.sink.lifetime`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .. import redact
from ..accounting.pricing import PricingPolicy, RateBook
from ..config import normalise_url
from .capture import Capture, RawCapture
from .intake import Intake
from .lifetime import register, unregister
from .processes import ProcessWriter, can_use_process
from .writer import LedgerWriter
from .writer_loop import WriterLoop

log = redact.logger(__name__)


@dataclass(frozen=True, slots=True)
class SinkOptions:
    """How a sink batches, retries and ends (every field may be given to LedgerSink by name)."""

    batch_size: int = 1000
    max_delay: float = 0.05  # seconds a partial batch waits for more
    max_pending: int = 100_000  # captures held in memory; past it they wait in the journal alone
    fsync: bool = False  # an msync per append: survives a power cut, costs milliseconds a call
    segment_bytes: int = 4 * 1024 * 1024
    max_attempts: int = 5  # tries of a batch before it waits in the journal alone
    backoff: float = 0.05
    max_backoff: float = 2.0
    busy_timeout: float = 2.0  # SQLite: how long a writer waits for a lock before it backs off
    replay_on_start: bool = True
    handle_sigterm: bool = True
    exit_timeout: float = 5.0
    writer_processes: int = 2


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
    lost: int = 0  # neither journalled nor written: on emit (journal broken, queue full), or left in memory at close
    connected: bool = False
    outages: int = 0  # attempts of the writer that met the database down or locked (each retried)


class LedgerSink:
    """Captures in, ledger rows out: journal first, then a background batch writer."""

    def __init__(
        self,
        database_url: str,
        journal_dir: str | Path,
        *,
        rate_book: RateBook | None = None,
        policy: PricingPolicy = PricingPolicy(),
        options: SinkOptions | None = None,
        **option_values,
    ) -> None:
        self.options = options = replace(options or SinkOptions(), **option_values)
        self.database_url = normalise_url(database_url)  # a bad URL is a ConfigError now, not an outage later
        self.journal_dir = Path(journal_dir)
        self.exit_timeout = options.exit_timeout
        self._rate_book, self._policy = rate_book, policy
        self._logged: set[str] = set()
        self._closed = False
        self._forked = False
        self._unsaved = 0
        self._wake = threading.Event()
        self._intake = Intake(
            self.journal_dir, fsync=options.fsync, segment_bytes=options.segment_bytes, batch_size=max(1, options.batch_size),
            max_pending=options.max_pending, wake=self._wake, log_once=self._log_once,
        )
        self._loop = self._start_loop(replay_pending=options.replay_on_start)
        register(self, handle_sigterm=options.handle_sigterm)

    def _start_loop(self, *, replay_pending: bool) -> WriterLoop:
        options = self.options
        local = LedgerWriter(self.database_url, self._rate_book, self._policy, busy_timeout=options.busy_timeout)
        writer: LedgerWriter | ProcessWriter = local
        if options.writer_processes > 0 and can_use_process(self.database_url):
            writer = ProcessWriter(local, options.writer_processes)
        loop = WriterLoop(self._intake, writer, options, self._wake, self._log_once, replay_pending=replay_pending)
        loop.start()
        return loop

    def _log_once(self, key: str, message: str, *args) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.error(message, *args)

    @property
    def _writer(self) -> LedgerWriter | ProcessWriter:
        """The writer the loop uses now (a ProcessWriter, or the LedgerWriter it fell back to)."""
        return self._loop.writer

    # ------------------------------------------------------------ the caller's path

    def emit(self, capture: Capture | RawCapture) -> None:
        """Journal the capture and hand it to the writer; never raises, never blocks on the database."""
        if self._forked:
            self._start_in_child()
        self._intake.emit(capture)

    # ------------------------------------------------------------ waiting and stopping

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every capture emitted so far (and the start-up replay) is committed; True if so."""
        intake, loop = self._intake, self._loop
        target = intake.flush_target()
        deadline = None if timeout is None else time.monotonic() + timeout
        with loop.progress:
            nudge = True
            while not (intake.flushed(target) and not loop.replay_pending):
                if self._closed and not loop.thread.is_alive():
                    return False
                # The writer is told at first, then every 50 ms without news, and whenever captures wait:
                # not at each of its notices, which would have it loop for nothing while a lane's
                # batch commits, or retry at once after each failure while the database is down.
                if nudge:
                    loop.nudge()
                elif intake.queue:
                    loop.flush_requested = True
                    loop.wake.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                nudge = not loop.progress.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> SinkStats:
        """Drain what can be written within `timeout`; the rest stays in the journal for a replay.

        What is in no journal and could not be written is lost: it is counted
        in the returned stats (`lost`) and logged at error level.
        """
        if self._closed:
            return self.stats
        self._closed = True
        self._loop.stop(timeout)
        unsaved = self._intake.held_in_memory_only
        if unsaved:
            self._unsaved = unsaved
            log.error("%d record(s) could not be saved: the ledger database was unreachable and no journal held them", unsaved)
        left = self._intake.close()
        if left:
            log.warning("%d journal segment(s) left for the next replay in %s", len(left), self.journal_dir)
        unregister(self)
        return self.stats

    def __enter__(self) -> "LedgerSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> SinkStats:
        intake, loop = self._intake, self._loop
        with intake.lock:
            totals = loop.totals
            return SinkStats(
                emitted=intake.emitted,
                committed=totals.inserted,
                duplicates=totals.duplicates,
                conflicts=totals.conflicts,
                pending=max(0, intake.emitted - intake.settled_total()),
                kept_aside=totals.kept_aside,
                dropped_from_memory=intake.dropped,
                replayed=loop.replayed,
                journal_errors=intake.journal_errors,
                lost=intake.lost + self._unsaved,
                connected=loop.writer.connected,
                outages=loop.outages,
            )

    # ------------------------------------------------------------ fork

    def reset_after_fork(self) -> None:
        """In a forked child: a journal segment and a writer of its own (the parent keeps its own)."""
        self._wake = threading.Event()
        self._intake.forget_after_fork()
        self._loop.forget_after_fork()
        self._forked = not self._closed  # the child's own journal and writer start at its first emit
        self._start_lock = threading.Lock()

    def _start_in_child(self) -> None:
        with self._start_lock:
            if not self._forked:
                return
            self._intake.start_in_child(self._wake)
            self._loop = self._start_loop(replay_pending=False)
            self._forked = False
