"""The recorder with real parts: the openai SDK, httpx2 and httpx, the simulator and test apps on loopback."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import logging
import socket
from decimal import Decimal

import brotli
import httpx
import httpx2
import openai
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from factories import LoopbackServer

from ledger.accounting.pricing import default_rate_book, price
from ledger.config import Settings
from ledger.sink.capture import Capture, RawCapture, as_capture, build_record, parse_tags
from ledger.sink.wire import encode
from ledger.record.recorder import Recorder
from ledger.record.transport import AsyncRecordingTransport, RecordingTransport
from ledger.sim.server import SimulatorConfig, SimulatorServer

KEY = "sk-test-recorder-0001"
MODEL = "gemini-3.1-pro"
MESSAGES = [{"role": "user", "content": "Say hello"}]


class MemorySink:
    """Collects captures; flush and close as the LedgerSink has them."""

    def __init__(self) -> None:
        self.emitted: list[RawCapture] = []  # as the recorder emitted them (what the journal gets)
        self.captures: list[Capture] = []  # settled, as the writer sees them

    def emit(self, capture: RawCapture) -> None:
        self.emitted.append(capture)
        self.captures.append(as_capture(capture))

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        pass

    def records(self):
        return [build_record(capture) for capture in self.captures]

    def one(self):
        assert len(self.captures) == 1, self.captures
        return self.captures[0], build_record(self.captures[0])


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def rec(sink, tmp_path) -> Recorder:
    with Recorder(sink=sink, settings=Settings(secret_path=str(tmp_path / "secret"))) as recorder:
        yield recorder


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(SimulatorConfig(seed=3)) as server:
        yield server


# ---------------------------------------------------------------- a tiny app served by uvicorn on loopback


SSE_BODY = (
    b'data: {"id":"chatcmpl-app","model":"gemini-3.1-pro-preview","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-app","model":"gemini-3.1-pro-preview","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000},"credits_consumed":1.12}\n\n'
    b"data: [DONE]\n\n"
)
JSON_BODY = (
    b'{"id":"chatcmpl-app","object":"chat.completion","model":"gemini-3.1-pro-preview","choices":[{"index":0,'
    b'"finish_reason":"stop","message":{"role":"assistant","content":"hi"}}],'
    b'"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000},"credits_consumed":1.12}'
)
COMPRESS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


class FixedApp:
    """Answers chat calls with fixed bytes (optionally compressed), echoes what it received."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict, bytes]] = []
        self.raw_body: bytes | None = None  # when set: served as is, with raw_type
        self.raw_type = "application/json"
        self.raw_encoding: str | None = None
        self.hang_after_first = False

    def app(self):
        async def chat(request: Request):
            body = await request.body()
            self.seen.append((dict(request.headers), body))
            if self.raw_body is not None:
                extra = {"content-encoding": self.raw_encoding} if self.raw_encoding else {}
                return Response(self.raw_body, 200, headers=extra, media_type=self.raw_type)
            encoding = request.query_params.get("encoding")
            streaming = json.loads(body).get("stream", True)
            payload = SSE_BODY if streaming else JSON_BODY
            headers = {"content-encoding": encoding} if encoding else {}
            data = COMPRESS[encoding](payload) if encoding else payload
            media = "text/event-stream" if streaming else "application/json"
            if self.hang_after_first:
                async def pieces():
                    yield SSE_BODY.split(b"\n\n")[1] + b"\n\n"  # the chunk with usage, then nothing
                    await asyncio.sleep(30)

                return StreamingResponse(pieces(), 200, media_type=media)

            async def chunks():
                for i in range(0, len(data), 37):
                    yield data[i : i + 37]

            return StreamingResponse(chunks(), 200, headers=headers, media_type=media)

        async def other(request: Request):
            return JSONResponse({"data": {"balance": 1}})

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/credits", other)])


@pytest.fixture
def test_app():
    state = FixedApp()
    with LoopbackServer(state.app()) as server:
        state.base_url = server.base_url
        yield state


def _post(client, url, body, headers=None, params=None):
    with client.stream("POST", url + "/chat/completions", json=body, headers=headers or {}, params=params) as response:
        raw = b"".join(response.iter_raw())
    return response.status_code, response.headers.get("content-encoding"), raw


async def _apost(client, url, body, headers=None):
    async with client.stream("POST", url + "/chat/completions", json=body, headers=headers or {}) as response:
        raw = b"".join([piece async for piece in response.aiter_raw()])
    return response.status_code, response.headers.get("content-encoding"), raw


# ---------------------------------------------------------------- the openai SDK against the simulator


def _usage_of(record):
    return record.usage.prompt_tokens, record.usage.completion_tokens, record.usage.reasoning_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_sdk_sync_calls_are_recorded_with_what_the_sdk_saw(rec, sink, sim, stream):
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, http_client=rec.client(), max_retries=0) as client:
        if stream:
            chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                         stream=True, stream_options={"include_usage": True}))
            completion_id, usage = chunks[0].id, chunks[-1].usage
        else:
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
            completion_id, usage = answer.id, answer.usage
    capture, record = sink.one()
    assert record.status == "completed" and record.http_status == 200 and record.stream is stream
    assert record.response.completion_id == completion_id
    assert _usage_of(record) == (usage.prompt_tokens, usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens)
    charged = sim.platform.call_log[-1].credits_charged
    assert record.credits_charged == charged and price(record, default_rate_book()).pricing_class in ("ok", "rounding")
    assert record.key_last4 == "0001" and record.key_fingerprint and KEY.encode() not in encode(sink.emitted[0])
    assert record.attempt == 0 and record.started_at <= record.first_byte_at <= record.ended_at


@pytest.mark.parametrize("stream", [False, True])
def test_sdk_async_calls_are_recorded(rec, sink, sim, stream):
    async def main():
        async with openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, http_client=rec.async_client(), max_retries=0) as client:
            if stream:
                response = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                return [chunk async for chunk in response][0].id
            return (await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)).id

    completion_id = asyncio.run(main())
    _, record = sink.one()
    assert record.status == "completed" and record.stream is stream and record.response.completion_id == completion_id
    assert record.usage.prompt_tokens > 0 and record.credits_charged == sim.platform.call_log[-1].credits_charged


def _garbage_of_calls(sim, http_client, async_http_client) -> list:
    """What the collector finds after five rounds of SDK calls (sync, stream, raw response; async, async stream)."""
    client = openai.OpenAI(base_url=sim.base_url, api_key=KEY, http_client=http_client, max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, http_client=async_http_client, max_retries=0)

    async def async_calls():
        await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
        async for _ in await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass

    def calls():
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
        for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass
        client.with_raw_response.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
        loop.run_until_complete(async_calls())

    loop = asyncio.new_event_loop()
    try:
        calls()  # warm: whatever is made once
        gc.collect()
        gc.disable()
        try:
            for _ in range(5):
                calls()
            gc.set_debug(gc.DEBUG_SAVEALL)  # what it finds is kept in gc.garbage, to look at
            gc.collect()
            found, gc.garbage[:] = list(gc.garbage), []
            return found
        finally:
            gc.set_debug(0)
            gc.enable()
    finally:
        client.close()
        loop.run_until_complete(aclient.close())
        loop.close()


def test_a_recorded_call_leaves_no_garbage_cycle(rec, sink, sim):
    # A plain call's response is freed when the caller lets it go. The recorder's stream shell is the
    # response's stream and held the response, and an Accountant held a method of its own: each call
    # left a cycle of 51 - 69 objects to the collector, which slowed the calls after it (on loopback a
    # plain call after a recorded one took 2 - 3% longer than after a plain one).
    from ledger.record.call import CallState
    from ledger.accounting.sse import Accountant

    found = _garbage_of_calls(sim, rec.client(), rec.async_client())
    kinds = (httpx2.Response, httpx2.Request, CallState, Accountant)
    assert not [o for o in found if isinstance(o, kinds)]  # (the async client's sockets leave some; plain calls too)
    assert len(sink.captures) == 6 * 5  # every call recorded
    assert all(record.status == "completed" for record in sink.records())


def test_client_keeps_the_sdk_defaults(rec):
    with rec.client() as client, openai.DefaultHttpxClient() as plain:
        assert client.timeout == plain.timeout and client.follow_redirects is True
        assert isinstance(client._transport, RecordingTransport)
        assert client._transport._inner._pool._max_connections == plain._transport._pool._max_connections == 1000

    async def check():
        async with rec.async_client() as client:
            assert isinstance(client._transport, AsyncRecordingTransport)

    asyncio.run(check())


def test_sdk_retries_are_one_record_per_attempt(rec, sink, sim):
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, http_client=rec.client(), max_retries=2) as client:
        with pytest.raises(openai.InternalServerError):
            client.with_options(timeout=10).chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=False, extra_headers={"X-Sim-Error": "internal_error"})
    records = sink.records()
    assert [r.attempt for r in records] == [0, 1, 2]
    assert {(r.status, r.http_status, r.response.error_code) for r in records} == {("error", 500, "internal_error")}
    assert len({r.call_id for r in records}) == 3


# ---------------------------------------------------------------- raw transports: the caller gets the upstream's bytes


def _sync_clients(rec):
    return [
        ("httpx2", httpx2.Client(), httpx2.Client(transport=rec.transport(httpx2.HTTPTransport()))),
        ("httpx", httpx.Client(), httpx.Client(transport=rec.transport(httpx.HTTPTransport()))),
    ]


@pytest.mark.parametrize("encoding", [None, "gzip", "br", "zstd"])
@pytest.mark.parametrize("stream", [True, False])
def test_sync_transports_pass_the_bytes_as_sent_and_record(rec, sink, test_app, encoding, stream):
    body = {"model": MODEL, "messages": MESSAGES, "stream": stream}
    params = {"encoding": encoding} if encoding else None
    plain_body = SSE_BODY if stream else JSON_BODY
    for name, plain, recorded in _sync_clients(rec):
        with plain, recorded:
            without = _post(plain, test_app.base_url, body, params=params)
            with_recorder = _post(recorded, test_app.base_url, body, params=params)
            assert with_recorder == without, name
            assert with_recorder[2] == (COMPRESS[encoding](plain_body) if encoding else plain_body), name
            # and a normal read decodes as it would without the recorder
            decoded = [c.post(test_app.base_url + "/chat/completions", params=params, json=body).content for c in (plain, recorded)]
            assert decoded[0] == decoded[1], name
    records = sink.records()
    assert len(records) == 4
    assert all(r.status == "completed" and r.stream is stream and r.usage.prompt_tokens == 1000 for r in records)
    assert all(r.credits_charged == Decimal("1.12") and not r.anomalies for r in records)
    assert all(price(r, default_rate_book()).pricing_class == "ok" for r in records)


@pytest.mark.parametrize("encoding", [None, "gzip", "br", "zstd"])
def test_async_transports_pass_the_bytes_as_sent_and_record(rec, sink, test_app, encoding):
    body = {"model": MODEL, "messages": MESSAGES}
    params = {"encoding": encoding} if encoding else None

    async def main():
        results = []
        for plain, recorded in [
            (httpx2.AsyncClient(), httpx2.AsyncClient(transport=rec.transport(httpx2.AsyncHTTPTransport()))),
            (httpx.AsyncClient(), httpx.AsyncClient(transport=rec.transport(httpx.AsyncHTTPTransport()))),
        ]:
            async with plain, recorded:
                for client in (plain, recorded):
                    async with client.stream("POST", test_app.base_url + "/chat/completions", params=params, json=body) as r:
                        results.append(b"".join([piece async for piece in r.aiter_raw()]))
        return results

    results = asyncio.run(main())
    expected = COMPRESS[encoding](SSE_BODY) if encoding else SSE_BODY
    assert results == [expected] * 4
    records = sink.records()
    assert len(records) == 2 and all(r.status == "completed" and r.credits_charged == Decimal("1.12") for r in records)


def test_other_paths_pass_straight_through(rec, sink, test_app):
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        response = client.get(test_app.base_url + "/credits")
        assert response.json() == {"data": {"balance": 1}}
        assert type(response.stream).__module__.startswith("httpx2")
    assert sink.captures == []


def test_a_stream_closed_early_is_aborted_with_the_usage_seen_so_far(rec, sink, test_app):
    test_app.hang_after_first = True
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        with client.stream("POST", test_app.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES}) as response:
            next(response.iter_raw())
    _, record = sink.one()
    assert record.status == "aborted" and record.usage.completion_tokens == 1000 and record.credits_charged == Decimal("1.12")


def test_a_stream_dropped_without_a_close_is_still_one_aborted_record(rec, sink, test_app):
    test_app.hang_after_first = True
    transport = rec.transport(httpx2.HTTPTransport())
    request = httpx2.Request("POST", test_app.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    response = transport.handle_request(request)
    chunks = iter(response.stream)
    assert b'"usage"' in next(chunks)
    chunks.close()  # what finalising the iterator does when the caller drops it half-read
    _, record = sink.one()
    assert record.status == "aborted" and record.usage.completion_tokens == 1000 and record.credits_charged == Decimal("1.12")
    response.stream.close()  # the connection goes back; the call already has its one record
    transport.close()
    assert len(sink.captures) == 1


def test_sdk_stream_closed_early_is_aborted(rec, sink, sim):
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, http_client=rec.client(), max_retries=0) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                extra_headers={"X-Sim-Fault": "slow_chunks"})
        first = next(iter(stream))
        stream.close()
    _, record = sink.one()
    assert record.status == "aborted" and record.usage is None and record.response.completion_id == first.id
    assert price(record, default_rate_book()).pricing_class == "missing_usage"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("library", [httpx2, httpx])
def test_a_connection_failure_is_recorded_and_reaches_the_caller_unchanged(rec, sink, library):
    url = f"http://127.0.0.1:{_closed_port()}/v1/chat/completions"
    errors = []
    for transport in (library.HTTPTransport(), rec.transport(library.HTTPTransport())):
        with library.Client(transport=transport) as client, pytest.raises(library.ConnectError) as caught:
            client.post(url, json={"model": MODEL})
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
    _, record = sink.one()
    assert record.status == "failed" and record.http_status is None and record.model_requested == MODEL


def test_async_connection_failure_is_recorded(rec, sink):
    async def main():
        async with httpx2.AsyncClient(transport=rec.transport(httpx2.AsyncHTTPTransport())) as client:
            await client.post(f"http://127.0.0.1:{_closed_port()}/v1/chat/completions", json={})

    with pytest.raises(httpx2.ConnectError):
        asyncio.run(main())
    assert sink.one()[1].status == "failed"


# ---------------------------------------------------------------- faults and the error table


FAULT_CASES = [
    ("overcharge", "completed", "overcharge"),
    ("bill_reasoning", "completed", "reasoning_billed"),
    ("wrong_rate", "completed", "wrong_rate"),
    ("omit_usage", "completed", "missing_usage"),
    ("charge_refund", "error", "charged_on_refund"),
    ("slow_chunks", "completed", "rounding"),
    ("cut_stream", "failed", "missing_usage"),
    ("omit_charge", "completed", "missing_charge"),
    ("malformed_body", "completed", "missing_usage"),  # streamed: priced, flagged (see below)
]


@pytest.mark.parametrize("fault, status, pricing_class", FAULT_CASES)
@pytest.mark.parametrize("stream", [True, False])
def test_every_fault_ends_as_the_right_record(rec, sink, sim, fault, status, pricing_class, stream):
    # A long prompt: the prompt's charge that charge_refund keeps is then not rounded away.
    body = {"model": MODEL, "messages": [{"role": "user", "content": "word " * 20000}], "stream": stream}
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport()), timeout=10) as client:
        try:
            _post(client, sim.base_url, body, {"Authorization": f"Bearer {KEY}", "X-Sim-Fault": fault})
        except httpx2.TransportError:
            assert fault == "cut_stream"
    _, record = sink.one()
    finding = price(record, default_rate_book())
    if finding.pricing_class == "ok" and pricing_class == "rounding":
        pricing_class = "ok"  # the charge happened to need no rounding
    if fault == "cut_stream" and not stream:
        assert record.status == "failed"  # half a JSON body, then the connection breaks
    elif not (fault == "malformed_body" and stream):
        assert (record.status, finding.pricing_class) == (status, pricing_class)
    if fault == "omit_usage":
        assert record.usage is None
    if fault == "charge_refund":
        assert record.refunded and record.http_status == 503
    if fault == "malformed_body":
        if stream:  # a content chunk was cut in half (not kept): the usage chunk is whole, the call is priced
            assert finding.pricing_class in ("ok", "rounding") and record.usage is not None
        else:
            assert "malformed_body" in record.anomalies
    if fault == "cut_stream" and stream:
        assert "stream_incomplete" in record.anomalies


ERROR_TABLE = [
    (400, "invalid_request", "invalid_request_error"), (401, "invalid_api_key", "authentication_error"),
    (402, "insufficient_credits", "billing_error"), (403, "ip_not_allowed", "permission_error"),
    (404, "model_not_found", "invalid_request_error"), (404, "task_not_found", "invalid_request_error"),
    (429, "rate_limit_exceeded", "rate_limit_error"), (429, "spend_limit_exceeded", "billing_error"),
    (500, "internal_error", "api_error"), (503, "upstream_error", "upstream_error"),
]


def test_every_error_of_the_table_is_recorded_with_its_code_and_type(rec, sink, sim):
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        for status, code, _ in ERROR_TABLE:
            answer = client.post(sim.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                                 headers={"Authorization": f"Bearer {KEY}", "X-Sim-Error": code})
            assert answer.status_code == status and answer.json()["error"]["code"] == code
    records = sink.records()
    assert [(r.http_status, r.response.error_code, r.response.error_type) for r in records] == ERROR_TABLE
    assert all(r.status == "error" for r in records)
    assert [r.refunded for r in records] == [False] * 9 + [True]
    assert {price(r, default_rate_book()).credits_expected for r in records} == {Decimal(0)}


# ---------------------------------------------------------------- attribution, keys, the request


def test_attribution_headers_are_removed_and_win_over_the_context(rec, sink, test_app):
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        with rec.attribute(project="ctx", user="u-1", tags={"feature": "summary", "team": "a"}):
            with rec.attribute(tags={"team": "b"}):
                client.post(test_app.base_url + "/chat/completions", json={"model": MODEL, "stream": False},
                            headers={"X-Ledger-Project": "search", "X-Ledger-Tags": "env=prod,team=c"})
            client.post(test_app.base_url + "/chat/completions", json={"model": MODEL, "stream": False},
                        headers={"X-Ledger-User": "u-42", "X-Ledger-Tags": '{"env": "dev"}'})
        client.post(test_app.base_url + "/chat/completions", json={"model": MODEL, "stream": False})
    assert all(not name.startswith("x-ledger") for headers, _ in test_app.seen for name in headers)
    first, second, third = sink.records()
    assert (first.project, first.end_user, dict(first.tags)) == ("search", "u-1", {"feature": "summary", "team": "c", "env": "prod"})
    assert (second.project, second.end_user, dict(second.tags)) == ("ctx", "u-42", {"feature": "summary", "team": "a", "env": "dev"})
    assert (third.project, third.end_user, dict(third.tags)) == (None, None, {})


def test_parse_tags_accepts_pairs_and_json():
    assert parse_tags("a=1, b = two,broken") == {"a": "1", "b": "two"}
    assert parse_tags('{"a": 1}') == {"a": "1"}


def test_attribution_follows_asyncio_tasks(rec, sink, test_app):
    async def call(client, project):
        with rec.attribute(project=project):
            await asyncio.sleep(0)
            await asyncio.gather(*(client.post(test_app.base_url + "/chat/completions",
                                               json={"model": MODEL, "stream": False, "messages": [{"content": project}]})
                                   for _ in range(3)))

    async def main():
        async with httpx2.AsyncClient(transport=rec.transport(httpx2.AsyncHTTPTransport())) as client:
            with rec.attribute(user="shared"):
                await asyncio.gather(*(call(client, f"p{i}") for i in range(4)))

    asyncio.run(main())
    records = sink.records()
    assert len(records) == 12 and {r.end_user for r in records} == {"shared"}
    for capture, record in zip(sink.captures, records):
        assert json.loads(capture.request_body)["messages"][0]["content"] == record.project


def test_include_usage_is_added_to_streaming_requests_only_when_asked(sink, tmp_path, test_app):
    settings = Settings(secret_path=str(tmp_path / "s"))
    bodies = [{"model": MODEL, "messages": MESSAGES}, {"model": MODEL, "stream": True},
              {"model": MODEL, "stream": False}, {"model": MODEL, "stream_options": {"include_usage": False}}]
    for include_usage in (False, True):
        with Recorder(sink=sink, settings=settings, include_usage=include_usage) as rec:
            with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
                for body in bodies:
                    client.post(test_app.base_url + "/chat/completions", json=body).read()
    sent = [(json.loads(body), headers) for headers, body in test_app.seen]
    assert [b for b, _ in sent[:4]] == bodies  # off: untouched
    on = [b for b, _ in sent[4:]]
    assert on[0]["stream_options"] == {"include_usage": True} and on[1]["stream_options"] == {"include_usage": True}
    assert on[2] == bodies[2] and on[3] == bodies[3]
    assert all(int(h["content-length"]) == len(body) for h, body in test_app.seen)
    assert json.loads(sink.captures[4].request_body)["stream_options"] == {"include_usage": True}


def test_a_large_request_keeps_only_the_accounting_fields(rec, sink, test_app):
    secret_text = "confidential " * 5000
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        client.post(test_app.base_url + "/chat/completions", json={
            "model": MODEL, "stream": False, "reasoning_effort": "low", "include_thoughts": False,
            "tools": [{"type": "function", "function": {"name": "googleSearch"}}],
            "messages": [{"role": "user", "content": secret_text}]})
    capture, record = sink.one()
    assert b"confidential" not in capture.request_body and len(capture.request_body) < 300
    assert (record.model_requested, record.stream, record.reasoning_effort, record.include_thoughts, record.tools) == (
        MODEL, False, "low", False, "googleSearch")


def test_a_compressed_request_is_not_read_and_its_headers_are_still_read(rec, sink, test_app):
    test_app.raw_body = JSON_BODY  # answered as it is: the app does not read the request
    body = gzip.compress(json.dumps({"model": MODEL, "stream": False, "messages": MESSAGES}).encode())
    headers = {"Content-Encoding": "gzip", "Authorization": f"Bearer {KEY}", "X-Stainless-Retry-Count": "2"}
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        assert client.post(test_app.base_url + "/chat/completions", content=body, headers=headers).content == JSON_BODY
    capture, record = sink.one()
    assert capture.request_body == b"" and "request_body_encoded" in record.anomalies
    assert (record.key_last4, record.attempt) == (KEY[-4:], 2) and record.key_fingerprint
    assert record.usage is not None and record.status == "completed"


def test_a_body_too_large_to_keep_is_flagged(rec, sink, test_app):
    test_app.raw_body = b'{"id": "x", "pad": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        assert client.post(test_app.base_url + "/chat/completions", json={"model": MODEL}).content == test_app.raw_body
    capture, record = sink.one()
    assert capture.body is None and "body_too_large" in record.anomalies


# ---------------------------------------------------------------- the recorder never breaks a call


class BrokenSink(MemorySink):
    def emit(self, capture: Capture) -> None:
        raise RuntimeError(f"disk on fire while holding {KEY}")


def test_a_failing_sink_is_logged_once_and_never_reaches_the_caller(tmp_path, test_app, caplog):
    with Recorder(sink=BrokenSink(), settings=Settings(secret_path=str(tmp_path / "s"))) as rec:
        with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client, caplog.at_level(logging.ERROR):
            for _ in range(3):
                answer = client.post(test_app.base_url + "/chat/completions", json={"model": MODEL},
                                     headers={"Authorization": f"Bearer {KEY}"})
                assert answer.content == SSE_BODY
    logged = [r for r in caplog.records if r.name == "ledger.record"]
    assert len(logged) == 1 and KEY not in logged[0].getMessage() and "disk on fire" in logged[0].getMessage()


def _settled_without_ids_and_times(capture: Capture) -> Capture:
    return capture._replace(call_id="", started_at=0, ended_at=0, first_byte_at=0)


@pytest.mark.parametrize("encoding", [None, "gzip", "br", "zstd"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_response_held_and_settled_by_the_writer_is_the_capture_of_one_accounted_chunk_by_chunk(
    rec, sink, test_app, monkeypatch, encoding, stream
):
    # A short response's bytes are held as they came and settled by the writer; past HELD_BYTES an
    # Accountant takes them as they pass. HELD_BYTES = 0 sends every response the second way.
    body = {"model": MODEL, "messages": MESSAGES, "stream": stream}
    params = {"encoding": encoding} if encoding else None
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client:
        _post(client, test_app.base_url, body, params=params)
        monkeypatch.setattr("ledger.record.call.HELD_BYTES", 0)
        _post(client, test_app.base_url, body, params=params)
        test_app.hang_after_first = stream
        for held in (64 * 1024, 0):  # and a stream closed early, both ways
            monkeypatch.setattr("ledger.record.call.HELD_BYTES", held)
            with client.stream("POST", test_app.base_url + "/chat/completions", json=body, params=params) as response:
                next(response.iter_raw())
    held, passed, held_early, passed_early = sink.emitted
    assert type(held.response) is list and type(passed.response) is tuple and type(passed_early.response) is tuple
    held, passed, held_early, passed_early = map(_settled_without_ids_and_times, sink.captures)
    assert held == passed and held.stream is stream and (held.body is not None) is not stream
    assert held_early == passed_early
    assert sink.records()[0].usage.prompt_tokens == 1000 and sink.records()[1].usage.prompt_tokens == 1000


def test_a_failing_scanner_is_flagged_and_the_caller_gets_the_bytes(rec, sink, test_app, monkeypatch, caplog):
    def boom(self, chunk):
        raise MemoryError("scanner")

    monkeypatch.setattr("ledger.accounting.sse.SSEScanner.feed", boom)
    with httpx2.Client(transport=rec.transport(httpx2.HTTPTransport())) as client, caplog.at_level(logging.ERROR):
        assert client.post(test_app.base_url + "/chat/completions", json={"model": MODEL}).content == SSE_BODY
    assert "recorder_error" in sink.one()[1].anomalies


@pytest.fixture(scope="module")
def fuzz_app():
    state = FixedApp()
    with LoopbackServer(state.app()) as server:
        state.base_url = server.base_url
        yield state


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.sampled_from([JSON_BODY, SSE_BODY]).flatmap(lambda whole: st.integers(0, len(whole)).map(lambda n: whole[:n])),
        st.just(b'{"usage": {"prompt_tokens": -5, "completion_tokens": 1e999}, "credits_consumed": NaN}'),
    ),
    media=st.sampled_from(["application/json", "text/event-stream"]),
    encoding=st.sampled_from([None, "gzip"]),
)
def test_fuzzed_upstream_bodies_pass_through_and_are_flagged(fuzz_app, tmp_path_factory, body, media, encoding):
    sink = MemorySink()
    fuzz_app.raw_body, fuzz_app.raw_type, fuzz_app.raw_encoding = body, media, encoding
    rec = Recorder(sink=sink, settings=Settings(secret_path=str(tmp_path_factory.getbasetemp() / "s")))
    seen = []
    for transport in (httpx2.HTTPTransport(), rec.transport(httpx2.HTTPTransport())):
        with httpx2.Client(transport=transport) as client:
            seen.append(_post(client, fuzz_app.base_url, {"model": MODEL}))
    assert seen[0] == seen[1] and seen[1][2] == body
    _, record = sink.one()
    if record.status == "completed" and record.usage is None:
        assert record.anomalies or price(record, default_rate_book()).pricing_class == "missing_usage"


def test_a_body_that_claims_gzip_but_is_not_is_flagged(rec, sink, test_app):
    async def garbage(request: Request):
        await request.body()
        return Response(b"this is not gzip", 200, headers={"content-encoding": "gzip"}, media_type="text/event-stream")

    with LoopbackServer(Starlette(routes=[Route("/v1/chat/completions", garbage, methods=["POST"])])) as server:
        outcomes = []
        for transport in (httpx2.HTTPTransport(), rec.transport(httpx2.HTTPTransport())):
            with httpx2.Client(transport=transport) as client:
                outcomes.append(_post(client, server.base_url, {"model": MODEL}))
                with pytest.raises(httpx2.DecodingError):
                    client.post(server.base_url + "/chat/completions", json={"model": MODEL})
    assert outcomes[0] == outcomes[1] and outcomes[1][2] == b"this is not gzip"
    assert all("undecodable_body" in r.anomalies for r in sink.records())


# ---------------------------------------------------------------- into the real ledger


def test_recorded_calls_reach_the_ledger_priced(database_url, tmp_path, sim):
    from ledger.store.engine import Ledger
    from ledger.store.models import Call
    from sqlalchemy import select

    settings = Settings(secret_path=str(tmp_path / "secret"), writer_processes=0)  # the writer's processes: test_writer
    with Recorder(database_url, settings=settings, journal_dir=tmp_path / "journal") as rec:
        with openai.OpenAI(base_url=sim.base_url, api_key=KEY, http_client=rec.client(), max_retries=0) as client:
            with rec.attribute(project="search", user="u-42", tags={"feature": "summary"}):
                client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
                for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES):
                    pass
            for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"X-Sim-Fault": "omit_usage"}):
                pass
        assert rec.flush(10)
    with Ledger(database_url) as ledger, ledger.session() as session:
        rows = session.scalars(select(Call).order_by(Call.id)).all()
        assert [(r.project, r.stream, r.status) for r in rows] == [
            ("search", False, "completed"), ("search", True, "completed"), (None, True, "completed")]
        assert all(r.pricing_class in ("ok", "rounding") for r in rows[:2])
        assert rows[0].end_user == "u-42" and json.loads(rows[0].tags) == {"feature": "summary"}
        assert rows[2].prompt_tokens is None and rows[2].pricing_class == "missing_usage"
        assert [r.credits_charged for r in rows[:2]] == [c.credits_charged for c in sim.platform.call_log[-3:-1]]
        assert all(r.key_last4 == "0001" and r.key_fingerprint for r in rows)
