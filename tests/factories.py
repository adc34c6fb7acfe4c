"""Captures as the recorder makes them, and other real parts the tests share."""

from __future__ import annotations

import json
import uuid

from ledger.sink.capture import Capture, RawCapture
from ledger.record.call import new_call_id


def make_capture(i: int, *, call_id: str | None = None, prompt_tokens: int = 194, stream: bool | None = None) -> Capture:
    """A capture as the recorder makes it: non-streaming bodies, SSE streams and errors in turn."""
    started = 1_776_356_269.0 + i
    call_id = call_id or uuid.uuid4().hex
    request = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": f"question {i}"}]}
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 229,
        "total_tokens": prompt_tokens + 229 + 457,
        "completion_tokens_details": {"reasoning_tokens": 457, "audio_tokens": 0, "text_tokens": 0},
    }
    common = dict(call_id=call_id, started_at=started, ended_at=started + 0.7, first_byte_at=started + 0.3,
                  key_fingerprint="f" * 32, key_last4="Zq9x", project=f"project-{i % 3}", end_user="u-42",
                  tags={"feature": "summary"})
    kind = ("body", "stream", "error")[i % 3] if stream is None else ("stream" if stream else "body")
    if kind == "body":
        body = {"id": f"chatcmpl-{i:020d}", "object": "chat.completion", "created": int(started),
                "model": "gemini-3.1-pro-preview",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "An answer."}}],
                "usage": usage, "credits_consumed": 0.25}
        return Capture(outcome="completed", http_status=200, stream=False,
                       request_body=json.dumps({**request, "stream": False}).encode(),
                       body=json.dumps(body).encode(), **common)
    if kind == "stream":
        chunk = {"id": f"chatcmpl-{i:020d}", "object": "chat.completion.chunk", "model": "gemini-3.1-pro-preview"}
        payloads = (
            json.dumps({**chunk, "choices": [{"index": 0, "delta": {"content": "An"}}]}).encode(),
            json.dumps({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": usage, "credits_consumed": 0.25}).encode(),
            b"[DONE]",
        )
        return Capture(outcome="completed", http_status=200, stream=True, request_body=json.dumps(request).encode(),
                       payloads=payloads, saw_done=True, **common)
    error = {"error": {"message": "upstream failed", "type": "upstream_error", "code": "upstream_error"}}
    return Capture(outcome="completed", http_status=503, stream=False, request_body=json.dumps(request).encode(),
                   body=json.dumps(error).encode(), **common)


def make_raw_capture(i: int, *, call_id: str | None = None, prompt_tokens: int = 194, stream: bool | None = None) -> RawCapture:
    """What the recorder emits for the call make_capture(i) describes: the response's bytes as they came,
    under a call id as the recorder makes them (this process's prefix and a counter)."""
    c = make_capture(i, call_id=call_id or new_call_id(), prompt_tokens=prompt_tokens, stream=stream)
    if c.stream:
        first, last, _ = c.payloads
        events = [first] + [first.replace(b'"An"', b'" word"')] * 8 + [last]
        text = b"".join(b"data: " + event + b"\n\n" for event in events) + b"data: [DONE]\n\n"
        content_type, chunks = b"text/event-stream; charset=utf-8", [text[at : at + 240] for at in range(0, len(text), 240)]
    else:
        content_type, chunks = b"application/json", [c.body]
    return RawCapture(c.call_id, c.started_at, c.ended_at, c.first_byte_at, c.outcome, c.http_status, c.request_body,
                      content_type, None, chunks, b"0", c.key_fingerprint, c.key_last4, (c.project, c.end_user, dict(c.tags)), None, ())


def hold_sqlite_lock(url: str):
    """A connection holding SQLite's write lock (the writers wait, then retry, until it is let go)."""
    import sqlite3

    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def wait_for(condition, timeout: float = 20.0, interval: float = 0.01, what: str = "the condition"):
    """Poll `condition()` until it returns something true (returned), or fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class LoopbackServer:
    """An ASGI app served by uvicorn on a free loopback port, in a thread, for as long as the block runs."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self.port = self._socket.getsockname()[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.root_url + "/v1"

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        wait_for(lambda: self._server.started, what="the loopback server to start")
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._socket.close()


def make_call(started_at, charged, *, project=None, user=None, fingerprint=None, tags=None,
              model="gemini-3.1-pro", call_id=None, status="completed"):
    """A CallRecord charged `charged` credits (a Decimal or int), started at `started_at` (aware)."""
    from datetime import timedelta
    from decimal import Decimal

    from ledger.accounting.records import CallRecord, ResponseFacts, Usage

    return CallRecord(
        call_id or uuid.uuid4().hex, started_at, status, model_requested=model, stream=False,
        ended_at=started_at + timedelta(seconds=1), http_status=200,
        response=ResponseFacts("chatcmpl-x", model, "stop", Usage(100, 100, 0, 0, 0, 200), Decimal(charged)),
        key_fingerprint=fingerprint, key_last4="abcd" if fingerprint else None, project=project, end_user=user,
        tags=dict(tags or {}),
    )


def insert_records(ledger, records) -> None:
    """Priced and inserted as the writer does."""
    from ledger.accounting.pricing import default_rate_book, price
    from ledger.store.calls import insert_calls

    book = default_rate_book()
    with ledger.session() as session:
        insert_calls(session, [(record, price(record, book)) for record in records])
