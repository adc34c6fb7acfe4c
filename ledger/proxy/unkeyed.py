"""The upstream key never goes back to a client: with proxy keys, every upstream key is masked in an answer.

Upstreams echo the key a call was made with (in a 401's message, a 500's
debug text, a header). The proxy knows its upstream keys, so it masks each
one, in any letter case, in the answer's headers and bytes, across the
chunks a body comes in, with a mask of the same length (a Content-Length
stays true, JSON stays JSON). An answer coded (gzip, ...) though the proxy
asked for identity is decoded first: a coding would hide the key.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..accounting.sse import decoder_for

_MASK = b"sk-redacted"


class KeyMask:
    """The upstream keys (fixed when the proxy starts) and how to mask them in whole texts."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = tuple(sorted({key.lower() for key in keys if key}, key=len, reverse=True))
        self._longest = max(map(len, self.keys), default=0)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def whole(self, data: bytes) -> bytes:
        """`data` with every key masked."""
        lower = data.lower()
        if not any(key in lower for key in self.keys):
            return data
        masked = bytearray(data)
        for key in self.keys:
            mask = (_MASK + b"*" * len(key))[: len(key)]
            start = lower.find(key)
            while start >= 0:
                masked[start : start + len(key)] = mask
                start = lower.find(key, start + len(key))
        return bytes(masked)

    def headers(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(self.whole(name), self.whole(value)) for name, value in raw]

    def body(self, coding: bytes | None = None) -> "MaskedBody":
        """One answer's masking, its `coding` (a Content-Encoding) undone; DecodeError for one that cannot be."""
        return MaskedBody(self, decoder_for(coding.decode("latin-1")) if coding else None)

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of `data` might be the start of a key that the next chunk completes."""
        tail = data[-(self._longest - 1):].lower() if self._longest > 1 else b""
        start = tail.find(b"s")
        while start >= 0:
            if any(key.startswith(tail[start:]) for key in self.keys):
                return len(tail) - start
            start = tail.find(b"s", start + 1)
        return 0


class MaskedBody:
    """One answer's bytes, decoded and masked as they pass: a key's start at a chunk's end waits for the next chunk."""

    __slots__ = ("_mask", "_held", "decoder")

    def __init__(self, mask: KeyMask, decoder: Any = None) -> None:
        self._mask, self._held, self.decoder = mask, b"", decoder  # decoder: None for an answer without a coding

    def feed(self, chunk: bytes, final: bool = False) -> bytes:
        """What of the bytes so far may go to the client (all of them when `final`); DecodeError for a bad coding."""
        if self.decoder is not None:
            chunk = self._decoded(chunk, final)
        data = self._mask.whole(self._held + chunk if self._held else chunk)
        held = 0 if final else self._mask.held_back(data)
        self._held = data[len(data) - held:] if held else b""
        return data[: len(data) - held] if held else data

    def end(self) -> bytes:
        """What is left once the upstream's bytes have all come."""
        return self.feed(b"", final=True)

    def _decoded(self, chunk: bytes, final: bool) -> bytes:
        pieces: list[bytes] = []
        self.decoder.decode(chunk, pieces.append)
        if final:
            self.decoder.finish(pieces.append)
        return b"".join(pieces)
