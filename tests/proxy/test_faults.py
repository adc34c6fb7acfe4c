"""What the proxy answers when a client, the upstream or a request goes wrong: each case its answer, a row where a call was made, and the next call served."""

from __future__ import annotations

import json
import socket
from decimal import Decimal

import httpx2
import openai
import pytest

from proxy_parts import ProxyUnderTest, proxy_settings, raw_exchange
from factories import wait_for

KEY = "sk-test-proxy-faults-0001"
MODEL = "gemini-3.1-pro"
MESSAGES = [{"role": "user", "content": "Say hello"}]
BODY = {"model": MODEL, "messages": MESSAGES, "stream": False}
AUTH = {"Authorization": f"Bearer {KEY}"}


def error_of(response: httpx2.Response) -> tuple[int, str, str]:
    payload = response.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "type"} and payload["error"]["message"]
    return response.status_code, payload["error"]["code"], payload["error"]["type"]


def still_serving(proxy: ProxyUnderTest) -> None:
    with httpx2.Client() as client:
        assert client.get(proxy.root_url + "/healthz").json()["status"] == "ok"
        assert client.post(proxy.base_url + "/chat/completions", json=BODY, headers=AUTH).status_code == 200


@pytest.fixture
def proxy(sim, database_url, tmp_path):
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path, max_body_bytes=64 * 1024, read_timeout=5)) as running:
        yield running


def test_a_client_gone_mid_stream_closes_the_upstream_and_the_call_is_aborted(sim, proxy):
    sim.platform.reset()
    headers = {**AUTH, "X-Sim-Fault": "slow_chunks", "Content-Type": "application/json"}  # an event every 0.2 s
    with httpx2.Client() as client:
        with client.stream("POST", proxy.base_url + "/chat/completions", json={**BODY, "stream": True}, headers=headers) as answer:
            first = next(answer.iter_raw())
    assert first.startswith(b"data: {")
    wait_for(lambda: proxy.app.in_flight == 0, what="the proxy to end the call")
    [row] = proxy.rows()
    assert row.status == "aborted" and row.completion_id == sim.platform.call_log[-1].id and row.stream is True
    still_serving(proxy)


def test_the_upstream_down_is_502_in_the_error_shape_and_a_failed_row(database_url, tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        with ProxyUnderTest(f"http://127.0.0.1:{port}/v1", proxy_settings(database_url, tmp_path)) as proxy:
            with openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0) as client:
                with pytest.raises(openai.APIStatusError) as failed:
                    client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
            with httpx2.Client() as client:
                again = client.post(proxy.base_url + "/chat/completions", json=BODY, headers=AUTH)
                assert client.get(proxy.root_url + "/healthz").status_code == 200
            rows = proxy.rows()
    assert failed.value.status_code == 502 and failed.value.code == "upstream_unreachable" and failed.value.type == "proxy_error"
    assert error_of(again) == (502, "upstream_unreachable", "proxy_error")
    assert [(row.status, row.http_status, row.model_requested) for row in rows] == [("failed", None, MODEL)] * 2


def test_a_slow_upstream_is_504_in_the_error_shape_and_a_failed_row(sim, database_url, tmp_path):
    settings = proxy_settings(database_url, tmp_path, read_timeout=0.05)  # the simulator waits 0.2 s before it answers
    with ProxyUnderTest(sim.base_url, settings) as proxy:
        with httpx2.Client() as client:
            slow = client.post(proxy.base_url + "/chat/completions", json=BODY, headers={**AUTH, "X-Sim-Fault": "slow_chunks"})
            fine = client.post(proxy.base_url + "/chat/completions", json=BODY, headers=AUTH)
        rows = proxy.rows()
    assert error_of(slow) == (504, "upstream_timeout", "proxy_error") and fine.status_code == 200
    assert [(row.status, row.http_status) for row in rows] == [("failed", None), ("completed", 200)]


@pytest.mark.parametrize("stream", [False, True])
def test_a_malformed_upstream_body_reaches_the_client_unchanged_and_its_row_is_flagged(sim, proxy, stream):
    request = {**BODY, "stream": stream}
    headers = {**AUTH, "X-Sim-Fault": "malformed_body"}
    with httpx2.Client() as client:
        sim.platform.reset()
        direct = client.post(sim.base_url + "/chat/completions", json=request, headers=headers)
        sim.platform.reset()
        proxied = client.post(proxy.base_url + "/chat/completions", json=request, headers=headers)
    assert proxied.status_code == direct.status_code == 200 and proxied.content == direct.content
    if not stream:
        with pytest.raises(ValueError):
            json.loads(proxied.content)
    [row] = proxy.rows()
    call = sim.platform.call_log[-1]
    assert row.status == "completed" and row.http_status == 200
    if stream:  # one event cut in half; the usage event after it is whole, and counted
        assert (row.completion_id, row.prompt_tokens, row.completion_tokens, row.credits_charged) == (
            call.id, call.usage.prompt_tokens, call.usage.completion_tokens, call.credits_charged)
    else:  # nothing can be read from it: the row says so
        assert row.anomalies and row.credits_charged is None
    still_serving(proxy)


class HeadsSeen:
    """An upstream on a raw socket that notes each request head it receives and never answers."""

    def __init__(self) -> None:
        import threading

        self.heads: list[bytes] = []
        self.arrived = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with connection:
            received = b""
            while b"\r\n\r\n" not in received:
                piece = connection.recv(65536)
                if not piece:
                    return
                received += piece
            self.heads.append(received.partition(b"\r\n\r\n")[0])
            self.arrived.set()
            while connection.recv(65536):
                pass

    def close(self) -> None:
        self._listener.close()


def test_a_body_over_the_limit_is_413_and_a_row_exactly_when_part_of_it_had_left(database_url, tmp_path):
    large = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * 100_000}]}).encode()
    upstream = HeadsSeen()
    settings = proxy_settings(database_url, tmp_path, max_body_bytes=64 * 1024)
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n"
    try:
        with ProxyUnderTest(upstream.base_url, settings) as proxy:
            told = raw_exchange(proxy.port, f"{head}Content-Length: {len(large)}\r\n\r\n".encode() + large)
            assert upstream.heads == [] and proxy.rows() == []  # refused before anything left: no call, no row
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
                client.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + b"3e8\r\n" + large[:1000] + b"\r\n")
                assert upstream.arrived.wait(10)  # the call is on its way upstream, then its body passes the limit
                rest = large[1000:]
                client.sendall(b"%x\r\n" % len(rest) + rest + b"\r\n0\r\n\r\n")
                untold = b""
                while piece := client.recv(65536):
                    untold += piece
            rows = proxy.rows()
    finally:
        upstream.close()
    for answer in (told, untold):
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_too_large"
    assert len(upstream.heads) == 1 and b"transfer-encoding: chunked" in upstream.heads[0].lower()
    assert [(row.status, row.http_status, row.credits_charged) for row in rows] == [("failed", None, None)]


@pytest.mark.parametrize(("framing", "path", "status"), [
    ("sized", "/v1/chat/completions", b"413 Request Entity Too Large"),
    ("chunked", "/v1/chat/completions", b"413 Request Entity Too Large"),
    ("sized", "/v1/../sim/reset", b"400 Bad Request"),  # any answer given before the body is read
])
def test_a_client_still_sending_a_body_reads_the_answer_not_a_reset(database_url, tmp_path, framing, path,
                                                                   status):
    # A socket closed with unread data answers with a reset, which can take the answer with it: after an
    # answer, the proxy reads and drops what still comes of the request (for up to a second), then closes.
    large = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * 2_000_000}]}).encode()
    upstream = HeadsSeen()
    settings = proxy_settings(database_url, tmp_path, max_body_bytes=64 * 1024)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n"
    if framing == "sized":
        request = f"{head}Content-Length: {len(large)}\r\n\r\n".encode() + large
    else:
        request = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + b"".join(
            b"%x\r\n%s\r\n" % (len(large[i:i + 8192]), large[i:i + 8192]) for i in range(0, len(large), 8192)) + b"0\r\n\r\n"
    try:
        with ProxyUnderTest(upstream.base_url, settings) as proxy:
            answers = [raw_exchange(proxy.port, request) for _ in range(5)]
    finally:
        upstream.close()
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"HTTP/1.1 " + status] * 5


def test_an_absolute_url_a_foreign_host_or_a_climbing_path_is_refused_and_nothing_leaves(sim, proxy):
    sim.platform.reset()
    body = json.dumps(BODY).encode()
    head = f"Content-Type: application/json\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    requests = [
        f"POST http://evil.example/v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\n{head}\r\n",
        f"POST {sim.base_url}/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{sim.port}\r\n{head}\r\n",
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\n{head}\r\n",
        f"POST /v1/../sim/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n",
        f"POST /v1/%2e%2e/sim/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n",
        f"POST //evil.example/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n",
    ]
    for request in requests:
        answer = raw_exchange(proxy.port, request.encode() + body)
        status, _, rest = answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 400 Bad Request", (request, answer)
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_request"
    assert sim.platform.call_log == [] and proxy.rows() == []
    with httpx2.Client() as client:
        missing = client.get(proxy.root_url + "/v2/models")
    assert error_of(missing) == (404, "not_found", "invalid_request_error")
    still_serving(proxy)


def test_a_hard_budget_limit_is_402_budget_exceeded_through_the_proxy(sim, database_url, tmp_path):
    from dataclasses import replace

    from ledger.accounting.budgets import Budget, Scope
    from ledger.config.alerts import AlertSettings

    budget = Budget("search-cap", Scope(project="search"), "month", "UTC", Decimal("0.000000001"), enforce=True)
    settings = replace(proxy_settings(database_url, tmp_path), alerting=AlertSettings((budget,)))
    sim.platform.reset()
    with ProxyUnderTest(sim.base_url, settings) as proxy:
        with openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=2,
                           default_headers={"X-Ledger-Project": "search"}) as client:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
            assert proxy.recorder.flush(30)
            proxy.recorder.limits.refresh()
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
        rows = proxy.rows()
    error = refused.value
    assert (error.status_code, error.code, error.type) == (402, "budget_exceeded", "billing_error")
    assert "search-cap" in error.message and len(sim.platform.call_log) == 1  # refused before it left, not retried
    assert [(row.status, row.http_status, row.credits_charged) for row in rows] == [
        ("completed", 200, sim.platform.call_log[0].credits_charged), ("refused", 402, 0)]


@pytest.mark.parametrize("code, status", [("invalid_request", 400), ("invalid_api_key", 401), ("insufficient_credits", 402),
                                          ("ip_not_allowed", 403), ("model_not_found", 404), ("rate_limit_exceeded", 429),
                                          ("spend_limit_exceeded", 429), ("internal_error", 500), ("upstream_error", 503)])
def test_the_apis_errors_reach_the_client_unchanged_and_are_rows(sim, proxy, code, status):
    headers = {**AUTH, "X-Sim-Error": code}
    with httpx2.Client() as client:
        direct = client.post(sim.base_url + "/chat/completions", json=BODY, headers=headers)
        proxied = client.post(proxy.base_url + "/chat/completions", json=BODY, headers=headers)
    assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content) and proxied.status_code == status
    assert [(name, value) for name, value in proxied.headers.items() if name != "date"] == [
        (name, value) for name, value in direct.headers.items() if name != "date"]
    [row] = proxy.rows()
    assert (row.status, row.http_status, row.error_code) == ("error", status, code)


def test_a_fault_of_the_proxy_itself_is_500_in_the_error_shape_in_one_log_line(caplog):
    import asyncio

    from ledger.proxy.app import ProxyApp

    class Broken(httpx2.AsyncBaseTransport):
        async def handle_async_request(self, request):
            raise RuntimeError("a library's own fault")

    async def call() -> httpx2.Response:
        app = ProxyApp("http://127.0.0.1:9/v1", Broken())
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://127.0.0.1") as client:
            return await client.post("/v1/chat/completions", json=BODY, headers=AUTH)

    answer = asyncio.run(call())
    assert error_of(answer) == (500, "internal_error", "proxy_error")
    [logged] = [record for record in caplog.records if record.name == "ledger.proxy"]
    assert logged.getMessage() == "credit-ledger proxy: a call could not be forwarded: RuntimeError: a library's own fault"
    assert logged.exc_info is None
