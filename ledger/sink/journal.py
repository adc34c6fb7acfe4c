"""The local append-only journal: where a capture waits until the ledger has committed it.

A journal is a directory of segment files, `seg-<ns>-<pid>-<rand>.seg`, one
record per capture (`ledger.sink.wire`; `.jsonl` segments, written by
versions before cd462d6, are read and replayed the same way). Each process
appends to a segment of its own and holds an advisory lock (`fcntl.flock`)
on every segment it has not finished with, so a replayer can tell a live
segment (lock refused) from an orphan of a dead process or of an earlier run
(lock granted).

Durability: an append copies a whole record into the active segment, a file
mapped shared (`mmap`) whose space was reserved when it was made
(`posix_fallocate`, so a full disk refuses a segment up front instead of
failing a page later). Once copied, a record is in the kernel's page cache
and survives the process being killed (SIGKILL included); it survives a power
cut or a kernel crash only with `fsync=True` (an `msync` per append). The
copy is no system call, so the caller never gives the GIL away on its path.
The first byte of a record is copied last: a process killed in the middle of
a copy leaves a record that starts with a zero, which reading takes for the
end of what was written (and keeps aside as torn), never for a record. A
sealed segment is truncated to its records; a segment of a killed process
ends in the zero bytes of its unused space, which reading skips.

The first write to a page of a mapping is a page fault, and records are a few
KB, so most appends would take one: the writer thread maps the pages ahead of
the appends instead (`prepare_ahead`: `madvise(MADV_POPULATE_WRITE)`, Linux
5.14 and later, which changes no byte), by twice what was appended since it
last looked; where the kernel has no such advice, and with `fsync=True`, the
appends fault their own pages.

Leaving the journal: the writer counts, per segment, the entries the database
has committed. It rotates the active segment (when it grows past
`segment_bytes`, or when it is idle and all of it is committed), and a sealed
segment is deleted once every entry in it is committed. A segment that lost
entries from memory (the writer's queue was full, or a batch was given up) is
re-read whole from its file once sealed, and deleted after that. A crash at
any point leaves at worst entries that are already in the ledger: replay is
idempotent on the call id, so they count once.

Reading: a record cut short is a torn write (the process died in the middle
of it); it and any record that does not decode are returned as problem
entries, which the writer keeps aside in `rejected_records` and counts, never
dropping them silently.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from .segments import Entry, read_entries
from .wire import RECORD_HEAD, RECORD_LENGTH, RECORD_MARK


DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024

MADV_POPULATE_WRITE = 23  # <linux/mman.h>; Python 3.11's mmap module does not name it
PREPARE_MIN = 64 * 1024  # pages mapped ahead of the appends, at least (twice the recent appends when more)
PREPARE_STEP = 256 * 1024  # mapped per madvise, so that a rotation waits for one step at most
PAGE = mmap.PAGESIZE


class Segment:
    """A segment this process appends to or has not finished with (state guarded by the journal lock)."""

    __slots__ = ("path", "fd", "mm", "capacity", "appended", "settled", "size", "sealed", "dropped", "done", "last_append",
                 "address", "prepared", "size_seen")

    def __init__(self, path: Path, fd: int, mm: mmap.mmap | None = None, capacity: int = 0) -> None:
        self.path = path
        self.fd = fd
        self.mm = mm  # the mapping appends go to, while the segment is active
        self.capacity = capacity
        self.appended = 0  # entries written (counted before the write, so a segment is never deleted under one)
        self.settled = 0  # entries the database has committed (or kept aside) from memory
        self.size = 0
        self.sealed = False  # no more appends
        self.dropped = False  # some entries are only in the file: re-read it once sealed
        self.done = False  # deleted or handed back: nothing left to do here
        self.last_append = time.monotonic()
        self.address = _address(mm) if mm is not None else None  # where the mapping is, for madvise
        self.prepared = 0  # bytes from the start whose pages are mapped for writing
        self.size_seen = 0  # the size when prepare_ahead last looked

    @property
    def complete(self) -> bool:
        return self.done or (not self.dropped and self.settled >= self.appended)

    def __repr__(self) -> str:
        return f"Segment({self.path.name}, appended={self.appended}, settled={self.settled})"


def _libc_madvise():
    if not sys.platform.startswith("linux"):
        return None  # the advice's number is Linux's own
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _libc_madvise()  # a foreign call: the GIL is released while the kernel maps the pages


def _address(mm: mmap.mmap) -> int | None:
    if _madvise is None:
        return None
    try:
        view = ctypes.c_char.from_buffer(mm)
    except (TypeError, ValueError):
        return None
    try:
        return ctypes.addressof(view)
    finally:
        del view  # the export ends here: the mapping can be closed


def _new_segment_path(directory: Path) -> Path:
    return directory / f"seg-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.seg"


class Journal:
    """The appending side of one process: its active segment and the sealed ones not yet committed."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: bool = False,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        lock: threading.Lock | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.lock = lock or threading.Lock()
        self._mapping = threading.Lock()  # held while pages are mapped ahead; taken before a mapping is closed
        self._prepare = _madvise is not None and not fsync  # an msync per append: the fault is the least of its cost
        self.closed = False
        self.segments: list[Segment] = []
        self.active: Segment = self._open_segment()
        self.settled_total = 0  # entries settled in segments that were still open (for `pending`)

    def _open_segment(self, min_capacity: int = 0) -> Segment:
        path = _new_segment_path(self.directory)
        # Room for twice the rotation size: the writer seals a segment past segment_bytes,
        # an append only when the mapping is full (a writer that fell behind, a huge line).
        capacity = max(2 * self.segment_bytes, min_capacity, 1)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, capacity)  # the space is ours now: no SIGBUS on a full disk later
            mm = mmap.mmap(fd, capacity)
        except (OSError, ValueError):
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        segment = Segment(path, fd, mm, capacity)
        self.segments.append(segment)
        return segment

    def _unmap(self, segment: Segment, truncate: bool = True) -> None:
        """No more appends: drop the mapping and (by default) the unused space after the lines."""
        with self._mapping:  # not while prepare_ahead maps its pages
            mm, segment.mm = segment.mm, None
            segment.address = None
            if mm is not None:
                mm.close()
            if truncate:
                os.ftruncate(segment.fd, segment.size)

    # -- the caller's path (the caller holds self.lock)

    def append_locked(self, line: bytes) -> Segment:
        """Write one whole record to the active segment, its first byte last; OSError when the disk refuses it."""
        return self._append_locked(memoryview(line)[1:], line[0], framed=True)

    def append_record_locked(self, payload: bytes) -> Segment:
        """`append_locked(capture.frame(payload))`, framed as it is copied: no joined record is made."""
        return self._append_locked(payload, RECORD_MARK[0], framed=False)

    def _append_locked(self, rest: bytes | memoryview, first: int, framed: bool) -> Segment:
        # A record: `first`, then `rest` (a line's other bytes when it is framed, else a payload,
        # which gets its frame here).
        length = len(rest) + 1 if framed else RECORD_HEAD + len(rest) + 1
        segment = self.active
        size, end = segment.size, segment.size + length
        if end > segment.capacity:
            self._rotate_locked(min_capacity=length)  # a full segment: the record starts the next one
            segment = self.active
            size, end = 0, length
        segment.appended += 1
        try:
            mm = segment.mm  # memory copies into the page cache, no system call: all but the first byte,
            if framed:
                mm[size + 1 : end] = rest
            else:
                mm[size + 1 : size + RECORD_HEAD] = RECORD_LENGTH.pack(len(rest))
                mm[size + RECORD_HEAD : end - 1] = rest
                mm[end - 1] = 10  # b"\n"
            mm[size] = first  # then the first, so that a record which has it is whole
            if self.fsync:
                segment.mm.flush()
        except (OSError, ValueError):
            # Not journalled (the caller keeps the capture in memory). The record may be torn:
            # no later record may be glued to it, so start a new segment.
            segment.appended -= 1
            try:
                self._rotate_locked()
            except OSError:
                pass
            raise
        segment.size = end
        segment.last_append = time.monotonic()
        return segment

    # -- the writer's side

    def prepare_ahead(self) -> None:
        """Map the active segment's next pages for writing, so that appends do not fault (see the module's notes)."""
        if not self._prepare:
            return
        with self.lock:
            if self.closed:
                return
            segment = self.active
            size = segment.size
            appended, segment.size_seen = size - segment.size_seen, size
            start = max(segment.prepared, size - size % PAGE)  # madvise takes whole pages
            goal = min(segment.capacity, -(-(size + max(PREPARE_MIN, 2 * appended)) // PAGE) * PAGE)
        while start < goal:
            length = min(PREPARE_STEP, goal - start)
            with self._mapping:
                if segment.address is None:
                    return  # sealed meanwhile
                if _madvise(segment.address + start, length, MADV_POPULATE_WRITE) != 0:
                    self._prepare = False  # an older kernel: appends fault their own pages
                    return
            segment.prepared = start = start + length

    def settle(self, counts: dict[Segment, int]) -> None:
        """The database committed `n` entries of each segment (from memory)."""
        with self.lock:
            for segment, n in counts.items():
                if segment.done:
                    continue
                segment.settled += n
                self.settled_total += n
                self._remove_if_complete_locked(segment)

    @staticmethod
    def mark_dropped(segment: Segment) -> None:
        """Some entries of the segment are in its file only (not in the writer's memory): re-read it once sealed."""
        segment.dropped = True

    def rotate_if_due(self, idle_seconds: float) -> None:
        """Seal the active segment when it is big, or idle with everything committed, or lost entries."""
        with self.lock:
            if self.closed:
                return
            active = self.active
            if active.appended == 0:
                return
            idle = time.monotonic() - active.last_append >= idle_seconds
            if active.size >= self.segment_bytes or active.dropped or (idle and active.settled >= active.appended):
                self._rotate_locked()

    def _rotate_locked(self, min_capacity: int = 0) -> None:
        old = self.active
        self.active = self._open_segment(min_capacity)
        old.sealed = True
        self._unmap(old)
        self._remove_if_complete_locked(old)

    def _remove_if_complete_locked(self, segment: Segment) -> None:
        if segment.sealed and not segment.done and not segment.dropped and segment.settled >= segment.appended:
            self._remove_locked(segment)

    def _remove_locked(self, segment: Segment) -> None:
        try:
            os.unlink(segment.path)
        except FileNotFoundError:
            pass
        self._unmap(segment, truncate=False)
        os.close(segment.fd)
        segment.done = True
        self.segments.remove(segment)

    def to_reread(self) -> list[Segment]:
        with self.lock:
            return [s for s in self.segments if s.sealed and s.dropped and not s.done]

    def reread(self, segment: Segment, with_captures: bool = True) -> Iterator[Entry]:
        """Every entry of a sealed segment, from its file (its own descriptor: ours may be closed meanwhile)."""
        fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield from read_entries(fd, with_captures)
        finally:
            os.close(fd)

    def finish_reread(self, segment: Segment) -> None:
        """Every entry of the segment is committed: it leaves the journal."""
        with self.lock:
            if self.closed or segment.done:
                return
            self.settled_total += max(0, segment.appended - segment.settled)
            self._remove_locked(segment)

    def close(self) -> list[Path]:
        """Delete the complete segments, release the others (they become orphans); the paths left."""
        with self.lock:
            if self.closed:
                return []
            self.closed = True
            self.active.sealed = True
            left = []
            for segment in list(self.segments):
                if segment.appended == 0 or segment.complete:
                    self._remove_locked(segment)
                else:
                    self._unmap(segment)
                    os.close(segment.fd)  # releases the lock: the next replay takes it over
                    segment.done = True
                    left.append(segment.path)
            self.segments.clear()
            return left

    def forget_after_fork(self) -> None:
        """In a forked child: the parent owns these segments; drop our copies of the descriptors."""
        self._mapping = threading.Lock()  # the parent's writer thread may have held it: it is not here
        for segment in self.segments:
            try:
                self._unmap(segment, truncate=False)  # the parent's file: our copy of the mapping only
                os.close(segment.fd)  # the parent's descriptor keeps the lock
            except OSError:
                pass
            segment.done = True
        self.segments.clear()
        self.closed = True


__all__ = ["Journal", "Segment", "DEFAULT_SEGMENT_BYTES"]
