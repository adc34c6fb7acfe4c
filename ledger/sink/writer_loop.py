"""The sink's writer thread and its lanes: queued captures into the ledger, whatever the database does.

The writer thread takes batches from the intake and has them written (by
writer processes, or by a LedgerWriter in the thread itself), then settles
them so the journal lets them go. It keeps every rule: a batch that meets an
outage is retried with exponential backoff and jitter, a batch given up after
`max_attempts` waits in the journal alone (re-read once its segment is
sealed), the journal is rotated and its next pages mapped, orphan segments of
dead processes are replayed, and at close it drains until its deadline.
With more than one writer process, lane threads write further full batches
while the writer thread's is being written.
"""

from __future__ import annotations

import random
import threading
import time

from .. import redact
from ..errors import describe
from .intake import Intake, Queued
from .processes import ProcessWriter, WriterProcessUnavailable
from .writer import BatchResult, LedgerWriter, batches, is_outage, replay_orphans
from .wire import frame

log = redact.logger("ledger.sink.sink")
HELD_REPORT_SECONDS = 60.0  # records in no journal are reported at most this often while their count changes


class WriterLoop:
    """The writer thread (and lanes) of one sink."""

    def __init__(self, intake: Intake, writer: LedgerWriter | ProcessWriter, options, wake: threading.Event,
                 log_once, *, replay_pending: bool) -> None:
        self.intake = intake
        self.writer = writer
        self.options = options
        self.wake = wake  # set by emit when a full batch waits, and by flush and close
        self.log_once = log_once
        self.progress = threading.Condition()  # notified after every step: flush waits on it
        self.lane_wake = threading.Event()
        self.interrupt = threading.Event()  # cuts a backoff short on flush and close
        self.totals = BatchResult()
        self.replayed = 0
        self.outages = 0  # attempts (to connect or to write) that met the database down or locked
        self.replay_pending = replay_pending
        self.flush_requested = False
        self.stopping = False
        self.deadline = float("inf")
        self._held_reported = (0, float("-inf"))  # (count, when) of the last report of records in no journal
        self.thread = threading.Thread(target=self._run, name="credit-ledger-writer", daemon=True)
        self.lanes = self._make_lanes()

    def start(self) -> None:
        self.thread.start()
        for lane in self.lanes:
            lane.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() or any(lane.is_alive() for lane in self.lanes)

    def stop(self, timeout: float) -> None:
        """Drain until `timeout` from now; a batch still stuck on the database then stays in the journal."""
        self.deadline = time.monotonic() + timeout
        self.stopping = True
        self.wake.set()
        self.lane_wake.set()
        self.interrupt.set()
        self.thread.join(max(0.0, timeout))
        for lane in self.lanes:
            lane.join(max(0.0, self.deadline - time.monotonic()))
        if self.alive:
            self.writer.abort()
            self.thread.join(1.0)
            for lane in self.lanes:
                lane.join(1.0)
        if not self.alive:
            self.writer.close()

    def nudge(self) -> None:
        """Write what waits now (a flush), and cut a backoff short."""
        self.flush_requested = True
        self.wake.set()
        self.interrupt.set()

    def _count(self, result: BatchResult, replayed: int = 0) -> None:
        with self.intake.lock:
            self.totals += result
            self.replayed += replayed

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        intake, options = self.intake, self.options
        failures = attempts = 0
        batch: list[Queued] = []
        while True:
            if self.stopping and (time.monotonic() >= self.deadline or (not batch and not intake.queue)):
                break
            if not batch and len(intake.queue) < options.batch_size and not (self.flush_requested or self.stopping):
                self.wake.wait(options.max_delay)  # emit wakes it early when a full batch is waiting
                self.wake.clear()
            try:
                if not self.writer.connected:
                    self.writer.connect()
                    log.info("the ledger writer is connected to %s", self.writer.url_for_logs)
                if not batch:
                    batch = intake.take()
                    if len(intake.queue) >= options.batch_size and not self.lane_wake.is_set():
                        self.lane_wake.set()
                if batch:
                    attempts += 1
                    self._write_from_memory(batch)
                    batch, attempts = [], 0
                if not self.stopping:
                    self._background_work()
                failures = 0
            except WriterProcessUnavailable as error:
                self.log_once("no-process", "%s: the ledger is written from a thread of this process", error)
                assert isinstance(self.writer, ProcessWriter)
                self.writer.close()
                self.writer = self.writer.local
            except Exception as error:
                if is_outage(error):
                    self.outages += 1
                    self._report_outage(error)
                    self.writer.disconnect_after_outage()
                else:  # a bug, not an outage: the batch stays in the journal, re-read later
                    self.log_once(f"bug-{type(error).__name__}", "the ledger writer failed: %r", error)
                    attempts = options.max_attempts
                if batch and attempts >= options.max_attempts:
                    intake.give_up(batch)
                    batch, attempts = [], 0
                failures += 1
                self._sleep_backoff(failures)
            finally:
                with self.progress:
                    self.progress.notify_all()
        with self.progress:
            self.progress.notify_all()

    def _report_outage(self, error: BaseException) -> None:
        held = self.intake.held_in_memory_only
        now = time.monotonic()
        if held and (held != self._held_reported[0] and now - self._held_reported[1] >= HELD_REPORT_SECONDS):
            self._held_reported = (held, now)
            log.error(
                "the ledger database is unavailable (%s) and %d record(s) are in no journal: they are held in memory "
                "and retried while this process lives", describe(error), held,
            )
        elif not held:
            self.log_once("outage", "the ledger database is unavailable (%s): records wait in the journal", describe(error))

    def _write_from_memory(self, batch: list[Queued]) -> None:
        """Write a batch taken from the queue, then settle it."""
        result = self.writer.write([(capture, frame(record) if record is not None else None, None) for capture, record, _ in batch])
        self._count(result)  # before the journal lets them go: a flush that sees them settled sees them counted
        self.intake.settle(batch)

    # ------------------------------------------------------------ the lanes

    def _make_lanes(self) -> list[threading.Thread]:
        """Threads that write further full batches while the writer thread's is being written.

        With writer processes, each lane's batch goes to a process of its own,
        so that the processes (and the database) work on several batches at
        once instead of waiting in turn for one. A lane only writes: a batch
        it cannot write goes back to the queue, where the writer thread, which
        keeps every rule of retries, backoff, outages and shutdown, finds it.
        """
        if not isinstance(self.writer, ProcessWriter):
            return []
        return [threading.Thread(target=self._lane, name=f"credit-ledger-lane-{n}", daemon=True)
                for n in range(1, self.writer.processes)]

    def _lane(self) -> None:
        intake = self.intake
        while not self.stopping:
            self.lane_wake.wait()
            self.lane_wake.clear()
            while not self.stopping and isinstance(self.writer, ProcessWriter) and len(intake.queue) >= self.options.batch_size:
                batch = intake.take()
                try:
                    self._write_from_memory(batch)
                except Exception:
                    intake.put_back(batch)  # the writer thread's to retry (and report)
                    break
                finally:
                    with self.progress:
                        self.progress.notify_all()

    # ------------------------------------------------------------ between batches

    def _background_work(self) -> None:
        """Rotate the active segment when due and map its next pages; with less than a batch waiting,
        re-read dropped segments and replay orphans."""
        intake = self.intake
        intake.retry_journal()
        journal = intake.journal
        if journal is not None and not journal.closed:
            journal.rotate_if_due(idle_seconds=1.0)
            journal.prepare_ahead()  # the next appends' pages: mapped here, not on the caller's path
        if len(intake.queue) >= self.options.batch_size:
            return
        if not intake.queue:
            self.flush_requested = False
        if journal is not None and not journal.closed:
            for segment in journal.to_reread():
                self._reread(segment)
        if self.replay_pending:
            result = replay_orphans(self.writer, intake.journal_dir, self.options.batch_size, between=self._between_orphan_batches)
            self._count(BatchResult(result.inserted, result.duplicates, result.conflicts, result.torn), result.entries)
            self.replay_pending = False

    def _between_orphan_batches(self) -> None:
        # New captures go first when a full batch of them is waiting.
        intake = self.intake
        if len(intake.queue) >= self.options.batch_size and not self.stopping:
            batch = intake.take()
            try:
                self._write_from_memory(batch)
            except Exception:
                intake.give_up(batch)  # journalled: re-read later; the others queued again
                raise

    def _reread(self, segment) -> None:
        journal = self.intake.journal
        assert journal is not None
        for batch in batches(journal.reread(segment, with_captures=False), self.options.batch_size):  # the writer decodes
            self._count(self.writer.write(batch))  # each batch as it commits: an outage in the next one does not undo it
            if self.stopping:
                return
        journal.finish_reread(segment)

    def _sleep_backoff(self, failures: int) -> None:
        options = self.options
        delay = min(options.max_backoff, options.backoff * (2 ** min(failures - 1, 20)))
        delay *= random.uniform(0.5, 1.0)  # jitter: many processes do not retry in step
        if self.stopping:
            delay = min(delay, max(0.0, self.deadline - time.monotonic()))
        self.interrupt.wait(delay)
        self.interrupt.clear()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's writer processes and connections are the parent's."""
        self.writer.forget_after_fork()

