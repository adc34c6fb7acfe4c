"""The recording transports: every chat call made through httpx2 or httpx becomes one RawCapture.

A transport wrapper forwards the request, and wraps the response's raw byte
stream (below the client's decoding) in a small class that sees each chunk as
the caller pulls it and emits one RawCapture when the stream ends, is closed
early or fails. It holds a short response's bytes as they came; what is kept
of them (`ledger.accounting.sse.Accountant`), JSON, Decimals and pricing happen
later, in the sink's writer. Any failure of the recorder itself is logged
once and swallowed here: it never reaches the caller.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterator

import httpx2

from ..accounting.records import ABORTED, COMPLETED, FAILED
from .call import CallState, RecorderCore, Refusal, is_chat

_now = time.time

__all__ = ["RecordingTransport", "AsyncRecordingTransport", "wrap_transport"]


# ---------------------------------------------------------------- the thin I/O shells


class _SyncStreamShell(CallState):
    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                if self.first_byte_at is None:
                    self.first_byte_at = _now()
                self._pending = chunk
                yield chunk  # the caller has it first: accounting never delays a byte
                self._pending = None
                self.take(chunk)
        except GeneratorExit:
            self.end(ABORTED)  # dropped without a close (a close records it first)
            raise
        except BaseException:
            self.end(FAILED)
            raise
        self.end(COMPLETED)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self.end(ABORTED)  # nothing if it already ended


class _AsyncStreamShell(CallState):
    async def __aiter__(self):
        try:
            async for chunk in self._inner:
                if self.first_byte_at is None:
                    self.first_byte_at = _now()
                self._pending = chunk
                yield chunk
                self._pending = None
                self.take(chunk)
        except GeneratorExit:
            self.end(ABORTED)
            raise
        except BaseException:
            self.end(FAILED)
            raise
        self.end(COMPLETED)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self.end(ABORTED)


def _refused(response_class: type, refused: Refusal, request: Any) -> Any:
    """The answer to a call a hard budget limit refused: it never reaches the upstream."""
    return response_class(refused.status, headers=list(refused.headers), content=refused.body, request=request)


class _SyncShell:
    _sync_stream: type
    _response: type = httpx2.Response

    def __init__(self, inner: Any, core: RecorderCore) -> None:
        self._inner, self._core = inner, core

    def handle_request(self, request: Any) -> Any:
        if not is_chat(request):
            return self._inner.handle_request(request)
        asked = request
        begun, request = self._core.begin(request)
        if begun is None:
            if type(request) is Refusal:
                return _refused(self._response, request, asked)
            return self._inner.handle_request(request)
        try:
            response = self._inner.handle_request(request)
        except BaseException:
            self._core.lost(begun)
            raise
        self._core.watch(begun, response, self._sync_stream)
        return response

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> Any:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)


class _AsyncShell:
    _async_stream: type
    _response: type = httpx2.Response

    def __init__(self, inner: Any, core: RecorderCore) -> None:
        self._inner, self._core = inner, core

    async def handle_async_request(self, request: Any) -> Any:
        if not is_chat(request):
            return await self._inner.handle_async_request(request)
        asked = request
        begun, request = self._core.begin(request)
        if begun is None:
            if type(request) is Refusal:
                return _refused(self._response, request, asked)
            return await self._inner.handle_async_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._core.lost(begun)
            raise
        self._core.watch(begun, response, self._async_stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Any:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)


class _RecordingStream(_SyncStreamShell, httpx2.SyncByteStream):
    pass


class _AsyncRecordingStream(_AsyncStreamShell, httpx2.AsyncByteStream):
    pass


class RecordingTransport(_SyncShell, httpx2.BaseTransport):
    """Wraps an httpx2 transport (sync)."""

    _sync_stream = _RecordingStream


class AsyncRecordingTransport(_AsyncShell, httpx2.AsyncBaseTransport):
    """Wraps an httpx2 async transport."""

    _async_stream = _AsyncRecordingStream


class _DualRecordingTransport(RecordingTransport, AsyncRecordingTransport):
    """For an inner transport that is both (httpx2.MockTransport)."""


_httpx_classes: dict[str, type] = {}


def _httpx_transport_class(sync: bool, async_: bool) -> type:
    """The wrappers for httpx (the older library) are made on first use: httpx2 callers never import it."""
    import httpx

    if not _httpx_classes:
        stream = type("HttpxRecordingStream", (_SyncStreamShell, httpx.SyncByteStream), {})
        astream = type("HttpxAsyncRecordingStream", (_AsyncStreamShell, httpx.AsyncByteStream), {})
        sync_class = type("HttpxRecordingTransport", (_SyncShell, httpx.BaseTransport),
                          {"_sync_stream": stream, "_response": httpx.Response})
        async_class = type("HttpxAsyncRecordingTransport", (_AsyncShell, httpx.AsyncBaseTransport),
                           {"_async_stream": astream, "_response": httpx.Response})
        _httpx_classes.update(sync=sync_class, async_=async_class, dual=type("HttpxDualRecordingTransport", (sync_class, async_class), {}))
    return _httpx_classes["dual" if sync and async_ else "sync" if sync else "async_"]


def wrap_transport(inner: Any, core: RecorderCore) -> Any:
    is_sync, is_async = isinstance(inner, httpx2.BaseTransport), isinstance(inner, httpx2.AsyncBaseTransport)
    if is_sync or is_async:
        return (_DualRecordingTransport if is_sync and is_async else RecordingTransport if is_sync else AsyncRecordingTransport)(inner, core)
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        is_sync, is_async = isinstance(inner, httpx.BaseTransport), isinstance(inner, httpx.AsyncBaseTransport)
        if is_sync or is_async:
            return _httpx_transport_class(is_sync, is_async)(inner, core)
    raise TypeError(f"not an httpx2 or httpx transport: {type(inner).__name__}")
