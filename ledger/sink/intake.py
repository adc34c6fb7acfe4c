"""The caller's side of the sink: each capture journalled, then queued for the writer.

`emit` is all a recorded call pays for: the capture's payload made (a
marshal), copied framed into the journal (a memory copy), and appended to a
bounded in-memory queue. It never raises and never waits for the database.
When the queue is full, a journalled capture waits in the journal alone (its
segment is re-read later); one that could not be journalled either is lost,
counted and logged at error level. The writer side takes batches from the
queue and settles them (`settle`) once the database has committed them, and
only then does the journal let them go.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

from .. import redact
from .capture import Capture, RawCapture
from .journal import Journal, Segment
from .wire import payload

log = redact.logger("ledger.sink.sink")

JOURNAL_RETRY_SECONDS = 5.0


class Queued(NamedTuple):
    """A capture queued for the writer."""

    capture: Capture | RawCapture | None  # the capture itself, only where it has no journal payload
    record: bytes | None  # its journal payload
    segment: Segment | None  # the journal segment that holds it


queued_of = partial(tuple.__new__, Queued)  # (capture, record, segment): a frame less than Queued's own __new__


class Intake:
    """The journal, the queue and the counts of what came in and what became of it (all under `lock`)."""

    def __init__(
        self,
        journal_dir: Path,
        *,
        fsync: bool,
        segment_bytes: int,
        batch_size: int,
        max_pending: int,
        wake: threading.Event,
        log_once: Callable[..., None],
    ) -> None:
        self.journal_dir = journal_dir
        self._fsync, self._segment_bytes = fsync, segment_bytes
        self.batch_size, self.max_pending = batch_size, max_pending
        self._wake = wake  # the writer's: set when a full batch waits
        self._log_once = log_once
        self.lock = threading.Lock()  # the journal's and the counters' lock (the caller's path)
        self.taking = threading.Lock()  # batches are taken by the writer thread and its lanes
        self.queue: deque[Queued] = deque()
        self.emitted = 0
        self.dropped = 0  # journalled, not kept in memory: re-read from the journal later
        self.lost = 0  # neither journalled nor kept in memory
        self.journal_errors = 0
        self.unjournalled = 0  # handed to the writer without a journal record
        self.unjournalled_settled = 0
        self._journal_retry_at = 0.0
        self.journal: Journal | None = self._open_journal()

    def _open_journal(self) -> Journal | None:
        try:
            return Journal(self.journal_dir, fsync=self._fsync, segment_bytes=self._segment_bytes, lock=self.lock)
        except OSError as error:
            self._journal_retry_at = time.monotonic() + JOURNAL_RETRY_SECONDS
            self._log_once(
                "journal-open",
                "cannot open the journal at %s (%s): records are held in memory only until it can be opened",
                self.journal_dir, error,
            )
            return None

    def retry_journal(self) -> None:
        """The writer's background work: a journal that could not be opened is tried again now and then."""
        if self.journal is None and time.monotonic() >= self._journal_retry_at:
            journal = self._open_journal()
            if journal is not None:
                with self.lock:
                    self.journal = journal
                log.warning("the journal at %s is open again: new records are journalled", self.journal_dir)

    # ------------------------------------------------------------ the caller's path

    def emit(self, capture: Capture | RawCapture) -> None:
        """Journal the capture and queue it for the writer; never raises, never blocks on the database."""
        try:
            try:
                record = payload(capture)  # framed as the journal copies it; the writer frames its own copy
            except Exception as error:
                record = None
                self._log_once("encode", "a capture could not be journalled (%s): it goes to the writer only", type(error).__name__)
            with self.lock:
                self.emitted += 1
                segment = None
                journal = self.journal
                if record is not None and journal is not None and not journal.closed:
                    try:
                        segment = journal.append_record_locked(record)
                    except OSError as error:
                        self.journal_errors += 1
                        self._log_once("append", "the journal refused a record (%s): it is kept in memory only", error)
                queue = self.queue
                if len(queue) < self.max_pending:
                    if segment is None:
                        self.unjournalled += 1
                    # The payload is what the writer reads; the capture (the response's bytes and all) is
                    # kept only when there is none, so that the call's memory is freed with the call.
                    queue.append(queued_of((capture if record is None else None, record, segment)))
                    if len(queue) >= self.batch_size and not self._wake.is_set():
                        self._wake.set()  # (set() takes a lock and notifies: not again while it is set)
                elif segment is not None:
                    Journal.mark_dropped(segment)  # it waits in the journal alone, re-read later
                    self.dropped += 1
                else:
                    self.lost += 1
                    self._log_once("lost", "records are being lost: the journal refuses them and the writer's queue is full")
        except Exception as error:  # the recorder must never break a call
            self._log_once("emit", "emit failed: %s", error)

    # ------------------------------------------------------------ the writer's side

    def take(self) -> list[Queued]:
        """Up to a batch of queued captures, oldest first."""
        queue = self.queue
        with self.taking:
            return [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]

    def put_back(self, batch: list[Queued]) -> None:
        """A batch not written: first in the queue again."""
        with self.taking:
            self.queue.extendleft(reversed(batch))

    def settle(self, batch: list[Queued]) -> None:
        """The database committed the batch: the journal lets its records go."""
        counts: dict[Segment, int] = {}
        unjournalled = 0
        for _, _, segment in batch:
            if segment is None:
                unjournalled += 1
            else:
                counts[segment] = counts.get(segment, 0) + 1
        with self.lock:
            self.unjournalled_settled += unjournalled
        if self.journal is not None:
            self.journal.settle(counts)

    def give_up(self, batch: list[Queued]) -> None:
        """A batch the writer gave up on for now: journalled captures wait in the journal alone; the others stay queued."""
        keep = []
        for item in batch:
            segment = item.segment
            if segment is None:
                keep.append(item)
            else:
                Journal.mark_dropped(segment)
        self.put_back(keep)
        with self.lock:
            self.dropped += len(batch) - len(keep)

    @property
    def held_in_memory_only(self) -> int:
        """Captures queued that no journal holds: lost if the process ends before they are written."""
        return self.unjournalled - self.unjournalled_settled

    # ------------------------------------------------------------ flushing

    def flush_target(self) -> tuple:
        """What has been emitted so far, to wait for with `flushed`."""
        with self.lock:
            journal = self.journal
            return [(s, s.appended) for s in journal.segments] if journal else [], self.unjournalled

    def flushed(self, target: tuple) -> bool:
        segments, unjournalled = target
        return all(s.done or (not s.dropped and s.settled >= n) for s, n in segments) and self.unjournalled_settled >= unjournalled

    def settled_total(self) -> int:
        journal = self.journal
        return (journal.settled_total if journal else 0) + self.unjournalled_settled

    # ------------------------------------------------------------ the end

    def close(self) -> list[Path]:
        """Close the journal: the segments left for the next replay."""
        journal = self.journal
        return journal.close() if journal is not None else []

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's journal and queue are the parent's."""
        self.lock = threading.Lock()
        self.taking = threading.Lock()
        self.queue = deque()
        if self.journal is not None:
            self.journal.forget_after_fork()
        self.journal = None

    def start_in_child(self, wake: threading.Event) -> None:
        """The child's own journal segment and counts, at its first emit."""
        self._wake = wake
        self.emitted = self.dropped = self.lost = self.journal_errors = 0
        self.unjournalled = self.unjournalled_settled = 0
        self.journal = self._open_journal()
