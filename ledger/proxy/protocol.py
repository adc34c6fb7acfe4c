"""A client's connection to the proxy: uvicorn's httptools protocol, bounded as a server on a network must be.

A connection that says nothing (between requests, or within a request's body)
is closed after `idle_timeout`; a request's head must arrive within
`header_timeout` and within `max_header_bytes`, `max_header_line_bytes` and
`max_headers`; a worker serves `max_client_connections` at once, making room
by closing the connection quiet the longest. What it refuses is answered in
the API's error shape, then closed.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from http import HTTPStatus

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config.proxy import ProxySettings
from .app import error_body

# Besides its client connections (each of which may hold a second one: its call's upstream connection), a
# worker holds the journal, the ledger's connections, the writer's pipes and the listening socket.
OPEN_FILES_RESERVED = 100
LINGER_SECONDS = 1.0  # after a refusal, what the client still sends is read and dropped, so that it reads the answer


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    idle_timeout: float
    max_connections: int
    max_header_bytes: int
    max_line_bytes: int
    max_headers: int


def connection_limits(options: ProxySettings) -> ConnectionLimits:
    """The `[proxy]` bounds of a client's side, the connection cap lowered to what the open-files limit allows."""
    return ConnectionLimits(options.header_timeout, options.idle_timeout,
                            client_connection_cap(options.max_client_connections, open_files_limit()),
                            options.max_header_bytes, options.max_header_line_bytes, options.max_headers)


def raise_open_files_limit() -> int:
    """The soft RLIMIT_NOFILE raised to the hard one (the common soft 1,024 is a few hundred clients); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an infinite hard limit above the kernel's nr_open: the soft one stays
            pass
    return open_files_limit()


def open_files_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft


def client_connection_cap(configured: int, open_files: int) -> int:
    """`max_client_connections`, or fewer where two descriptors a connection and the worker's own would not fit."""
    return max(1, min(configured, (open_files - OPEN_FILES_RESERVED) // 2))


class _Refused(Exception):
    """Raised in a parser callback once the request is answered: the parser stops there."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with timeouts on a silent connection and a slow head, bounds on the head, a cap.

    It replaces uvicorn's `data_received` and extends its parser callbacks: uvicorn's
    protocol, not a public API (uvicorn has no header timeout or header bounds).
    """

    limits: ConnectionLimits  # set by protocol_class

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_received = self._head_size = 0  # bytes fed to the parser for the head so far; its lines' sizes
        self._refused = self._over_cap = self._replaying = False
        self._quiet_since: float | None = None  # since when no request of this connection is being served
        self._between_messages = True  # the parser waits for a request's first byte
        # A chunked body's trailer section (after its last, empty chunk) is held by the parser until each line ends:
        # a chunk's size line read and no body since, through whole pieces of data, is trailer bytes, counted.
        self._chunk_waiting = self._body_in_feed = False
        self._trailer_received = 0

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._quiet_since = time.monotonic()  # not the loop's clock: uvloop's counts milliseconds, and ties pick at random
        # At the cap, the connection quiet the longest (idle, or its head still coming) makes room: a flood of
        # silent connections cannot lock clients out. With every one serving a request, this one gets 503.
        self._over_cap = len(self.connections) > self.limits.max_connections and not self._evict_quietest()
        # Silent from the start is idle too: uvicorn's own keep-alive timer starts after an answer only.
        self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered: what still comes is read and dropped until the client or the linger closes
        self._unset_keepalive_if_required()
        if data and self._head_timer is None and self._between_messages:
            self._start_head_timer()  # the first byte after a request starts a head, even a run of blank lines
        self._body_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            return self._read_on_as_http11(data[upgrade.args[0]:])  # which reads on from there, bounds included
        except httptools.HttpParserError:
            if not self._refused:
                self._refuse(HTTPStatus.BAD_REQUEST, "invalid_request", "Invalid HTTP request.")
            return
        if self._head_timer is not None:  # the head is not complete yet: what the parser holds of it is bounded
            self._head_received += len(data)
            if self._head_received > self.limits.max_header_bytes:
                self._refuse_large_head()
        elif not self._between_messages and not self._refused:
            # A body still to come: a client that stops sending it is silent too (its call is ended as the client's).
            self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout, self._body_silent)
            if self._chunk_waiting and not self._body_in_feed:
                self._trailer_received += len(data)
                if self._trailer_received > self.limits.max_header_bytes:
                    self._refuse_large_head()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self._between_messages = False
        if self._replaying:
            return
        super().on_message_begin()
        if self._head_timer is None:  # a request behind another in the same piece of data (pipelined)
            self._start_head_timer()

    def on_url(self, url: bytes) -> None:
        if self._replaying:
            return
        super().on_url(url)
        self._head_size += len(url)
        if len(self.url) > self.limits.max_line_bytes:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, "request_uri_too_long",
                         f"The request target is longer than this proxy takes ({self.limits.max_line_bytes} bytes; "
                         "[proxy] max_header_line_bytes).")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._replaying:
            return
        if len(name) + len(value) > self.limits.max_line_bytes:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request_header_fields_too_large",
                         f"A request header is longer than this proxy takes ({self.limits.max_line_bytes} bytes; "
                         "[proxy] max_header_line_bytes).")
            raise _Refused
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.limits.max_header_bytes:
            self._refuse_large_head()
            raise _Refused
        if len(self.headers) >= self.limits.max_headers:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request_header_fields_too_large",
                         f"The request has more headers than this proxy takes ({self.limits.max_headers}; "
                         "[proxy] max_headers).")
            raise _Refused
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        self._body_in_feed, self._chunk_waiting = True, False
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self._chunk_waiting = True

    def on_chunk_complete(self) -> None:
        self._chunk_waiting = False

    def on_message_complete(self) -> None:
        self._between_messages = True
        self._unset_keepalive_if_required()  # the body's silence timer
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        if self._replaying:
            return
        self._stop_head_timer()
        self._quiet_since = None
        if self._over_cap:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "proxy_busy",
                         f"This proxy worker serves {self.limits.max_connections} client connections at once "
                         "([proxy] max_client_connections); try again.", retry_after=True)
            raise _Refused
        target = self.url
        super().on_headers_complete()
        if self.cycle is not None:  # its close after an answer lingers while the request's body is still coming
            self.cycle.transport = _LingeringClose(self)
        # uvicorn hands the app only the path of an absolute-form target (`POST http://elsewhere/v1/...`), so
        # the app could not refuse it: the target as it came goes into raw_path, as uvicorn's h11 protocol does.
        if target[:1] != b"/":
            self.scope["raw_path"] = target.partition(b"?")[0]

    def on_response_complete(self) -> None:
        self._quiet_since = time.monotonic()
        super().on_response_complete()

    # ------------------------------------------------------------ the bounds

    def _evict_quietest(self) -> bool:
        quiet = [other for other in self.connections if getattr(other, "_quiet_since", None) is not None and other is not self]
        if not quiet:
            return False
        quietest = min(quiet, key=lambda other: other._quiet_since)
        quietest._quiet_since = None  # not chosen again before it is gone
        quietest._refused = True
        quietest.transport.close()
        return True

    def _start_head_timer(self) -> None:
        self._head_received = self._head_size = self._trailer_received = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _body_silent(self) -> None:
        if self.flow.read_paused:  # not the client's silence: the proxy stopped reading (the body waits upstream)
            self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout, self._body_silent)
        else:
            self.timeout_keep_alive_handler()

    def _refuse_large_head(self) -> None:
        self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request_header_fields_too_large",
                     f"The request's headers are larger than this proxy takes ({self.limits.max_header_bytes} bytes; "
                     "[proxy] max_header_bytes).")

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, "request_timeout",
                     f"The request's head did not arrive within {self.limits.header_timeout:g} s ([proxy] header_timeout).")

    def _refuse(self, status: HTTPStatus, code: str, message: str, retry_after: bool = False) -> None:
        """Answer in the API's error shape and close: the client reads the answer before the connection ends."""
        self._refused = True
        self._stop_head_timer()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer is under way on this connection: nothing can be written between
            return
        body = error_body(code, "invalid_request_error" if status < 500 else "proxy_error", message)
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n%s" % (
            status, status.phrase.encode(), len(body), b"retry-after: 1\r\n" if retry_after else b"", body))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def close_after_answer(self) -> None:
        """Close once an answer is out: at once when the request was read whole, else after the linger.

        A socket closed with unread data answers with a reset, which can take the
        answer with it: what the client still sends of an answered request (a 413's
        body, a 401's) is read and dropped until it is done or the linger ends.
        """
        if self._between_messages or self.transport.is_closing():
            self.transport.close()
            return
        self._refused = True
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _read_on_as_http11(self, rest: bytes) -> None:
        """A request that asks to switch protocols (`Upgrade: h2c`, what `curl --http2` sends) is served as HTTP/1.1.

        The server may ignore an Upgrade (RFC 9110 7.8), but llhttp stops at its head and
        skips its body: a new parser reads the body as the head framed it, then what follows.
        """
        framing = b"".join(name + b": " + value + b"\r\n" for name, value in self.headers
                           if name in (b"content-length", b"transfer-encoding"))
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if framing and self.cycle is not None:
            self.cycle.more_body = True
            self._replaying = True
            try:
                self.parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n")
            finally:
                self._replaying = False
        self.data_received(rest)


class _LingeringClose:
    """A request cycle's transport: the connection's own, but its close is the protocol's `close_after_answer`."""

    __slots__ = ("_protocol", "write", "is_closing", "get_extra_info")

    def __init__(self, protocol: GuardedProtocol) -> None:
        transport = protocol.transport
        self._protocol, self.write, self.is_closing = protocol, transport.write, transport.is_closing
        self.get_extra_info = transport.get_extra_info

    def close(self) -> None:
        self._protocol.close_after_answer()

    def __getattr__(self, name: str):
        return getattr(self._protocol.transport, name)


def protocol_class(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """uvicorn's `http` setting for the proxy: the guarded protocol with these limits."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
