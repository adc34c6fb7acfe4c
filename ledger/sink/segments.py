"""A journal's segment files read back: their entries in order, torn records told apart, orphans claimed.

A segment no live process holds (its `flock` is granted) is an orphan of a
dead process or of an earlier run: `claim_orphans` hands each to one replayer
at a time, and `read_entries` reads it forward by its records' frames.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .capture import Capture
from .wire import RECORD_HEAD, RECORD_MARK, decode, framed_size

SEGMENT_SUFFIXES = (".seg", ".jsonl")  # .jsonl: JSON-line segments, written by versions before cd462d6 (wire.py)
READ_CHUNK = 1024 * 1024

TORN_LINE = "torn journal line"
UNREADABLE_LINE = "unreadable journal line"


@dataclass(frozen=True, slots=True)
class Entry:
    """One record of a segment (or a line of an earlier version): a capture, or the bytes kept aside with their problem."""

    line: bytes
    capture: Capture | None
    problem: str | None = None


def read_entries(fd: int, with_captures: bool = True) -> Iterator[Entry]:
    """The entries of a segment file, in order; torn and undecodable records as problems.

    With with_captures=False, whole records come without their capture (and a record
    that does not decode is not told here): what a writer that decodes the
    lines itself (`entry_fields`) wants, so that a re-read costs this process
    no decoding.

    Where a record should start: RECORD_MARK begins a framed record; a zero is the end
    of what was written (the rest, if not all zeros, is a record whose copy was
    cut short); anything else is a line of an earlier version, up to its newline.
    A frame that is broken or cut short ends the reading: nothing after it can be
    told apart, so the rest is kept aside whole.
    """
    entry = _entry if with_captures else _undecoded
    reader = _Forward(fd)
    while True:
        head = reader.peek(RECORD_HEAD)
        if not head:
            return
        if head[:1] == b"\0" or head[:1] == RECORD_MARK:
            size = framed_size(head)
            record = reader.peek(size) if size is not None else b""
            if size is None or len(record) != size or record[-1:] != b"\n":
                rest = reader.rest().rstrip(b"\0")
                if rest:
                    yield Entry(rest, None, TORN_LINE)
                return
            reader.skip(size)
            yield entry(record)
            continue
        line = reader.line()
        if not line.endswith(b"\n"):
            rest = line.rstrip(b"\0")  # the unused space of a segment whose process was killed
            if rest.strip():
                yield Entry(rest, None, TORN_LINE)
            return
        if line.strip():
            yield entry(line)


class _Forward:
    """A file read forward in READ_CHUNK pieces: only what the record at hand needs is held."""

    def __init__(self, fd: int) -> None:
        self.fd, self.offset, self.buf, self.pos = fd, 0, b"", 0

    def _fill(self, n: int) -> bool:
        """At least n bytes held (True), or all the file has (False); read by READ_CHUNK, whatever a frame claims."""
        while len(self.buf) - self.pos < n:
            chunk = os.pread(self.fd, READ_CHUNK, self.offset)
            if not chunk:
                return False
            self.offset += len(chunk)
            self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self.buf[self.pos : self.pos + n]

    def skip(self, n: int) -> None:
        self.pos += n

    def line(self) -> bytes:
        """Up to and with the next newline, or all that is left."""
        while True:
            at = self.buf.find(b"\n", self.pos)
            if at >= 0:
                line, self.pos = self.buf[self.pos : at + 1], at + 1
                return line
            if not self._fill(len(self.buf) - self.pos + 1):
                line, self.pos = self.buf[self.pos :], len(self.buf)
                return line

    def rest(self) -> bytes:
        while self._fill(len(self.buf) - self.pos + 1):  # to the end of the file
            pass
        rest, self.pos = self.buf[self.pos :], len(self.buf)
        return rest


def _entry(line: bytes) -> Entry:
    try:
        return Entry(line, decode(line))
    except UNDECODABLE:
        return Entry(line, None, UNREADABLE_LINE)


def _undecoded(line: bytes) -> Entry:
    return Entry(line, None)


UNDECODABLE = (ValueError, KeyError, TypeError, RecursionError)  # what a record that does not decode raises


class ClaimedSegment:
    """An orphan segment this process holds the lock of; `remove()` once its entries are committed."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def entries(self, with_captures: bool = True) -> Iterator[Entry]:
        return read_entries(self.fd, with_captures)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "ClaimedSegment":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def segment_paths(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("seg-*") if p.suffix in SEGMENT_SUFFIXES)


def claim_orphans(directory: str | Path) -> Iterator[ClaimedSegment]:
    """The segments no live process holds, oldest first, each locked while the caller works on it.

    A segment locked by a live process (this one included) is skipped. A
    segment deleted by another replayer between listing and locking is too.
    """
    for path in segment_paths(directory):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            continue
        claimed = ClaimedSegment(path, fd)
        try:
            yield claimed
        finally:
            claimed.release()


def live_segments(directory: str | Path) -> int:
    """How many segments are held by a live process (not to be replayed)."""
    count = 0
    for path in segment_paths(directory):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            count += 1
        finally:
            os.close(fd)
    return count


__all__ = [
    "Entry", "ClaimedSegment", "claim_orphans", "live_segments", "read_entries", "segment_paths",
    "TORN_LINE", "UNREADABLE_LINE", "UNDECODABLE", "SEGMENT_SUFFIXES",
]
