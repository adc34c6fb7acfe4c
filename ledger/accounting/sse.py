"""What accounting keeps of a response as its bytes pass: an SSE scanner and incremental decoders.

Both are fed the raw chunks the caller receives, in order, and keep constant
memory. The scanner does cheap byte searches only (no JSON): it keeps the few
`data:` payloads that `ledger.sink.capture.build_record` parses later, off the
caller's path. No I/O here; the sync and async recorder shells share it.
"""

from __future__ import annotations

import zlib
from typing import Callable

MAX_LINE = 64 * 1024  # a longer SSE line is skipped, never accumulated
MAX_DECODED_PER_CHUNK = 1024 * 1024  # zlib and brotli output is taken in pieces of at most this

_DATA = b"data:"
_DONE = b"[DONE]"
# A payload is kept for what it carries; the markers are its non-null JSON fields,
# compact (as the API and the openai format send them) or with one space.
_FINISH = (b'"finish_reason":', b'"')  # the key, then what its value starts with
_USAGE = (b'"usage":', b"{")
_ERROR = (b'"error":', b"{")
_CREDITS = b'"credits_consumed"'
_DONE_WINDOW = 256
_FIRST = (b'"id"', b'"model"')


class SSEScanner:
    """Keeps, of an event stream fed in arbitrary pieces, only what accounting needs.

    The first data payload that carries an id or a model, the last one with a
    non-null finish reason, the last one with a usage object, the last one with
    `credits_consumed` (not null), the last error object, and whether `[DONE]`
    came. One `data:` line is one payload: the openai chunk format never
    spreads an event over several data lines.
    """

    __slots__ = ("_tail", "_skipping", "first", "finish", "usage", "credits", "error", "saw_done", "skipped_lines")

    def __init__(self) -> None:
        self._tail = b""  # the incomplete last line, at most MAX_LINE
        self._skipping = False  # inside an over-long line: drop until its end
        self.first: bytes | None = None
        self.finish: bytes | None = None
        self.usage: bytes | None = None
        self.credits: bytes | None = None
        self.error: bytes | None = None
        self.saw_done = False
        self.skipped_lines = 0

    def feed(self, chunk: bytes) -> None:
        last = chunk.rfind(b"\n")
        if last < 0:
            self._carry(chunk)
            return
        start = 0
        if self._tail or self._skipping:
            start = chunk.find(b"\n") + 1
            if self._skipping:
                self._skipping = False
            else:
                line = self._tail + chunk[:start]
                self._tail = b""
                self._scan(line, 0, len(line))
        if start <= last:
            self._scan(chunk, start, last + 1)
        if last + 1 < len(chunk):
            self._carry(chunk[last + 1 :])

    def _carry(self, piece: bytes) -> None:
        if self._skipping:
            return
        if len(self._tail) + len(piece) > MAX_LINE:
            self._tail = b""
            self._skipping = True
            self.skipped_lines += 1
        else:
            self._tail += piece

    def payloads(self) -> tuple[bytes, ...]:
        """The kept payloads, the first one first (the order `facts_from_events` reads them in)."""
        kept: list[bytes] = []
        for payload in (self.first, self.error, self.finish, self.credits, self.usage):
            if payload is not None and payload not in kept:
                kept.append(payload)
        return tuple(kept)

    # The region buf[start:end] holds whole lines only (it ends with a newline).
    def _scan(self, buf: bytes, start: int, end: int) -> None:
        if self.first is None:
            for marker in _FIRST:
                at = buf.find(marker, start, end)
                if at >= 0:
                    payload = _line_at(buf, at, start, end)[2]
                    if payload is not None:
                        self.first = payload
                        break
        # The finish reason, the usage and the credits mostly share the last line: it is cut out once.
        line = _NO_LINE
        at = _rfind_any(buf, _FINISH, start, end)
        if at >= 0:
            line = _line_at(buf, at, start, end)
            self.finish = line[2] or self.finish
        at = _rfind_any(buf, _USAGE, start, end)
        if at >= 0:
            if not line[0] <= at < line[1]:
                line = _line_at(buf, at, start, end)
            self.usage = line[2] or self.usage
        at = _rfind_any(buf, _ERROR, start, end)
        if at >= 0:
            if not line[0] <= at < line[1]:
                line = _line_at(buf, at, start, end)
            self.error = line[2] or self.error
        stop = end
        while True:  # the last non-null credits_consumed
            at = buf.rfind(_CREDITS, start, stop)
            if at < 0:
                break
            after = at + len(_CREDITS)
            tail = buf[after : after + 8].lstrip(b" :")
            if not tail.startswith(b"null"):
                if not line[0] <= at < line[1]:
                    line = _line_at(buf, at, start, end)
                self.credits = line[2] or self.credits
                break
            stop = at
        if not self.saw_done:  # [DONE] is the last line of a stream: look at the end of the region only
            at = buf.rfind(_DONE, max(start, end - _DONE_WINDOW), end)
            if at >= 0 and _line_at(buf, at, start, end)[2] == _DONE:
                self.saw_done = True


def _rfind_any(buf: bytes, marker: tuple[bytes, bytes], start: int, end: int) -> int:
    """Where the last `"key":` whose value starts with `opening` (after at most one space) is, or -1.

    One backward search for the key, where the two spellings would take two
    over the whole region (this runs for every stream the writer settles).
    """
    key, opening = marker
    size = len(key)
    stop = end
    while True:
        at = buf.rfind(key, start, stop)
        if at < 0:
            return -1
        value = at + size
        if buf.startswith(opening, value, end) or (buf.startswith(b" ", value, end) and buf.startswith(opening, value + 1, end)):
            return at
        stop = at + size - 1  # an earlier key, even one that overlaps this one's end


_NO_LINE = (-1, -1, None)


def _line_at(buf: bytes, at: int, start: int, end: int) -> tuple[int, int, bytes | None]:
    """(start, end, data payload) of the line holding position `at`; the payload None if it is not a data line."""
    line_start = max(buf.rfind(b"\n", start, at) + 1, start)
    line_end = buf.find(b"\n", at, end)
    if line_end < 0:
        line_end = end
    if not buf.startswith(_DATA, line_start, line_end):
        return line_start, line_end, None
    return line_start, line_end, buf[line_start + 5 : line_end].strip()


# ---------------------------------------------------------------- decoding (for accounting only)


class DecodeError(Exception):
    pass


class _Zlib:
    __slots__ = ("_decoder", "_deflate", "_started")

    def __init__(self, wbits: int, deflate: bool = False) -> None:
        self._decoder = zlib.decompressobj(wbits)
        self._deflate = deflate  # "deflate" is zlib-wrapped by the standard, raw by some servers
        self._started = False

    def decode(self, data: bytes, out: Callable[[bytes], None]) -> None:
        if self._deflate and not self._started:
            self._started = True
            try:
                probe = zlib.decompressobj()
                piece = probe.decompress(data, MAX_DECODED_PER_CHUNK)
                self._decoder = probe
            except zlib.error:
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                piece = self._decoder.decompress(data, MAX_DECODED_PER_CHUNK)
        else:
            piece = self._decoder.decompress(data, MAX_DECODED_PER_CHUNK)
        self._drain(piece, out)

    def _drain(self, piece: bytes, out: Callable[[bytes], None]) -> None:
        decoder = self._decoder
        while True:
            if piece:
                out(piece)
            if not decoder.unconsumed_tail:
                return
            piece = decoder.decompress(decoder.unconsumed_tail, MAX_DECODED_PER_CHUNK)

    def finish(self, out: Callable[[bytes], None]) -> None:
        piece = self._decoder.flush()
        if piece:
            out(piece)


class _Brotli:
    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        import brotli

        self._decoder = brotli.Decompressor()

    def decode(self, data: bytes, out: Callable[[bytes], None]) -> None:
        decoder = self._decoder
        piece = decoder.process(data, output_buffer_limit=MAX_DECODED_PER_CHUNK)
        while True:
            if piece:
                out(piece)
            if decoder.can_accept_more_data() or decoder.is_finished():
                return
            piece = decoder.process(b"", output_buffer_limit=MAX_DECODED_PER_CHUNK)

    def finish(self, out: Callable[[bytes], None]) -> None:
        pass


class _Zstd:
    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        import zstandard

        # Several frames may follow one another (as httpx2 reads them too).
        self._decoder = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decode(self, data: bytes, out: Callable[[bytes], None]) -> None:
        piece = self._decoder.decompress(data)
        if piece:
            out(piece)

    def finish(self, out: Callable[[bytes], None]) -> None:
        pass


class Decoder:
    """Content-Encoding undone in steps (several codings apply last-first); errors become DecodeError."""

    __slots__ = ("_steps",)

    def __init__(self, steps: list) -> None:
        self._steps = steps

    def decode(self, data: bytes, out: Callable[[bytes], None]) -> None:
        try:
            self._through(0, data, out)
        except DecodeError:
            raise
        except Exception as error:  # zlib.error, brotli.error, zstandard.ZstdError
            raise DecodeError(f"{type(error).__name__}: {error}") from None

    def finish(self, out: Callable[[bytes], None]) -> None:
        try:
            for index, step in enumerate(self._steps):
                step.finish(lambda piece, i=index: self._through(i + 1, piece, out))
        except Exception as error:
            raise DecodeError(f"{type(error).__name__}: {error}") from None

    def _through(self, index: int, data: bytes, out: Callable[[bytes], None]) -> None:
        if index == len(self._steps):
            out(data)
        else:
            self._steps[index].decode(data, lambda piece: self._through(index + 1, piece, out))


_CODINGS: dict[str, Callable[[], object]] = {
    "gzip": lambda: _Zlib(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: _Zlib(zlib.MAX_WBITS | 16),
    "deflate": lambda: _Zlib(zlib.MAX_WBITS, deflate=True),
    "br": _Brotli,
    "zstd": _Zstd,
}


def decoder_for(content_encoding: str | None) -> Decoder | None:
    """A decoder for the header's codings, None for identity; DecodeError for a coding we cannot undo."""
    if not content_encoding:
        return None
    names = [name.strip().lower() for name in content_encoding.split(",") if name.strip()]
    names = [name for name in names if name != "identity"]
    if not names:
        return None
    steps = []
    for name in reversed(names):  # the last coding applied is the first undone
        make = _CODINGS.get(name)
        if make is None:
            raise DecodeError(f"unknown content coding {name!r}")
        try:
            steps.append(make())
        except ImportError as error:
            raise DecodeError(f"content coding {name!r} needs {error.name}") from None
    return Decoder(steps)


# ---------------------------------------------------------------- one response, accounted for


class Accountant:
    """What accounting keeps of one response, fed its bytes as they came (encoded), finished once.

    The one implementation of it: the recorder feeds one chunk by chunk past its
    held bytes (a long response), the writer feeds one a short response's held
    bytes at once (`ledger.capture.settle`). It is made of the response's
    Content-Type and Content-Encoding headers, as bytes (None where absent).
    Notes are what it had to give up on.
    """

    __slots__ = ("stream", "scanner", "notes", "_accept", "_decoder", "_body", "_size", "_max_body")

    def __init__(self, content_type: bytes | None, coding: bytes | None, max_body: int) -> None:
        self.stream = content_type is not None and content_type.lower().startswith(b"text/event-stream")
        self.notes: list[str] = []
        self.scanner: SSEScanner | None = None
        self._body: list[bytes] | None = None
        self._size, self._max_body, self._decoder = 0, max_body, None
        if self.stream:
            self.scanner = SSEScanner()
            self._accept = self.scanner.feed
        else:
            self._body = []
            self._accept = self._keep_body
        if coding:
            try:
                self._decoder = decoder_for(coding.decode("latin-1"))
            except DecodeError:
                self.notes.append("undecodable_body")
                self._accept = None

    def _keep_body(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._max_body:
            self._body = None
            self._accept = None
            self.notes.append("body_too_large")
        else:
            self._body.append(piece)

    def feed(self, chunk: bytes) -> None:
        """Account for a chunk; a failure of its own (other than the body's) stops accounting, noted, and is raised."""
        accept = self._accept
        if accept is None:
            return
        try:
            if self._decoder is None:
                accept(chunk)
            else:
                self._decoder.decode(chunk, accept)
        except DecodeError:
            self.stop("undecodable_body")
        except Exception:
            self.stop("recorder_error")
            raise

    def stop(self, note: str) -> None:
        """Account for nothing more (the note says why); the body is not kept."""
        self._accept = None
        self._body = None
        self.notes.append(note)

    def finish(self, completed: bool) -> tuple:
        """(stream, body, payloads, saw_done, notes): a decoder is flushed only when the response came whole."""
        if completed and self._decoder is not None and self._accept is not None:
            try:
                self._decoder.finish(self._accept)
            except DecodeError:
                self.stop("undecodable_body")
        scanner, body = self.scanner, self._body
        self._accept = None  # finished; and a bound method of its own was a cycle, left to the collector
        if scanner is None:
            return self.stream, b"".join(body) if body is not None else None, (), False, tuple(self.notes)
        if scanner.skipped_lines:
            self.notes.append("sse_line_too_long")
        return self.stream, None, scanner.payloads(), scanner.saw_done, tuple(self.notes)


__all__ = ["SSEScanner", "Accountant", "Decoder", "DecodeError", "decoder_for", "MAX_LINE"]
