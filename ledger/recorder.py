"""The recording transports: every chat call made through httpx2 or httpx becomes one Capture.

A transport wrapper forwards the request, and wraps the response's raw byte
stream (below the client's decoding) in a small class that sees each chunk as
the caller pulls it and emits one Capture when the stream ends, is closed
early or fails. What is kept of the bytes is decided by `ledger.sse`; JSON,
Decimals and pricing happen later, in the sink's writer processes.
Any failure of the recorder itself is logged once and swallowed here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import count
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

import httpx2

from . import keys
from .capture import MAX_KEPT_BODY, Capture, build_record
from .sse import DecodeError, SSEScanner, decoder_for
from .usage import ABORTED, COMPLETED, FAILED

log = logging.getLogger("ledger.recorder")

CHAT_PATH = "/chat/completions"
MAX_KEPT_REQUEST = 16 * 1024  # a larger request body is summed up to the fields accounting reads
REQUEST_FIELDS = ("model", "stream", "reasoning_effort", "include_thoughts", "tools")
HEADER_PROJECT, HEADER_USER, HEADER_TAGS = b"x-ledger-project", b"x-ledger-user", b"x-ledger-tags"
_RETRY_HEADER = b"x-stainless-retry-count"
_REQUEST_HEADERS = frozenset((b"authorization", _RETRY_HEADER, b"content-encoding", HEADER_PROJECT, HEADER_USER, HEADER_TAGS))
_SECRET_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{4,}")

__all__ = ["Recorder", "RecordingTransport", "AsyncRecordingTransport", "Sink", "Attribution", "parse_tags", "build_record"]


class Sink(Protocol):
    def emit(self, capture: Capture) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self, timeout: float = 5.0) -> None: ...


# ---------------------------------------------------------------- call ids and attribution

_id_prefix = secrets.token_hex(6)
_id_counter = count(1)


def _new_prefix() -> None:  # a forked child must not repeat its parent's ids
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(6), count(1)


os.register_at_fork(after_in_child=_new_prefix)


def new_call_id() -> str:
    """Unique per attempt: a random per-process prefix and a counter (cheaper than uuid4)."""
    return f"{_id_prefix}{next(_id_counter):010x}"


class Attribution:
    __slots__ = ("project", "user", "tags")

    def __init__(self, project: str | None = None, user: str | None = None, tags: Mapping[str, str] | None = None):
        self.project, self.user, self.tags = project, user, dict(tags or {})


_attribution: ContextVar[Attribution | None] = ContextVar("credit_ledger_attribution", default=None)


def parse_tags(text: str) -> dict[str, str]:
    """X-Ledger-Tags: a JSON object (`{"feature": "summary"}`) or `k=v,k2=v2`."""
    text = text.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("X-Ledger-Tags is not a JSON object")
        return {str(k): str(v) for k, v in obj.items()}
    tags = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            tags[name.strip()] = value.strip()
    return tags


# ---------------------------------------------------------------- the shared core (no I/O of its own)


class _Core:
    """What every transport of one Recorder shares: the sink, the key secret, the settings."""

    def __init__(self, sink: Sink, secret: bytes, include_usage: bool) -> None:
        self.sink = sink
        self.secret = secret
        self.include_usage = include_usage
        self._keys: dict[str, tuple[str, str]] = {}
        self._logged: set[str] = set()

    def failed(self, where: str, error: BaseException) -> None:
        """The one place the recorder's own failures end: logged once per kind, never raised."""
        kind = f"{where}:{type(error).__name__}"
        if kind in self._logged:
            return
        self._logged.add(kind)
        message = _SECRET_LIKE.sub("sk-…", str(error))[:200]
        log.error("credit-ledger recorder failed in %s (%s: %s); the call goes on", where, type(error).__name__, message)

    def key_facts(self, authorization: bytes) -> tuple[str | None, str | None]:
        """(fingerprint, last four) of the key in an Authorization header; cached by the header's bytes."""
        found = self._keys.get(authorization)
        if found is None:
            key = keys.bearer_key(authorization.decode("latin-1"))
            if len(self._keys) >= 256:
                self._keys.clear()
            found = self._keys[authorization] = (keys.fingerprint(key, self.secret), keys.last4(key)) if key else (None, None)
        return found

    def begin(self, request: Any) -> tuple["_Call | None", Any]:
        """A call for this chat request (and the request to send); (None, request) if the recorder broke.

        Only what cannot wait is done before the request leaves: the clock, the
        attribution headers taken out, the context read, an include_usage
        rewrite. The rest (key fingerprint, call id, tags, the request body
        kept) waits for the call's end, off the time to the first byte.
        """
        try:
            started = time.time()
            headers = request.headers
            seen = {name: value for _, name, value in _header_list(headers) if name in _REQUEST_HEADERS}
            if HEADER_PROJECT in seen or HEADER_USER in seen or HEADER_TAGS in seen:
                for name in ("x-ledger-project", "x-ledger-user", "x-ledger-tags"):
                    if name in headers:
                        del headers[name]  # attribution is ours: it never leaves the process
            call = _Call(self, started, seen, _attribution.get(), request)
            if self.include_usage and b"content-encoding" not in seen:
                request = call.with_usage_asked(request)
            return call, request
        except Exception as error:
            self.failed("request", error)
            return None, request

    def attach(self, call: "_Call", response: Any, stream_class: type) -> None:
        """Watch the response's raw stream (in place: the caller gets this same response)."""
        try:
            call.response(response.status_code, response.headers)
            content = getattr(response, "_content", None)
            if content is not None:  # already read (a mock or an in-memory transport)
                call.feed(content)
                call.end(COMPLETED)
            else:
                response.stream = stream_class(response.stream, call)
        except Exception as error:
            self.failed("response", error)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _header_list(headers: Any) -> Any:
    """(raw name, lower-case name, value) of each header: httpx2's and httpx's own list, read as it is.

    `Headers.raw` builds a new list and the names still need lowering, at each call;
    the list both libraries keep has the lower-case names already. Anything else
    (another Headers type) goes the public way.
    """
    found = getattr(headers, "_list", None)
    if type(found) is list:
        return found
    return [(name, name.lower(), value) for name, value in headers.raw]


def _json_object(body: bytes) -> dict | None:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _with_body(request: Any, body: bytes) -> Any:
    headers = request.headers.copy()
    headers["Content-Length"] = str(len(body))
    return type(request)(request.method, request.url, headers=headers, content=body, extensions=request.extensions)


# ---------------------------------------------------------------- one call, fed bytes (sync and async alike)


class _Call:
    """The state of one recorded attempt; every method swallows its own failures."""

    # What most calls never change is a class default, not set on each call (one call, one
    # instance: the fewer stores before the request leaves, the better).
    request_body: bytes | None = None  # read at the end, unless an include_usage rewrite read it
    status: int | None = None
    stream: bool | None = None
    headers: Any = None
    headers_at: float | None = None
    first_byte_at: float | None = None
    _decoder: Any = None
    _accept: Any = None
    _scanner: SSEScanner | None = None
    _body: list[bytes] | None = None
    _size = 0
    _ended = False
    _pending: bytes | None = None
    _ready = False  # the response's headers read (at the first chunk accounted for, or the end)

    def __init__(self, core: _Core, started_at: float, seen: dict, context: Attribution | None, request: Any) -> None:
        self.core, self.started_at, self.seen, self.context, self.request = core, started_at, seen, context, request
        self.notes: list[str] = []

    # -- the request (its body, at the end or for an include_usage rewrite)

    def with_usage_asked(self, request: Any) -> Any:
        """The request to send: a streaming one that lacks stream_options.include_usage gets it."""
        try:
            body = request.content
        except Exception:
            return request  # a streamed request body: the end notes it
        self.request_body = body
        if b'"include_usage"' in body:
            return request
        parsed = _json_object(body)
        if parsed is None or parsed.get("stream", True) is not True:
            return request
        options = parsed.get("stream_options")
        if options is not None and not isinstance(options, dict):
            return request
        parsed["stream_options"] = {**(options or {}), "include_usage": True}
        self.request_body = body = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
        self.request = request = _with_body(request, body)
        return request

    def _kept_request_body(self) -> bytes:
        if b"content-encoding" in self.seen:
            self.notes.append("request_body_encoded")
            return b""
        body = self.request_body
        if body is None:
            try:
                body = self.request.content
            except Exception:  # a streamed request body: never read here, so the caller's stream is untouched
                self.notes.append("request_body_unread")
                return b""
        if len(body) <= MAX_KEPT_REQUEST:
            return body
        parsed = _json_object(body)
        if parsed is None:
            self.notes.append("request_not_json")
            return b""
        summary = {name: parsed[name] for name in REQUEST_FIELDS if name in parsed}
        return json.dumps(summary, separators=(",", ":")).encode()[:MAX_KEPT_REQUEST]

    # -- the response

    def response(self, status: int, headers: Any) -> None:
        self.headers_at = time.time()
        self.status = status
        self.headers = headers  # read when the first chunk is accounted for: after the caller has it

    def _prepare(self) -> None:
        self._ready = True
        content_type = coding = b""
        for _, name, value in _header_list(self.headers):
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                coding = value
        self.stream = content_type.lower().startswith(b"text/event-stream")
        if self.stream:
            self._scanner = SSEScanner()
            self._accept = self._scanner.feed
        else:
            self._body = []
            self._accept = self._keep_body
        try:
            self._decoder = decoder_for(coding.decode("latin-1")) if coding else None
        except DecodeError:
            self.notes.append("undecodable_body")
            self._accept = None

    def _keep_body(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > MAX_KEPT_BODY:
            self._body = None
            self._accept = None
            self.notes.append("body_too_large")
        else:
            self._body.append(piece)

    def arrived(self, chunk: bytes) -> None:
        """A chunk is about to go to the caller: it is accounted for when the caller asks for the next one."""
        if self.first_byte_at is None:
            self.first_byte_at = time.time()
        self._pending = chunk

    def account(self) -> None:
        chunk = self._pending
        if chunk is not None:
            self._pending = None
            self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.time()
        if not self._ready:
            self._prepare()
        accept = self._accept
        if accept is None:
            return
        try:
            if self._decoder is None:
                accept(chunk)
            else:
                self._decoder.decode(chunk, accept)
        except DecodeError:
            self._stop_accounting("undecodable_body")
        except Exception as error:
            self._stop_accounting("recorder_error")
            self.core.failed("stream", error)

    def _stop_accounting(self, note: str) -> None:
        self._accept = None
        self._body = None
        self.notes.append(note)

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Emit this call's one Capture (later calls do nothing)."""
        if self._ended:
            return
        self._ended = True
        try:
            ended = time.time()
            self.account()  # the last chunk the caller got, if it closed before asking for more
            if self.headers is not None and not self._ready:
                self._prepare()  # a response without a chunk
            if outcome == COMPLETED and self._decoder is not None and self._accept is not None:
                try:
                    self._decoder.finish(self._accept)
                except DecodeError:
                    self._stop_accounting("undecodable_body")
            scanner = self._scanner
            if scanner is not None:
                if scanner.skipped_lines:
                    self.notes.append("sse_line_too_long")
                if outcome == ABORTED and scanner.saw_done:
                    outcome = COMPLETED  # closed after [DONE]: nothing more was to come (the SDK does this)
            seen, context, core = self.seen, self.context, self.core
            authorization = seen.get(b"authorization")
            fingerprint, last4 = core.key_facts(authorization) if authorization else (None, None)
            attempt = seen.get(_RETRY_HEADER)
            try:
                attempt_no = int(attempt) if attempt is not None else 0
            except ValueError:
                attempt_no = 0
            project, user = _text(seen.get(HEADER_PROJECT)), _text(seen.get(HEADER_USER))
            tags = dict(context.tags) if context is not None else {}
            tags_header = seen.get(HEADER_TAGS)
            if tags_header is not None:
                try:
                    tags.update(parse_tags(_text(tags_header)))
                except ValueError:
                    self.notes.append("bad_ledger_tags")
            request_body = self._kept_request_body()
            body = self._body
            core.sink.emit(Capture(
                call_id=new_call_id(),
                started_at=self.started_at,
                ended_at=ended,
                first_byte_at=self.first_byte_at or self.headers_at,
                outcome=outcome,
                http_status=self.status,
                stream=self.stream,
                request_body=request_body,
                body=b"".join(body) if body is not None else None,
                payloads=scanner.payloads() if scanner is not None else (),
                saw_done=scanner.saw_done if scanner is not None else False,
                attempt=attempt_no,
                key_fingerprint=fingerprint,
                key_last4=last4,
                project=project if project is not None else (context.project if context else None),
                end_user=user if user is not None else (context.user if context else None),
                tags=tags,
                notes=tuple(dict.fromkeys(self.notes)),
            ))
        except Exception as failure:
            self.core.failed("emit", failure)


# ---------------------------------------------------------------- the thin I/O shells


class _SyncStreamShell:
    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner, self._call = inner, call

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        try:
            for chunk in self._inner:
                call.arrived(chunk)
                yield chunk  # the caller has it first: accounting never delays a byte
                call.account()
        except GeneratorExit:
            raise
        except BaseException as error:
            call.end(FAILED, error)
            raise
        call.end(COMPLETED)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._call.end(ABORTED)  # nothing if it already ended


class _AsyncStreamShell:
    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner, self._call = inner, call

    async def __aiter__(self):
        call = self._call
        try:
            async for chunk in self._inner:
                call.arrived(chunk)
                yield chunk
                call.account()
        except GeneratorExit:
            raise
        except BaseException as error:
            call.end(FAILED, error)
            raise
        call.end(COMPLETED)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._call.end(ABORTED)


def _is_chat(request: Any) -> bool:
    if request.method != "POST":
        return False
    url = request.url
    try:
        path = url._uri_reference.path  # as sent (httpx2 and httpx); `url.path` percent-decodes it first
    except AttributeError:
        path = url.path
    return path.endswith(CHAT_PATH)


class _SyncShell:
    _sync_stream: type

    def __init__(self, inner: Any, core: _Core) -> None:
        self._inner, self._core = inner, core

    def handle_request(self, request: Any) -> Any:
        if not _is_chat(request):
            return self._inner.handle_request(request)
        call, request = self._core.begin(request)
        if call is None:
            return self._inner.handle_request(request)
        try:
            response = self._inner.handle_request(request)
        except BaseException as error:
            call.end(FAILED, error)
            raise
        self._core.attach(call, response, self._sync_stream)
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

    def __init__(self, inner: Any, core: _Core) -> None:
        self._inner, self._core = inner, core

    async def handle_async_request(self, request: Any) -> Any:
        if not _is_chat(request):
            return await self._inner.handle_async_request(request)
        call, request = self._core.begin(request)
        if call is None:
            return await self._inner.handle_async_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as error:
            call.end(FAILED, error)
            raise
        self._core.attach(call, response, self._async_stream)
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
        sync_class = type("HttpxRecordingTransport", (_SyncShell, httpx.BaseTransport), {"_sync_stream": stream})
        async_class = type("HttpxAsyncRecordingTransport", (_AsyncShell, httpx.AsyncBaseTransport), {"_async_stream": astream})
        _httpx_classes.update(sync=sync_class, async_=async_class, dual=type("HttpxDualRecordingTransport", (sync_class, async_class), {}))
    return _httpx_classes["dual" if sync and async_ else "sync" if sync else "async_"]


def wrap_transport(inner: Any, core: _Core) -> Any:
    is_sync, is_async = isinstance(inner, httpx2.BaseTransport), isinstance(inner, httpx2.AsyncBaseTransport)
    if is_sync or is_async:
        return (_DualRecordingTransport if is_sync and is_async else RecordingTransport if is_sync else AsyncRecordingTransport)(inner, core)
    httpx = __import__("sys").modules.get("httpx")
    if httpx is not None:
        is_sync, is_async = isinstance(inner, httpx.BaseTransport), isinstance(inner, httpx.AsyncBaseTransport)
        if is_sync or is_async:
            return _httpx_transport_class(is_sync, is_async)(inner, core)
    raise TypeError(f"not an httpx2 or httpx transport: {type(inner).__name__}")


# ---------------------------------------------------------------- the facade


class Recorder:
    """Records every chat call of the clients and transports it hands out; a context manager."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Any = None,
        journal_dir: str | Path | None = None,
        include_usage: bool | None = None,
        rate_book: Any = None,
        sink: Sink | None = None,
    ) -> None:
        from .config import load_settings

        if settings is None:  # the config file and the environment, as the CLI reads them; the URL given wins
            settings = load_settings(database_url=database_url)
        elif database_url:
            settings = settings.with_database_url(database_url)
        self.settings = settings
        if sink is None:
            from .pricing import default_rate_book, load_rate_cards
            from .writer import LedgerSink

            if rate_book is None:
                rate_book = default_rate_book()
                if settings.rate_cards_path:
                    rate_book = rate_book.merged(load_rate_cards(settings.rate_cards_path))
            sink = LedgerSink(
                settings.database_url,
                journal_dir if journal_dir is not None else settings.journal_path,
                rate_book=rate_book,
                policy=settings.pricing,
                writer_processes=settings.writer_processes,
            )
        self.sink = sink
        use = settings.include_usage if include_usage is None else include_usage
        self._core = _Core(sink, keys.load_secret(settings.secret_path), bool(use))

    def transport(self, inner: Any) -> Any:
        """A recording wrapper of an httpx2 or httpx transport, sync or async (by the inner one's type)."""
        return wrap_transport(inner, self._core)

    def client(self, **kwargs: Any) -> httpx2.Client:
        """An httpx2 client with the openai SDK's defaults (timeouts, limits, redirects), recording."""
        from openai import DefaultHttpxClient

        return _recording_client(DefaultHttpxClient, self._core)(**kwargs)

    def async_client(self, **kwargs: Any) -> httpx2.AsyncClient:
        from openai import DefaultAsyncHttpxClient

        return _recording_client(DefaultAsyncHttpxClient, self._core)(**kwargs)

    @contextmanager
    def attribute(self, project: str | None = None, user: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[None]:
        """Attribute the calls made inside (this task and the tasks it starts); inner values win, tags merge."""
        outer = _attribution.get()
        merged = Attribution(
            project if project is not None else (outer.project if outer else None),
            user if user is not None else (outer.user if outer else None),
            {**(outer.tags if outer else {}), **(tags or {})},
        )
        token = _attribution.set(merged)
        try:
            yield
        finally:
            _attribution.reset(token)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until all that was recorded is in the ledger; True if it is."""
        return self.sink.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.sink.close(timeout)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recording_client(base: type, core: _Core) -> type:
    # The client builds its transports itself (default, proxies from the environment, mounts):
    # wrapping what it builds keeps every default the SDK and httpx2 would have applied.
    class RecordingClient(base):  # type: ignore[misc, valid-type]
        def _init_transport(self, *args: Any, **kwargs: Any) -> Any:
            return wrap_transport(super()._init_transport(*args, **kwargs), core)

        def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> Any:
            return wrap_transport(super()._init_proxy_transport(*args, **kwargs), core)

    return RecordingClient
