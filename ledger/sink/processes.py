"""The ledger writer in processes of its own: the caller's process only appends.

Building, pricing and inserting a record is most of the recorder's CPU
(BENCHMARKS.md, "Writer throughput"). In a thread of the caller's process
that time is taken under the caller's GIL, from the application's own
threads. `ProcessWriter` keeps the interface of `LedgerWriter` (connect,
write, close) and does the work in child processes
(`ledger.sink.processes.main`, started with the parent's interpreter and
sys.path), on the machine's other cores.
The sink's writer thread only passes batches of journal lines down a pipe and
waits for the answer; every rule of the sink (a record leaves the journal
only once the database has committed it, bounded retries with backoff, the
drain at shutdown) stays where it was.

Each `write` takes a child of its own for its batch, one transaction: the
sink's writer thread and its lanes (one per further child, two children by
default) write batches side by side, so that while one child waits for the
database another builds its rows. A second child is started only when a
backlog of full batches calls for it.

A child lives as long as its pipe: it exits when the parent closes the pipe
or dies (end of file), and ignores SIGINT and SIGTERM, which belong to the
parent's shutdown. An outage a child meets comes back as a `DatabaseError`; a
child that died is one too, and the next write starts a new one. A batch a
child was writing when it died is still in the journal: written again, it
counts once. Where no child can be started (no interpreter to run, an
in-memory database) the sink writes from a thread instead.

Frames on the pipes: an 8-byte length, then a pickle. Pickle is safe here:
both ends are this package, on a private pipe.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .. import redact
from ..errors import DatabaseError, describe
from .writer import BatchEntry, LedgerWriter, is_outage

log = redact.logger(__name__)

_HEADER = struct.Struct("!Q")
# The child imports what its parent imports: the parent's sys.path, as it is when the child starts.
_BOOTSTRAP = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from ledger.sink.processes import main; sys.exit(main(sys.argv[2:]))"
)


# A writer process runs at this niceness: where the cores are busy, the application (and its
# server, on a small machine) gets them first; the ledger catches up when they are not.
NICENESS = 10


class WriterProcessError(RuntimeError):
    """A child failed on something that is not an outage (a bug): the batch stays in the journal."""


class WriterProcessUnavailable(RuntimeError):
    """No writer process can be started here: the sink writes from a thread instead."""


def _send(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("the pipe was closed")
        got += n
    return bytes(buffer)


def _recv(fd: int) -> bytes:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return _read_exactly(fd, size)


def can_use_process(database_url: str) -> bool:
    """A child cannot share an in-memory SQLite database, nor start without a Python interpreter to run."""
    if not sys.executable or not Path(sys.executable).name.lower().startswith("python"):
        return False  # an embedding host (uWSGI, a frozen app) runs something else as sys.executable
    url = database_url.lower()
    return not (url.startswith("sqlite") and (url.rstrip("/").endswith(":") or ":memory:" in url or "mode=memory" in url))


class _Child:
    """One writer process and its two pipes."""

    def __init__(self, init: tuple, spawned=lambda process: None) -> None:
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, json.dumps(sys.path), str(down_read), str(up_write)],
                pass_fds=(down_read, up_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                process_group=0,  # a terminal's Ctrl-C or a signal to the group is the parent's to handle
            )
        except OSError as error:
            for fd in (down_read, down_write, up_read, up_write):
                os.close(fd)
            raise WriterProcessUnavailable(f"cannot start a ledger writer process ({error})") from None
        spawned(self.process)  # (from here on it can be killed while it starts)
        os.close(down_read)
        os.close(up_write)
        self.to_child: int | None = down_write
        self.from_child: int | None = up_read
        self.connected = False
        try:
            self.call(*init)
        except (DatabaseError, WriterProcessError) as error:
            self.forget(reap=True)
            raise WriterProcessUnavailable(f"a ledger writer process did not start ({error})") from None

    @property
    def alive(self) -> bool:
        return self.to_child is not None

    def send(self, *request: Any) -> None:
        if self.to_child is None:
            raise DatabaseError("the ledger writer process is not running")
        try:
            _send(self.to_child, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            self._died()

    def receive(self) -> Any:
        if self.from_child is None:
            raise DatabaseError("the ledger writer process is not running")
        try:
            status, value, logs = pickle.loads(_recv(self.from_child))
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            self._died()
        for name, level, message in logs:
            redact.logger(name).log(level, "%s", message)
        if status == "ok":
            return value
        if status == "outage":
            raise DatabaseError(value)
        raise WriterProcessError(value)

    def call(self, *request: Any) -> Any:
        self.send(*request)
        return self.receive()

    def connect(self) -> None:
        if not self.connected:
            self.call("connect")
            self.connected = True

    def _died(self) -> NoReturn:
        code = self.process.poll()
        self.forget(reap=True)
        why = f"exit status {code}" if code is not None else "its pipe broke"
        raise DatabaseError(f"the ledger writer process stopped ({why})") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def forget(self, *, reap: bool) -> None:
        """Close our ends of the pipes (the child exits on end of file); with `reap`, wait for it."""
        for fd in (self.to_child, self.from_child):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.to_child = self.from_child = None
        self.connected = False
        if reap:
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ProcessWriter:
    """`LedgerWriter`'s interface; the work is done in child processes (at most `processes`).

    Each `write` takes a child of its own for its batch: as many threads as
    there are children write at once (the sink runs that many). `local` is the
    writer whose settings the children are made with, and the one the sink
    falls back to where no child can start.
    """

    def __init__(self, local: LedgerWriter, processes: int = 2) -> None:
        self.local = local
        self.processes = max(1, processes)
        self._children: list[_Child] = []
        self._idle: list[_Child] = []
        self._starting = 0
        self._spawning: set[subprocess.Popen] = set()  # started, not yet answering
        self._aborted = False
        self._changed = threading.Condition()

    @property
    def connected(self) -> bool:
        return any(c.connected for c in self._children)

    @property
    def url_for_logs(self) -> str:
        from sqlalchemy.engine import make_url

        return repr(make_url(self.local.database_url))  # the password masked

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children if c.alive]

    # ------------------------------------------------------------ the writer's interface

    def connect(self) -> None:
        """Have a child (started if there is none) open the ledger; raises when the database is down."""
        child = self._take()
        self._give_back(child)

    def write(self, entries: Sequence[BatchEntry]):
        """Write one batch in a child; its BatchResult. DatabaseError on an outage or a dead child."""
        # Journal lines go down the pipe as they are (no pickling of captures in the caller's process);
        # a capture that has no line (it could not be encoded) goes pickled.
        items = [(capture if line is None else None, line, problem) for capture, line, problem in entries]
        child = self._take()
        try:
            return child.call("write", items)
        finally:
            self._give_back(child)

    def disconnect_after_outage(self) -> None:
        # A child dropped its connections itself when it reported the outage; a dead one is forgotten.
        with self._changed:
            self._forget_dead()

    def abort(self) -> None:
        """Kill the children, and any still starting (a batch stuck on a locked or unreachable database, or a
        start slowed by a busy machine): their batches stay in the journal."""
        self._aborted = True
        for child in list(self._children):
            child.kill()
        for process in list(self._spawning):
            if process.poll() is None:
                process.kill()

    def close(self) -> None:
        """Close the pipes (each child exits on end of file) and wait for the children."""
        with self._changed:
            children, self._children, self._idle = self._children, [], []
            self._changed.notify_all()
        for child in children:
            child.forget(reap=False)
        for child in children:
            child.forget(reap=True)

    def forget_after_fork(self) -> None:
        """In a forked child of the caller: the writer processes are the parent's; let go of our pipe ends."""
        for child in self._children:
            child.forget(reap=False)  # closes this process's copies of the pipes; the parent's stay open
        self._children, self._idle, self._starting = [], [], 0
        self._spawning = set()
        self._changed = threading.Condition()

    # ------------------------------------------------------------ the children

    def _take(self) -> _Child:
        """An idle child, connected to the ledger: started when fewer than `processes` run, else waited for."""
        with self._changed:
            while True:
                self._forget_dead()
                if self._idle:
                    child = self._idle.pop()
                    break
                if len(self._children) + self._starting < self.processes:
                    child = None
                    self._starting += 1
                    break
                self._changed.wait()
        if child is None:  # started outside the lock: the other threads go on meanwhile
            local = self.local
            spawned: list[subprocess.Popen] = []
            try:
                child = _Child(("init", local.database_url, local.rate_book, local.policy, local.busy_timeout),
                               spawned=lambda process: (spawned.append(process), self._spawning.add(process)))
            except WriterProcessUnavailable as error:
                with self._changed:
                    self._starting -= 1
                    self._spawning.difference_update(spawned)
                    self._changed.notify()
                    if self._aborted:
                        raise DatabaseError("the ledger writer was stopped") from None
                    if not self._children:
                        raise  # none at all: the sink writes from a thread
                    self.processes = len(self._children) + self._starting
                log.warning("%s: the ledger is written by %d process(es)", error, self.processes)
                return self._take()  # the ones running are enough
            except BaseException:
                with self._changed:
                    self._starting -= 1
                    self._spawning.difference_update(spawned)
                    self._changed.notify()
                raise
            with self._changed:
                self._starting -= 1
                self._spawning.difference_update(spawned)
                self._children.append(child)
                self._changed.notify()
        try:
            child.connect()
        except BaseException:
            self._give_back(child)
            raise
        return child

    def _give_back(self, child: _Child) -> None:
        with self._changed:
            if child in self._children and child.alive:
                self._idle.append(child)
            self._changed.notify()

    def _forget_dead(self) -> None:
        self._children = [c for c in self._children if c.alive]
        self._idle = [c for c in self._idle if c.alive]


# ---------------------------------------------------------------- the child's side


class _Collect(logging.Handler):
    """Keeps the child's log records to send with its next answer (the parent logs them as its own)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.name, record.levelno, record.getMessage()))
        except Exception:
            pass

    def take(self) -> list[tuple[str, int, str]]:
        taken, self.records = self.records, []
        return taken


def main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's shutdown decides; the pipe's end ends us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.nice(NICENESS)  # background work: the application's own processes and threads come first
    except OSError:
        pass
    down, up = int(argv[0]), int(argv[1])
    collect = _Collect()
    package_log = logging.getLogger("ledger")
    package_log.addHandler(collect)
    package_log.setLevel(logging.INFO)
    package_log.propagate = False
    writer: LedgerWriter | None = None
    while True:
        try:
            request = pickle.loads(_recv(down))
        except (EOFError, OSError):
            break
        op = request[0]
        try:
            if op == "init":
                _, url, rate_book, policy, busy_timeout = request
                writer = LedgerWriter(url, rate_book, policy, busy_timeout=busy_timeout)
                reply: tuple = ("ok", None)
            elif writer is None:
                reply = ("error", "the writer process was not initialised")
            elif op == "connect":
                writer.connect()
                reply = ("ok", None)
            elif op == "write":
                reply = ("ok", writer.write(request[1]))
            else:
                reply = ("error", f"unknown request {op!r}")
        except Exception as error:
            if is_outage(error):
                if writer is not None:
                    writer.disconnect_after_outage()
                reply = ("outage", describe(error))
            else:
                reply = ("error", f"{type(error).__name__}: {error}")
        try:
            _send(up, pickle.dumps(reply + (collect.take(),), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # the parent is gone
            break
    if writer is not None:
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
