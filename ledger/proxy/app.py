"""The proxy's ASGI app: `/v1/*` forwarded to one upstream through the recording transport, answered byte for byte.

The request body goes upstream as the client sent it (never parsed or
re-serialised: this API streams when `stream` is absent, so a `"stream":
false` must survive), streamed when it arrives in pieces; the answer comes
back with its status, headers (less hop-by-hop ones) and bytes as the
upstream sent them, each chunk passed on as it arrives. The recording
transport (`ledger.record.transport`) makes each chat call one ledger row,
exactly as in-process: attribution headers taken out, hard budget limits
answered with 402. What the proxy answers itself is in the API's error shape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, NamedTuple

import httpx2

from .. import redact
from ..accounting.records import ABORTED
from ..accounting.sse import DecodeError
from .guard import HOP_BY_HOP, NOT_FORWARDED, ProxyKeys, key_in_target, refused_target
from .unkeyed import KeyMask

log = redact.logger("ledger.proxy")

_JSON = ((b"content-type", b"application/json"),)
_URLS_KEPT = 256  # upstream URLs by path and query: most calls are to one path
# A call's disconnect watcher starts this long after its request body is in: a task that waits on
# `receive()` costs a short call a third of what the proxy adds to it (BENCHMARKS.md), and a client that
# leaves a short call misses nothing a ledger row should say. A stream's abort is seen within this delay.
WATCH_AFTER = 0.05


def error_body(code: str, kind: str, message: str) -> bytes:
    """The API's error shape: {"error": {"code", "message", "type"}}."""
    return json.dumps({"error": {"code": code, "message": message, "type": kind}}).encode()


class BodyTooLarge(Exception):
    pass


class _Call:
    """One request's state shared with its disconnect watcher."""

    __slots__ = ("task", "receive", "gone", "done", "recording", "timer", "watcher")

    def __init__(self, task: asyncio.Task, receive: Any) -> None:
        self.task, self.receive = task, receive
        self.gone = self.done = False
        self.recording: Any = None  # the response's recording stream, once the answer has started
        self.timer: asyncio.TimerHandle | None = None
        self.watcher: asyncio.Task | None = None


class _RequestBody(httpx2.AsyncByteStream):
    """A request body that arrives in pieces: passed upstream as each piece comes, and kept for the call's record.

    Iterated a second time (`Request.aread()` once the upstream has it all), it
    gives the whole body back, so the recorder keeps it as it would in-process.
    """

    def __init__(self, first: bytes, limit: int, call: _Call, watch: Any) -> None:
        self._first, self._receive, self._limit, self._call, self._watch = first, call.receive, limit, call, watch
        self.kept: list[bytes] = []
        self.complete = False

    async def __aiter__(self):
        if self.complete:
            yield b"".join(self.kept)
            return
        kept, size, piece = self.kept, len(self._first), self._first
        kept.append(piece)
        yield piece
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._call.gone = True
                raise ConnectionResetError("the client went away while sending its request")
            piece = message.get("body", b"")
            size += len(piece)
            if size > self._limit:
                raise BodyTooLarge(size)
            if piece:
                kept.append(piece)
                yield piece
            if not message.get("more_body", False):
                break
        self.complete = True
        self._watch(self._call)


class ProxyApp:
    """A raw ASGI app (no framework on the path of a call: each layer costs every call)."""

    def __init__(self, upstream: str, transport: Any, *, keys: ProxyKeys | None = None, max_body_bytes: int = 32 << 20,
                 connect_timeout: float = 10.0, read_timeout: float = 600.0, allowed_hosts: frozenset[str] | None = None,
                 whole_bodies: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.transport = transport
        self.keys = keys if keys is not None and keys else None
        self.mask = KeyMask(self.keys.upstream_keys) if self.keys is not None else None  # the team holds no upstream key
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = allowed_hosts  # None: any Host
        # A model-scoped hard limit reads the model from the whole body: one that arrives in pieces is gathered
        # (up to max_body_bytes) before it goes upstream, then sent whole.
        self.whole_bodies = whole_bodies
        self._timeouts = {"connect": connect_timeout, "read": read_timeout, "write": read_timeout, "pool": connect_timeout}
        self._urls: dict[bytes, httpx2.URL] = {}
        self.in_flight = 0
        self.served = 0

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        raw_path = scope["raw_path"] or scope["path"].encode()
        if not raw_path.startswith(b"/v1/"):
            if raw_path == b"/healthz" and scope["method"] in ("GET", "HEAD"):
                body = json.dumps({"status": "ok", "in_flight": self.in_flight, "served": self.served}).encode()
                return await _answer(send, 200, body)
            refused = refused_target(raw_path)
            if refused:
                return await _error(send, 400, "invalid_request", "invalid_request_error", refused)
            return await _error(send, 404, "not_found", "invalid_request_error",
                                f"No such endpoint on this proxy: {scope['method']} {scope['path'][:200]} (it forwards /v1/…).")
        refused = refused_target(raw_path)
        if refused:
            return await _error(send, 400, "invalid_request", "invalid_request_error", refused)
        self.in_flight += 1
        try:
            await self._forward(scope, receive, send, raw_path)
        except asyncio.CancelledError:
            # Ours when the client went away; else uvicorn's, for a call still running after shutdown_seconds
            # (it says so in one line). Either way the call is recorded and the client's connection closed.
            asyncio.current_task().uncancel()
        finally:
            self.in_flight -= 1
            self.served += 1

    async def _lifespan(self, receive: Any, send: Any) -> None:
        """Nothing to start (the recorder lives with the worker); at the end, the upstream connections are closed."""
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await self.transport.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    async def _forward(self, scope: dict, receive: Any, send: Any, raw_path: bytes) -> None:
        head = _read_head(scope["headers"])
        headers, host = head.headers, head.host
        if head.hosts != 1 and (head.hosts or scope["http_version"] == "1.1"):
            return await _error(send, 400, "invalid_request", "invalid_request_error",
                                "An HTTP/1.1 request names exactly one Host (RFC 9112 3.2): " +
                                ("it has none." if not head.hosts else f"it has {head.hosts}."))
        if self.allowed_hosts is not None and host is not None and _host_name(host) not in self.allowed_hosts:
            return await _error(send, 400, "invalid_request", "invalid_request_error",
                                f"Host {redact.redact(host.decode('latin-1'))[:100]!r} is not served by this proxy "
                                "(it forwards only to its upstream; [proxy] allowed_hosts names the hosts it answers for).")
        if self.keys is not None:
            mapped = self.keys.upstream_for(head.authorization)
            if mapped is None:
                return await _error(send, 401, "invalid_api_key", "authentication_error",
                                    "Invalid API key for this proxy: use the proxy key your team was given (sk-…).")
            team_key = head.authorization.partition(b" ")[2].strip()
            if key_in_target(team_key, raw_path, scope["query_string"]):
                return await _error(send, 400, "invalid_request", "invalid_request_error",
                                    "A proxy key in the URL is refused: it would go upstream. Send it as Authorization only.")
            upstream_authorization, project = mapped
            # The team's key stays here wherever else the client put it (api-key, X-Api-Key, ...).
            headers = [(n, v) for n, v in headers if n not in (b"authorization", b"accept-encoding") and team_key not in v
                       and (project is None or n != b"x-ledger-project")]
            # An answer the proxy can read, to mask the upstream key in it: a compressed one would hide it.
            headers += ((b"authorization", upstream_authorization), (b"accept-encoding", b"identity"))
            if project is not None:
                headers.append((b"x-ledger-project", project))  # the key's project: taken out again by the recorder
        if scope["method"] != "POST" or not raw_path.endswith(b"/chat/completions"):
            # Attribution is the recorder's, which takes it out of chat calls only: no other call carries it upstream.
            headers = [(name, value) for name, value in headers if not name.startswith(b"x-ledger-")]
        length = head.length
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                return await _error(send, 400, "invalid_request", "invalid_request_error", "Invalid Content-Length.")
            if size > self.max_body_bytes:
                return await _too_large(send, self.max_body_bytes)

        call = _Call(asyncio.current_task(), receive)
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        streamed = None
        if message.get("more_body", False) and self.whole_bodies and raw_path.endswith(b"/chat/completions"):
            try:
                body = await _whole_body(body, self.max_body_bytes, call)
            except BodyTooLarge:
                return await _too_large(send, self.max_body_bytes)
            except ConnectionResetError:
                return
        elif message.get("more_body", False):
            if len(body) > self.max_body_bytes:
                return await _too_large(send, self.max_body_bytes)
            streamed = _RequestBody(body, self.max_body_bytes, call, _watch_soon)
            if length is None:
                headers.append((b"transfer-encoding", b"chunked"))
        elif len(body) > self.max_body_bytes:
            return await _too_large(send, self.max_body_bytes)
        else:
            _watch_soon(call)

        url = self._url(raw_path, scope["query_string"])
        request = httpx2.Request(scope["method"], url, headers=headers, content=body if streamed is None else streamed,
                                 extensions={"timeout": self._timeouts})
        try:
            await self._exchange(request, streamed, call, send)
        finally:
            call.done = True
            if call.timer is not None:
                call.timer.cancel()
            if call.watcher is not None:
                call.watcher.cancel()

    async def _exchange(self, request: httpx2.Request, streamed: _RequestBody | None, call: _Call, send: Any) -> None:
        try:
            response = await self.transport.handle_async_request(request)
        except BodyTooLarge:
            return await _too_large(send, self.max_body_bytes)
        except httpx2.TimeoutException as error:  # the recording transport has recorded the failed call
            return await _error(send, 504, "upstream_timeout", "proxy_error",
                                f"The upstream did not answer in time ({type(error).__name__}).")
        except (httpx2.TransportError, OSError) as error:
            if call.gone:
                return
            return await _error(send, 502, "upstream_unreachable", "proxy_error",
                                f"The upstream could not be reached or broke the exchange ({type(error).__name__}).")
        except Exception as error:  # neither the caller's nor the upstream's doing: said in the API's shape, logged in one line
            log.error("credit-ledger proxy: a call could not be forwarded: %s: %s", type(error).__name__, error)
            return await _error(send, 500, "internal_error", "proxy_error",
                                f"The proxy could not forward the call ({type(error).__name__}).")
        if streamed is not None and streamed.complete:
            await request.aread()  # the body as sent (kept while it passed), for the call's record
        stream = response.stream
        call.recording = stream
        headers, remaining = [], -1  # remaining: the bytes Content-Length still announces (-1: no length)
        coding = None
        for name, value in response.headers.raw:
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                continue
            if lowered == b"content-length" and value.isdigit():
                remaining = int(value)
            elif lowered == b"content-encoding" and self.mask is not None:
                coding = value  # asked for identity, coded all the same: undone here, so the key can be masked
                continue
            headers.append((name, value))
        try:
            masked = None
            if self.mask is not None:
                headers = self.mask.headers(headers)
                try:
                    masked = self.mask.body(coding)
                except DecodeError:
                    return await _error(send, 502, "upstream_unreadable", "proxy_error",
                                        "The upstream answered in a content coding this proxy cannot read.")
                if masked.decoder is not None:  # decoded here: the length told was the coded one's
                    headers, remaining = [(n, v) for n, v in headers if n.lower() != b"content-length"], -1
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            chunks = stream.__aiter__()
            last = b""
            try:
                async for chunk in chunks:
                    final = False
                    if remaining >= 0:
                        remaining -= len(chunk)
                        final = remaining <= 0
                    if masked is not None:
                        chunk = masked.feed(chunk, final)
                    if final:
                        # The last piece waits for the stream's end (at once: no read is left), so that
                        # the call is in the journal before the client has all of its answer; it goes
                        # with the end, one write less.
                        last = chunk
                        continue
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (httpx2.TransportError, OSError, DecodeError):
                return  # the upstream broke off mid-answer: the client's connection is cut as the upstream's was
            finally:
                await chunks.aclose()
            if masked is not None:
                last += masked.end()
            call.done = True
            await send({"type": "http.response.body", "body": last, "more_body": False})
        finally:
            await stream.aclose()  # records the call as aborted if it had not ended

    def _url(self, raw_path: bytes, query: bytes) -> httpx2.URL:
        key = raw_path + b"?" + query if query else raw_path
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            target = raw_path[3:].decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            url = self._urls[key] = httpx2.URL(self.upstream + target)
        return url


async def _whole_body(first: bytes, limit: int, call: _Call) -> bytes:
    """A request body that arrives in pieces, gathered whole (BodyTooLarge past `limit`)."""
    if len(first) > limit:
        raise BodyTooLarge(len(first))
    return b"".join([piece async for piece in _RequestBody(first, limit, call, _watch_soon)])


def _watch_soon(call: _Call) -> None:
    """From the request body's end on: a client that goes away ends its call (recorded as aborted, usage as seen)."""
    call.timer = asyncio.get_running_loop().call_later(WATCH_AFTER, _watch, call)


def _watch(call: _Call) -> None:
    if not call.done:
        call.watcher = asyncio.ensure_future(_watch_disconnect(call))


async def _watch_disconnect(call: _Call) -> None:
    receive = call.receive
    while (await receive())["type"] != "http.disconnect":
        pass
    if call.done:  # uvicorn says "disconnect" once the answer is complete too
        return
    call.gone = True
    end = getattr(call.recording, "end", None)  # the recording stream's (a refusal's bytes have none)
    if end is not None:
        end(ABORTED)  # before the cancel, which the stream would record as a failure
    call.task.cancel()


class _Head(NamedTuple):
    headers: list[tuple[bytes, bytes]]  # what may go upstream: less hop-by-hop ones and a client's routing claims
    host: bytes | None
    hosts: int  # how many Host headers came
    authorization: bytes | None
    length: bytes | None


def _read_head(raw: list[tuple[bytes, bytes]]) -> _Head:
    headers: list[tuple[bytes, bytes]] = []
    host = authorization = length = None
    hosts = 0
    connection = b""
    for name, value in raw:
        if name in NOT_FORWARDED or name.startswith(b"x-forwarded-"):
            if name == b"host":
                host, hosts = value, hosts + 1
            elif name == b"connection":
                connection = value
            continue
        if name == b"authorization":
            authorization = value
        elif name == b"content-length":
            length = value
        headers.append((name, value))
    if connection:  # the headers it names are hop-by-hop too
        named = {token.strip().lower() for token in connection.split(b",")}
        headers = [(name, value) for name, value in headers if name not in named]
    return _Head(headers, host, hosts, authorization, length)


def _host_name(host: bytes) -> str:
    """A Host header's name, lower case, without its port."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rpartition(":")[0] if text.count(":") == 1 else text


async def _answer(send: Any, status: int, body: bytes, headers: tuple = _JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(send: Any, status: int, code: str, kind: str, message: str) -> None:
    await _answer(send, status, error_body(code, kind, message))


async def _too_large(send: Any, limit: int) -> None:
    await _error(send, 413, "request_too_large", "invalid_request_error",
                 f"The request body is larger than this proxy takes ({limit} bytes; [proxy] max_body_bytes).")
