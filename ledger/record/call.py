"""One recorded call on the caller's path, with no I/O of its own: what every transport of a Recorder shares.

`RecorderCore` is what a Recorder's transports share (the sink, the key
secret, the settings, the one place the recorder's own failures end);
`CallState` is the state of one attempt, fed the chunks the caller gets, that
emits the call's one RawCapture at its end. The sync and async shells of
`ledger.record.transport` are thin loops around it.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import count
from operator import itemgetter
from decimal import Decimal
from typing import Any, Iterator, Mapping, NamedTuple, Protocol

from .. import redact
from .. import keys
from ..accounting.records import COMPLETED, FAILED, REFUSED
from ..redact import may_hold_key, redact_bytes
from ..sink.capture import (
    LEDGER_HEADERS, MAX_KEPT_BODY, Capture, RawCapture, accounted_without_secrets, held_without_secrets,
    raw_capture_of,
)
from ..accounting.sse import Accountant

log = redact.logger("ledger.record")
_now = time.time

CHAT_PATH = b"/chat/completions"
MAX_KEPT_REQUEST = 16 * 1024  # a larger request body is summed up to the fields accounting reads
# A response's first bytes are held as they came and accounted for in one step at its end: most
# responses are all there, and a chunk held is a list append. Past this, accounting goes chunk by chunk.
HELD_BYTES = 64 * 1024
REQUEST_FIELDS = ("model", "stream", "reasoning_effort", "include_thoughts", "tools")
_LEDGER_HEADERS = frozenset(LEDGER_HEADERS)
_RETRY_HEADER = b"x-stainless-retry-count"
_NAME = itemgetter(1)  # of a (raw name, lower-case name, value) header

__all__ = ["RecorderCore", "CallState", "Sink", "Attribution", "attribution", "new_call_id", "is_chat", "Refusal"]


class Sink(Protocol):
    def emit(self, capture: Capture | RawCapture) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self, timeout: float = 5.0) -> None: ...


# ---------------------------------------------------------------- call ids and attribution

_id_prefix = secrets.token_hex(6) + "-"
_id_counter = count(1)


def _new_prefix() -> None:  # a forked child must not repeat its parent's ids
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = secrets.token_hex(6) + "-", count(1)


os.register_at_fork(after_in_child=_new_prefix)


def id_prefix() -> str:
    """What every call id of this process starts with (a forked child has its own)."""
    return _id_prefix


def new_call_id() -> str:
    """Unique per attempt: a random per-process prefix and a decimal counter (cheaper than uuid4;
    an int in an f-string without a format spec takes CPython's fast path)."""
    return f"{_id_prefix}{next(_id_counter)}"


class Attribution:
    __slots__ = ("project", "user", "tags")

    def __init__(self, project: str | None = None, user: str | None = None, tags: Mapping[str, str] | None = None):
        # Redacted once here, not on every call's path: the values are journalled with each call.
        self.project = redact.redact(project) if isinstance(project, str) else project
        self.user = redact.redact(user) if isinstance(user, str) else user
        self.tags = {redact.redact(str(k)): redact.redact(str(v)) for k, v in (tags or {}).items()}


_attribution: ContextVar[Attribution | None] = ContextVar("credit_ledger_attribution", default=None)


@contextmanager
def attribution(project: str | None = None, user: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[None]:
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


class Refusal(NamedTuple):
    """What the caller of a call a hard budget limit refused gets instead of the upstream's answer:
    HTTP 402 in the API's error shape (`ledger.record.limits`)."""

    budget: str
    spent: Decimal
    limit: Decimal
    body: bytes

    status = 402
    headers = ((b"content-type", b"application/json"), (b"x-should-retry", b"false"))


# ---------------------------------------------------------------- the shared core


class RecorderCore:
    """What every transport of one Recorder shares: the sink, the key secret, the settings."""

    def __init__(self, sink: Sink, secret: bytes, include_usage: bool, limits: Any = None) -> None:
        self.sink = sink
        self.secret = secret
        self.include_usage = include_usage
        self.limits = limits  # the hard budget limits (ledger.record.limits.HardLimits), None when no budget is enforced
        self._keys: dict[bytes, tuple[str | None, str | None]] = {}
        self._logged: set[str] = set()

    def failed(self, where: str, error: BaseException) -> None:
        """The one place the recorder's own failures end: logged once per kind, never raised."""
        kind = f"{where}:{type(error).__name__}"
        if kind in self._logged:
            return
        self._logged.add(kind)
        message = redact.redact(str(error))[:200]
        log.error("credit-ledger recorder failed in %s (%s: %s); the call goes on", where, type(error).__name__, message)

    def key_facts(self, authorization: bytes) -> tuple[str | None, str | None, bytes | None]:
        """(fingerprint, last four, the key itself) of the key in an Authorization header; cached by the header's bytes.

        A key seen here is a secret of the process from now on: redacted by value
        from every text (ledger.redact), whatever its shape."""
        found = self._keys.get(authorization)
        if found is None:
            key = keys.bearer_key(authorization.decode("latin-1"))
            if len(self._keys) >= 256:
                self._keys.clear()
            if key:
                redact.remember(key, learned=True)
                found = (keys.fingerprint(key, self.secret), keys.last4(key), key.encode("latin-1"))
            else:
                found = _NO_KEY
            self._keys[authorization] = found
        return found

    def begin(self, request: Any) -> tuple[tuple | None, Any]:
        """(what the call's record starts from, the request to send); (None, request) if the recorder broke.

        Only what cannot wait is done before the request leaves: the clock, the
        attribution headers taken out, the context read, the hard budget
        limits checked, an include_usage rewrite. The rest (key fingerprint,
        call id, tags, the request body kept) waits for the call's end, off the
        time to the first byte.

        (None, a `ledger.record.limits.Refusal`): a hard budget limit refused
        the call. It must not be sent: the transport answers the caller with
        the refusal's status, headers and body (HTTP 402 budget_exceeded); its
        record is emitted already.
        """
        started, attributed, context = _now(), None, None
        try:
            headers = request.headers
            listed = _header_list(headers)
            if not _LEDGER_HEADERS.isdisjoint(map(_NAME, listed)):  # (a loop in C: most calls have none)
                attributed = {name: value for _, name, value in listed if name in _LEDGER_HEADERS}
                for name in ("x-ledger-project", "x-ledger-user", "x-ledger-tags"):
                    if name in headers:
                        del headers[name]  # attribution is ours: it never leaves the process
            context = _attribution.get()
            limits = self.limits
            if limits is not None:
                refused = limits.check(self, started, context, attributed, request)
                if refused is not None:
                    self.refuse((started, attributed, context, request, None), refused)
                    return None, refused
            body = None
            if self.include_usage and "content-encoding" not in headers:
                request, body = _with_usage_asked(request)
            return (started, attributed, context, request, body), request
        except Exception as error:
            # The call goes on, and is recorded all the same: what the recorder could not do is its own failure.
            self.failed("request", error)
            return (started, attributed, context, request, None), request

    def watch(self, begun: tuple, response: Any, stream_class: type) -> None:
        """Watch the response's raw stream (in place: the caller gets this same response)."""
        try:
            if response.is_stream_consumed:  # read already (a mock or an in-memory transport)
                call = CallState(self, begun, response)
                call.first_byte_at = call.headers_at
                call.take(response.content)
                call.end(COMPLETED)
            else:
                response.stream = stream_class(self, begun, response)
        except Exception as error:
            self.failed("response", error)

    def lost(self, begun: tuple) -> None:
        """The request got no response (a network failure, a timeout): its record all the same."""
        CallState(self, begun, None).end(FAILED)

    def refuse(self, begun: tuple, refused: Any) -> None:
        """The record of a call a hard limit refused: never sent, answered by the recorder, charged nothing."""
        CallState(self, begun, None).end(REFUSED, refused)


_NO_KEY: tuple[None, None, None] = (None, None, None)


def _header_list(headers: Any) -> Any:
    """(raw name, lower-case name, value) of each header: httpx2's and httpx's own list, read as it is.

    A private attribute (`Headers._list`), kept for a measured reason: the
    public `Headers.raw` builds a new list at each read and its names still
    need lowering, and `multi_items()` decodes every name and value; a call
    reads its headers three times (BENCHMARKS.md, "The layout (issue 15)").
    The list both libraries keep has the lower-case names already. Another
    Headers type goes the public way.
    """
    found = getattr(headers, "_list", None)
    if type(found) is list:
        return found
    return [(name, name.lower(), value) for name, value in headers.raw]


def _accounting_headers(response: Any) -> tuple[bytes | None, bytes | None]:
    """The response's Content-Type and Content-Encoding (bytes, None where absent): all accounting reads of its headers.

    A loop over the list, not a dict of every header (which costs more a call; BENCHMARKS.md).
    """
    content_type = coding = None
    for _, name, value in _header_list(response.headers):  # the last of a repeated header, as a dict would keep
        if name == b"content-type":
            content_type = value
        elif name == b"content-encoding":
            coding = value
    return content_type, coding


def request_headers(request: Any) -> tuple[bytes | None, bytes | None, bool]:
    """(Authorization, the SDK's retry count, whether a Content-Encoding is set) of a request's headers (a loop, as above)."""
    authorization = retry = None
    encoded = False
    for _, name, value in _header_list(request.headers):
        if name == b"authorization":
            authorization = value
        elif name == _RETRY_HEADER:
            retry = value
        elif name == b"content-encoding":
            encoded = True
    return authorization, retry, encoded


def _json_object(body: bytes) -> dict | None:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _with_usage_asked(request: Any) -> tuple[Any, bytes | None]:
    """(the request to send, its body): a streaming one that lacks stream_options.include_usage gets it."""
    try:
        body = request.content
    except Exception:
        return request, None  # a streamed request body: the end notes it
    if b'"include_usage"' in body:
        return request, body
    parsed = _json_object(body)
    if parsed is None or parsed.get("stream", True) is not True:
        return request, body
    options = parsed.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return request, body
    parsed["stream_options"] = {**(options or {}), "include_usage": True}
    body = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
    headers = request.headers.copy()
    headers["Content-Length"] = str(len(body))
    return type(request)(request.method, request.url, headers=headers, content=body, extensions=request.extensions), body


# ---------------------------------------------------------------- one call, fed bytes (sync and async alike)


class CallState:
    """The state of one recorded attempt, fed the chunks the caller gets; its methods swallow their own failures.

    The stream shells below are this class with an iterator, so a call costs one
    object. What most calls never change is a class default, not set on each call.
    The chunks are held as they came until the end, and the writer accounts for
    them (`ledger.sink.capture.settle`): on the caller's path a short response
    costs an append a chunk. Past HELD_BYTES an Accountant takes them as they pass.
    """

    response: Any = None
    headers_at: float | None = None
    first_byte_at: float | None = None
    _inner: Any = None  # the response's raw stream
    _held: list[bytes] | None = None  # the chunks as they came, while they are few
    _held_size = 0
    _accountant: Accountant | None = None  # past HELD_BYTES
    _headers: tuple[bytes | None, bytes | None] | None = None  # the response's, once read for the accountant
    _ended = False
    _pending: bytes | None = None  # the chunk the caller has and accounting has not seen yet
    _notes: list[str] | None = None

    def __init__(self, core: RecorderCore, begun: tuple, response: Any) -> None:
        # begun: (started_at, the X-Ledger-* headers taken out, the Attribution in context, request, its body if read)
        self.core, self.begun = core, begun
        if response is not None:
            self.headers_at = _now()
            self.response, self._inner, self._held = response, response.stream, []

    def take(self, chunk: bytes) -> None:
        """A chunk the caller already has: held, or accounted for."""
        held = self._held
        if held is None:
            self._feed(chunk)
            return
        held.append(chunk)
        self._held_size += len(chunk)
        if self._held_size > HELD_BYTES:
            self._release()

    def _release(self) -> None:
        """Account for the held chunks at once; from here on each chunk as it passes."""
        held, self._held = self._held, None
        try:
            self._headers = _accounting_headers(self.response)
            self._accountant = Accountant(*self._headers, MAX_KEPT_BODY)
        except Exception as error:
            self.core.failed("stream", error)
            self._accountant = Accountant(None, None, MAX_KEPT_BODY)
            self._accountant.stop("recorder_error")  # nothing more is accounted for: the record says why
            return
        self._feed(b"".join(held))

    def _feed(self, chunk: bytes) -> None:
        try:
            self._accountant.feed(chunk)
        except Exception as error:  # the accountant noted it and stopped
            self.core.failed("stream", error)

    def note(self, note: str) -> None:
        if self._notes is None:
            self._notes = []
        self._notes.append(note)

    # -- the end: one RawCapture

    def _kept_request_body(self, request: Any, body: bytes | None, encoded: bool) -> bytes:
        if encoded:
            self.note("request_body_encoded")
            return b""
        if body is None:
            try:
                body = request.content
            except Exception:  # a streamed request body: never read here, so the caller's stream is untouched
                self.note("request_body_unread")
                return b""
        if len(body) <= MAX_KEPT_REQUEST:
            return body
        parsed = _json_object(body)
        if parsed is None:
            self.note("request_not_json")
            return b""
        summary = {name: parsed[name] for name in REQUEST_FIELDS if name in parsed}
        try:
            return json.dumps(summary, separators=(",", ":")).encode()[:MAX_KEPT_REQUEST]
        except (ValueError, RecursionError):  # a field nested past the interpreter's depth
            self.note("request_not_json")
            return json.dumps({"model": summary.get("model")}, separators=(",", ":")).encode()[:MAX_KEPT_REQUEST]

    def end(self, outcome: str, refused: Any = None) -> None:
        """Emit this call's one RawCapture (later calls do nothing); `refused`: the Refusal the caller got instead."""
        if self._ended:
            return
        self._ended = True
        try:
            ended = _now()
            pending = self._pending
            if pending is not None:  # the last chunk the caller got, if it closed before asking for more
                self._pending = None
                self.take(pending)
            response, self.response = self.response, None  # the response holds this shell: no cycle is left
            started, attributed, context, request, request_body = self.begun
            authorization, retry, encoded = request_headers(request)
            # The call's key first: what follows is redacted of it by value, whatever its shape.
            fingerprint, last4, key = self.core.key_facts(authorization) if authorization is not None else _NO_KEY
            if refused is not None:
                content_type, coding, kept, status = b"application/json", None, [refused.body], refused.status
            elif response is None:
                content_type = coding = kept = status = None
            else:
                content_type, coding = self._headers or _accounting_headers(response)
                status = response.status_code
                # What the journal keeps holds nothing key-shaped nor any secret known by value (ledger.redact):
                # a few substring searches (in C) tell whether anything needs a closer look.
                kept = self._held
                if kept is None:
                    kept = accounted_without_secrets(self._accountant.finish(outcome == COMPLETED), key)
                elif coding is not None and status >= 400:
                    kept = held_without_secrets(kept, content_type, coding, status, outcome, key)
                else:
                    body = kept[0] if len(kept) == 1 else b"".join(kept)
                    if may_hold_key(body, key):
                        kept = [redact_bytes(body, (key,) if key else ())]
                    elif len(kept) != 1:
                        kept = [body]
            request_body = self._kept_request_body(request, request_body, encoded)
            if may_hold_key(request_body, key):
                request_body = redact_bytes(request_body, (key,) if key else ())
            if attributed is not None:
                attributed = {name: redact_bytes(value, (key,) if key else ()) for name, value in attributed.items()}
            self.core.sink.emit(raw_capture_of((  # RawCapture's fields in order (a frame less than its __new__)
                new_call_id(), started, ended, self.first_byte_at or self.headers_at,  # call_id .. first_byte_at
                outcome, status, request_body, content_type, coding,  # outcome .. content_encoding
                kept, retry, fingerprint, last4,  # response, attempt, key_fingerprint, key_last4
                (context.project, context.user, context.tags) if context is not None else None,  # context
                attributed, tuple(self._notes) if self._notes else (),  # attributed, notes
            )))
        except Exception as failure:
            self.core.failed("emit", failure)
            self._emit_bare(outcome)

    def _emit_bare(self, outcome: str) -> None:
        """The call's record when its pieces could not all be kept: when it started and ended, flagged recorder_error."""
        try:
            started = self.begun[0]
            self.core.sink.emit(RawCapture(
                call_id=new_call_id(), started_at=started, ended_at=_now(),
                first_byte_at=self.first_byte_at or self.headers_at, outcome=outcome, http_status=None,
                request_body=b"", content_type=None, content_encoding=None, response=None, attempt=None,
                key_fingerprint=None, key_last4=None, context=None, attributed=None, notes=("recorder_error",),
            ))
        except Exception as failure:
            self.core.failed("emit", failure)


def is_chat(request: Any) -> bool:
    if request.method != "POST":
        return False
    target = request.url.raw_path  # as sent, with the query (`url.path` percent-decodes it first)
    query = target.find(b"?")
    return (target if query < 0 else target[:query]).endswith(CHAT_PATH)
