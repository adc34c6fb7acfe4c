"""What accounting keeps of a response as its bytes pass: an SSE scanner and incremental decoders.

Both are fed the raw chunks the caller receives, in order, and keep constant
memory. The scanner does cheap byte searches only (no JSON): it keeps the few
`data:` payloads that `ledger.capture.build_record` parses later, off the
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
_FINISH = (b'"finish_reason":"', b'"finish_reason": "')
_USAGE = (b'"usage":{', b'"usage": {')
_ERROR = (b'"error":{', b'"error": {')
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
                    payload = _payload_at(buf, at, start, end)
                    if payload is not None:
                        self.first = payload
                        break
        at = _rfind_any(buf, _FINISH, start, end)
        if at >= 0:
            self.finish = _payload_at(buf, at, start, end) or self.finish
        at = _rfind_any(buf, _USAGE, start, end)
        if at >= 0:
            self.usage = _payload_at(buf, at, start, end) or self.usage
        at = _rfind_any(buf, _ERROR, start, end)
        if at >= 0:
            self.error = _payload_at(buf, at, start, end) or self.error
        stop = end
        while True:  # the last non-null credits_consumed
            at = buf.rfind(_CREDITS, start, stop)
            if at < 0:
                break
            after = at + len(_CREDITS)
            tail = buf[after : after + 8].lstrip(b" :")
            if not tail.startswith(b"null"):
                self.credits = _payload_at(buf, at, start, end) or self.credits
                break
            stop = at
        if not self.saw_done:  # [DONE] is the last line of a stream: look at the end of the region only
            at = buf.rfind(_DONE, max(start, end - _DONE_WINDOW), end)
            if at >= 0 and _payload_at(buf, at, start, end) == _DONE:
                self.saw_done = True


def _rfind_any(buf: bytes, markers: tuple[bytes, ...], start: int, end: int) -> int:
    return max(buf.rfind(marker, start, end) for marker in markers)


def _payload_at(buf: bytes, at: int, start: int, end: int) -> bytes | None:
    """The data payload of the line holding position `at`, or None if that line is not a data line."""
    line_start = max(buf.rfind(b"\n", start, at) + 1, start)
    line_end = buf.find(b"\n", at, end)
    if line_end < 0:
        line_end = end
    if not buf.startswith(_DATA, line_start, line_end):
        return None
    return buf[line_start + 5 : line_end].strip()


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


__all__ = ["SSEScanner", "Decoder", "DecodeError", "decoder_for", "MAX_LINE"]
