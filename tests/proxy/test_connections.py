"""The proxy as a server on a network: silent and slow connections closed, a worker's connections capped, request heads bounded.

Real sockets on loopback; counts and times kept small, every wait bounded.
"""

from __future__ import annotations

import json
import selectors
import socket
import time

import httpx2
import pytest

from proxy_parts import ProxyUnderTest, proxy_settings
from factories import wait_for

KEY = "sk-test-proxy-connections-01"
BODY = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Say hello"}], "stream": False}
AUTH = {"Authorization": f"Bearer {KEY}"}
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
BOUND = 20.0  # seconds a test waits at most for what it expects (the proxy's timeouts are well under a second)


def connect(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=BOUND) for _ in range(count)]


def answers_when_closed(connections: list[socket.socket], trickle: bytes = b"") -> list[bytes]:
    """What each connection received until the proxy closed it; `trickle` is sent on the open ones meanwhile."""
    received = {connection: b"" for connection in connections}
    selector = selectors.DefaultSelector()
    for connection in connections:
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    deadline = time.monotonic() + BOUND
    try:
        while selector.get_map():
            assert time.monotonic() < deadline, f"{len(selector.get_map())} of {len(connections)} connections still open"
            for key, _ in selector.select(timeout=0.05):
                try:
                    piece = key.fileobj.recv(65536)
                except ConnectionResetError:
                    piece = b""
                received[key.fileobj] += piece
                if not piece:
                    selector.unregister(key.fileobj)
            for key in list(selector.get_map().values()):
                if trickle:
                    try:
                        key.fileobj.send(trickle)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
    finally:
        selector.close()
        for connection in connections:
            connection.close()
    return [received[connection] for connection in connections]


def error_answer(raw: bytes) -> tuple[int, str | None, str | None]:
    """(status, error code, error type) of an answer in the API's error shape, closing its connection."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    status = int(lines[0].split()[1])
    if status < 400:
        return status, None, None
    assert headers["content-type"] == "application/json" and headers["connection"] == "close", head
    payload = json.loads(body)
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "type"}
    return status, payload["error"]["code"], payload["error"]["type"]


def still_serving(proxy: ProxyUnderTest) -> None:
    with httpx2.Client() as client:
        assert client.post(proxy.base_url + "/chat/completions", json=BODY, headers=AUTH).status_code == 200


def test_silent_connections_are_closed_after_the_idle_timeout_and_others_are_served(sim, database_url, tmp_path):
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path, idle_timeout=0.2)) as proxy:
        silent = connect(proxy.port, 40)
        with httpx2.Client() as client:  # a served call's connection, kept alive, is silent after its answer
            assert client.post(proxy.base_url + "/chat/completions", json=BODY, headers=AUTH).status_code == 200
            assert answers_when_closed(silent) == [b""] * 40
            wait_for(lambda: not proxy._server.server_state.connections, what="the kept-alive connection to be closed")
            still_serving(proxy)


def test_a_body_that_stops_coming_is_closed_after_the_idle_timeout_and_its_call_is_a_failed_row(sim, database_url, tmp_path):
    sim.platform.reset()
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path, idle_timeout=0.3)) as proxy:
        stalled = connect(proxy.port, 5)
        for connection in stalled:  # a tenth of the body told, then nothing
            connection.sendall(HEAD + b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n" + b"{" * 100)
        assert answers_when_closed(stalled) == [b""] * 5
        still_serving(proxy)
        rows = proxy.rows()
    assert sim.platform.call_log[-1].status == 200 and len(sim.platform.call_log) == 1  # the stalled ones never reached it whole
    assert sorted(row.status for row in rows) == ["completed"] + ["failed"] * 5


class SlowReadingUpstream:
    """An upstream on a raw socket that waits a second before it reads a request's body, then answers a chat completion."""

    ANSWER = (b'{"id":"chatcmpl-slow","object":"chat.completion","model":"gemini-3.1-pro","choices":[],'
              b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"credits_consumed":0.01}')

    def __init__(self) -> None:
        import threading

        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the proxy's writes stall soon
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        self.received: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(4096)
            head, _, body = received.partition(b"\r\n\r\n")
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1])
            time.sleep(1.0)  # what the proxy cannot pass on in the meantime, it stops reading from its client
            while len(body) < length:
                body += connection.recv(1 << 20)
            self.received.append(len(body))
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(self.ANSWER), self.ANSWER))

    def close(self) -> None:
        self._listener.close()


def test_a_body_the_proxy_stops_reading_while_the_upstream_is_slow_is_not_cut_as_silent(database_url, tmp_path):
    upstream = SlowReadingUpstream()
    large = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * (12 << 20)}]}).encode()
    try:
        with ProxyUnderTest(upstream.base_url, proxy_settings(database_url, tmp_path, idle_timeout=0.2)) as proxy:
            with httpx2.Client(timeout=30) as client:
                answer = client.post(proxy.base_url + "/chat/completions", content=large, headers=AUTH)
            rows = proxy.rows()
    finally:
        upstream.close()
    assert answer.status_code == 200 and answer.content == SlowReadingUpstream.ANSWER and upstream.received == [len(large)]
    assert [row.status for row in rows] == ["completed"]


def test_a_slow_head_is_answered_408_after_the_header_timeout_and_others_are_served(sim, database_url, tmp_path):
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path, header_timeout=0.3)) as proxy:
        slow = connect(proxy.port, 20)
        for connection in slow[:10]:
            connection.sendall(HEAD)  # then one more header line at a time, never the blank line that ends the head
        for connection in slow[10:]:
            connection.sendall(b"POST /v1/chat/completions?q=")  # then the request line, a byte at a time
        blank_lines = connect(proxy.port, 5)  # blank lines only: no request ever starts
        answers = answers_when_closed(slow[:10], trickle=b"X-Slow: 1\r\n") + answers_when_closed(slow[10:], trickle=b"a") \
            + answers_when_closed(blank_lines, trickle=b"\r\n")
        assert [error_answer(answer) for answer in answers] == [(408, "request_timeout", "invalid_request_error")] * 25
        still_serving(proxy)


def test_a_request_asking_for_h2c_keeps_the_bounds_of_any_other(sim, database_url, tmp_path):
    upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
    auth = b"Authorization: Bearer " + KEY.encode() + b"\r\n"
    body = json.dumps({**BODY, "messages": [{"role": "user", "content": "y" * 2000}]}).encode()
    settings = proxy_settings(database_url, tmp_path, header_timeout=0.3, idle_timeout=1.0)
    with ProxyUnderTest(sim.base_url, settings) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=BOUND) as connection:
            connection.sendall(b"GET /v1/credits HTTP/1.1\r\nHost: 127.0.0.1\r\n" + upgrade + auth + b"\r\n")
            first = connection.recv(65536)
            time.sleep(0.6)  # longer than header_timeout, shorter than idle_timeout: the connection is idle, not mid-head
            connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + upgrade + auth
                               + b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
            for start in range(100, len(body), 100):  # the rest of the body over 2 s, never silent for idle_timeout
                connection.sendall(body[start : start + 100])
                time.sleep(0.1)
            second = connection.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 OK") and second.startswith(b"HTTP/1.1 200 OK"), (first[:100], second[:100])
    assert [row.status for row in proxy.rows()] == ["completed"]


def test_at_the_cap_the_connection_quiet_the_longest_makes_room_and_a_client_is_served(sim, database_url, tmp_path):
    settings = proxy_settings(database_url, tmp_path, max_client_connections=4, idle_timeout=30, header_timeout=30)
    with ProxyUnderTest(sim.base_url, settings) as proxy:
        held = connect(proxy.port, 4)  # silent
        wait_for(lambda: len(proxy._server.server_state.connections) == 4, what="four connections")
        for index in range(4):  # then four slow heads: each closes the connection quiet the longest
            [connection] = connect(proxy.port, 1)
            connection.sendall(HEAD)
            assert answers_when_closed([held[index]]) == [b""]
            held.append(connection)
        still_serving(proxy)  # and the oldest slow head makes room for it
        assert answers_when_closed([held[4]]) == [b""]
        for connection in held[5:]:
            connection.close()
        assert [row.status for row in proxy.rows()] == ["completed"]


def test_at_the_cap_with_every_connection_serving_a_request_one_more_is_answered_503_proxy_busy(sim, database_url, tmp_path):
    settings = proxy_settings(database_url, tmp_path, max_client_connections=4, idle_timeout=30)
    body = json.dumps(BODY).encode()
    head = HEAD + b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    with ProxyUnderTest(sim.base_url, settings) as proxy:
        busy = connect(proxy.port, 4)
        for connection in busy:  # each a request whose body is still coming: being served, never the quietest
            connection.sendall(head + body[:10])
        wait_for(lambda: proxy.app.in_flight == 4, what="four requests in flight")
        with httpx2.Client() as client:
            refused = client.post(proxy.base_url + "/chat/completions", json=BODY, headers=AUTH)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1" and refused.headers["connection"] == "close"
        assert refused.json()["error"]["code"] == "proxy_busy" and refused.json()["error"]["type"] == "proxy_error"
        busy[0].sendall(body[10:])
        assert busy[0].recv(65536).startswith(b"HTTP/1.1 200 ")  # served; quiet now, so it makes room for the next
        still_serving(proxy)
        for connection in busy:
            connection.close()
        wait_for(lambda: proxy.app.in_flight == 0, what="the cut calls to end")
        statuses = sorted(row.status for row in proxy.rows())
    assert statuses == ["completed"] * 2 + ["failed"] * 3  # the three cut mid-body had left: failed rows


def header_answer(proxy: ProxyUnderTest, head: bytes) -> tuple[int, str, str]:
    body = json.dumps(BODY).encode()
    [connection] = connect(proxy.port, 1)
    connection.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    [answer] = answers_when_closed([connection])
    return error_answer(answer)


@pytest.mark.parametrize("extra, expected", [
    (b"X-Long: " + b"a" * 100_000 + b"\r\n", 431),  # one line past max_header_line_bytes (and the total)
    (b"X-Long: " + b"a" * 9_000 + b"\r\n", 431),  # one line past max_header_line_bytes, the total under its limit
    (b"".join(b"X-Part-%d: %s\r\n" % (i, b"b" * 4000) for i in range(10)), 431),  # lines under the limit, the total past it
    (b"".join(b"X-N-%d: 1\r\n" % i for i in range(101)), 431),  # one header more than max_headers
    (b"".join(b"X-N-%d: 1\r\n" % i for i in range(10_000)), 431),
])
def test_a_request_head_past_a_limit_is_answered_431_and_nothing_leaves(sim, database_url, tmp_path, extra, expected):
    sim.platform.reset()
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path)) as proxy:
        assert header_answer(proxy, HEAD + b"Authorization: Bearer " + KEY.encode() + b"\r\n" + extra) == (
            expected, "request_header_fields_too_large", "invalid_request_error")
        assert sim.platform.call_log == []
        still_serving(proxy)
        assert len(proxy.rows()) == 1


def test_a_chunked_bodys_trailers_past_the_head_limit_end_the_connection(sim, database_url, tmp_path):
    sim.platform.reset()
    body = json.dumps(BODY).encode()
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path)) as proxy:
        [connection] = connect(proxy.port, 1)
        connection.sendall(HEAD + b"Authorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Trailer: ")  # then a trailer line that never ends
        assert answers_when_closed([connection], trickle=b"t" * 4096) == [b""]
        still_serving(proxy)
        rows = proxy.rows()
    assert sorted(row.status for row in rows) == ["completed", "failed"]  # the cut call had left: its row says so


def test_a_request_target_past_the_line_limit_is_answered_414(sim, database_url, tmp_path):
    sim.platform.reset()
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path)) as proxy:
        head = b"POST /v1/chat/completions?x=" + b"q" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        assert header_answer(proxy, head) == (414, "request_uri_too_long", "invalid_request_error")
        assert sim.platform.call_log == [] and proxy.rows() == []


def test_a_head_within_the_limits_is_served(sim, database_url, tmp_path):
    sim.platform.reset()
    headers = {**AUTH, **{f"X-Within-{i}": "c" * 200 for i in range(90)}}  # 90 headers, about 20 KB
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path)) as proxy:
        with httpx2.Client() as client:
            assert client.post(proxy.base_url + "/chat/completions", json=BODY, headers=headers).status_code == 200
        assert len(sim.platform.call_log) == 1 and len(proxy.rows()) == 1
