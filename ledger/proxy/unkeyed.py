"""The upstream key never goes back to a client: with proxy keys, every upstream key is masked in an answer.

Upstreams echo the key a call was made with (in a 401's message, a 500's
debug text, a header). The proxy knows its upstream keys, so it masks each
one, in any letter case, in the answer's headers and bytes, across the
chunks a body comes in, with a mask of the same length (a Content-Length
stays true, JSON stays JSON).
"""

from __future__ import annotations

from typing import Iterable

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

    def body(self) -> "MaskedBody":
        return MaskedBody(self)

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
    """One answer's bytes, masked as they pass: a key's start at a chunk's end waits for the next chunk."""

    __slots__ = ("_mask", "_held")

    def __init__(self, mask: KeyMask) -> None:
        self._mask, self._held = mask, b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._mask.whole(self._held + chunk if self._held else chunk)
        held = self._mask.held_back(data)
        self._held = data[len(data) - held:] if held else b""
        return data[: len(data) - held] if held else data

    def end(self) -> bytes:
        held, self._held = self._held, b""
        return held
