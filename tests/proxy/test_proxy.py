"""The recording proxy with real clients (curl, the Node and Python openai SDKs) against the simulator, and its faults."""

from __future__ import annotations

import asyncio
import io
import base64
import json
import logging
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import httpx2
import openai
import pytest
from sqlalchemy import inspect, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import proxy_parts
from proxy_parts import ProxyUnderTest, ledger_rows, proxy_settings, raw_exchange
from factories import LoopbackServer, wait_for
from ledger.keys import fingerprint, load_secret
from ledger.config.proxy import ProxyKey
from ledger.record.recorder import Recorder
from ledger.sim.platform import fingerprint as sim_fingerprint
from ledger.sink.writer import replay_journal
from ledger.store.engine import Ledger

KEY = "sk-test-proxy-0000000001"
MODEL = "gemini-3.1-pro"
MESSAGES = [{"role": "user", "content": "Say hello"}]
HERE = Path(__file__).resolve().parent
# What a call through the proxy and the same call in-process must both have in the ledger.
SAME = ("completion_id", "model_requested", "model_reported", "stream", "reasoning_effort", "include_thoughts", "tools",
        "attempt", "status", "http_status", "error_code", "error_type", "finish_reason", "refunded", "prompt_tokens",
        "completion_tokens", "reasoning_tokens", "audio_tokens", "text_tokens", "total_tokens", "credits_charged",
        "credits_expected", "pricing_class", "rate_card", "key_fingerprint", "key_last4", "project", "end_user", "tags",
        "anomalies")


def facts(row) -> dict:
    return {name: getattr(row, name) for name in SAME}


def charged(sim, index: int = -1):
    call = sim.platform.call_log[index]
    return call.id, call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.reasoning_tokens, call.credits_charged


def figures(row):
    return row.completion_id, row.prompt_tokens, row.completion_tokens, row.reasoning_tokens, row.credits_charged


@pytest.fixture
def proxy(sim, database_url, tmp_path):
    with ProxyUnderTest(sim.base_url, proxy_settings(database_url, tmp_path)) as running:
        yield running


# ---------------------------------------------------------------- real clients


def _sdk_call(base_url: str, http_client, stream: bool, is_async: bool) -> str:
    headers = {"X-Ledger-Project": "search", "X-Ledger-User": "u-7", "X-Ledger-Tags": "feature=summary"}
    if is_async:
        async def run() -> str:
            async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, http_client=http_client, max_retries=0) as client:
                answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream, extra_headers=headers)
                return [chunk async for chunk in answer][0].id if stream else answer.id

        return asyncio.run(run())
    with openai.OpenAI(base_url=base_url, api_key=KEY, http_client=http_client, max_retries=0) as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream, extra_headers=headers)
        return list(answer)[0].id if stream else answer.id


def test_the_python_sdk_through_the_proxy_makes_the_rows_it_makes_in_process(sim, proxy, database_url, tmp_path):
    recorder = Recorder(settings=proxy_settings(database_url, tmp_path / "in-process"))
    seen = []
    try:
        for is_async in (False, True):
            for stream in (False, True):
                sim.platform.reset()  # the same answer, to the byte, for both
                in_process = _sdk_call(sim.base_url, recorder.async_client() if is_async else recorder.client(), stream, is_async)
                expected = charged(sim)
                sim.platform.reset()
                proxied = _sdk_call(proxy.base_url, None, stream, is_async)
                assert proxied == in_process == expected[0]
                seen.append(expected)
        assert recorder.flush(30)
    finally:
        recorder.close()
    rows = proxy.rows()
    assert len(rows) == 8
    for (in_process, proxied), expected in zip(zip(rows[::2], rows[1::2]), seen):
        assert facts(proxied) == facts(in_process)
        assert figures(proxied) == expected
        assert (proxied.project, proxied.end_user, proxied.tags, proxied.key_last4) == ("search", "u-7", '{"feature": "summary"}', "0001")
    assert [row.stream for row in rows[1::2]] == [False, True, False, True]


def _curl(url: str, body: bytes, folder: Path, *flags: str) -> tuple[bytes, list[tuple[str, str]]]:
    headers = folder / "headers.txt"
    answer = subprocess.run(["curl", "-sS", "-N", *flags, "-D", str(headers), "-X", "POST", url + "/chat/completions",
                             "-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json",
                             "--data-binary", "@-"], input=body, capture_output=True, check=True, timeout=30)
    lines = headers.read_bytes().decode("latin-1").split("\r\n")[1:]
    listed = sorted((name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines if line)
                    if name.lower() != "date")
    return answer.stdout, listed


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("stream", [False, True])
def test_curl_gets_the_simulators_own_bytes_and_each_call_is_a_row(sim, proxy, tmp_path, stream):
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": stream}).encode()
    sim.platform.reset()
    direct = _curl(sim.base_url, body, tmp_path)
    sim.platform.reset()
    proxied = _curl(proxy.base_url, body, tmp_path)
    expected = charged(sim)
    assert proxied == direct
    assert (b"data: [DONE]" in proxied[0]) is stream and expected[0].encode() in proxied[0]
    [row] = proxy.rows()
    assert figures(row) == expected and row.stream is stream and row.status == "completed"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("framing", [(), ("-H", "Transfer-Encoding: chunked")])
def test_curl_asking_for_http2_on_an_http_url_is_served_as_http11(sim, proxy, tmp_path, framing):
    # curl --http2 on http:// sends "Connection: Upgrade, HTTP2-Settings" and "Upgrade: h2c": the proxy ignores the upgrade
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": False}).encode()
    sim.platform.reset()
    direct = _curl(sim.base_url, body, tmp_path, *framing)
    sim.platform.reset()
    proxied = _curl(proxy.base_url, body, tmp_path, "--http2", *framing)
    assert proxied == direct and charged(sim)[0].encode() in proxied[0]
    [row] = proxy.rows()
    assert figures(row) == charged(sim) and row.status == "completed"


def _node_openai() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the official Node openai client cannot run here (CI has node)")
    if not (HERE / "node_modules" / "openai" / "package.json").exists():
        subprocess.run(["npm", "install", "--prefix", str(HERE), "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
                        "--loglevel=error", "openai@7"], check=True, timeout=600, capture_output=True)


def _node(*args: str) -> dict:
    done = subprocess.run(["node", str(HERE / "node_client.mjs"), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_node_openai_package_through_the_proxy(sim, proxy):
    _node_openai()
    sim.platform.reset()
    seen = _node("sdk", proxy.base_url, KEY)
    assert len(sim.platform.call_log) == 2
    rows = proxy.rows()
    assert [figures(row) for row in rows] == [charged(sim, 0), charged(sim, 1)]
    assert [row.stream for row in rows] == [False, True]
    for answer, row in zip((seen["non_stream"], seen["stream"]), rows):
        assert answer["id"] == row.completion_id and answer["content"]
        assert (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]) == (row.prompt_tokens, row.completion_tokens)
    raw = _node("raw", proxy.base_url, KEY, sim.root_url)
    for kind in ("non_stream", "stream"):
        direct, proxied = raw[kind]["direct"], raw[kind]["proxied"]
        assert proxied["status"] == direct["status"] == 200
        assert base64.b64decode(proxied["body"]) == base64.b64decode(direct["body"])
    assert len(proxy.rows()) == 4


# ---------------------------------------------------------------- what goes upstream


class EchoApp:
    """An upstream that keeps what it received and answers one fixed chat completion."""

    ANSWER = (b'{"id":"chatcmpl-echo","object":"chat.completion","model":"gemini-3.1-pro-preview","choices":[{"index":0,'
              b'"finish_reason":"stop","message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":10,'
              b'"completion_tokens":20,"total_tokens":30},"credits_consumed":0.02}')

    def __init__(self) -> None:
        self.seen: list[tuple[list[tuple[bytes, bytes]], bytes]] = []

    def app(self):
        async def chat(request: Request) -> Response:
            self.seen.append((list(request.headers.raw), await request.body()))
            return Response(self.ANSWER, media_type="application/json")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture
def echo():
    state = EchoApp()
    with LoopbackServer(state.app()) as server:
        state.server = server
        yield state


def test_the_request_goes_upstream_as_sent_less_hop_by_hop_and_attribution_headers(echo, database_url, tmp_path):
    body = b'{"model": "gemini-3.1-pro",   "stream": false, "messages": [{"role": "user", "content": "Say \\u00e9"}]}'
    large = body.replace(b"Say", b"Say" + b" hello" * 50_000)
    with ProxyUnderTest(echo.server.base_url, proxy_settings(database_url, tmp_path)) as proxy:
        with httpx2.Client() as client:
            answer = client.post(proxy.base_url + "/chat/completions", content=body, headers={
                "Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "Connection": "keep-alive, X-Hop",
                "X-Hop": "1", "X-Ledger-Project": "search", "X-Ledger-Tags": "team=ml", "X-Custom": "kept"})

            def pieces():  # larger than what the server reads at once: it reaches the proxy in pieces
                yield large[:20]
                yield large[20:]

            streamed = client.post(proxy.base_url + "/chat/completions", content=pieces(), headers={"Authorization": f"Bearer {KEY}"})
        rows = proxy.rows()
    assert answer.status_code == streamed.status_code == 200 and answer.content == streamed.content == EchoApp.ANSWER
    (headers, received), (streamed_headers, streamed_received) = echo.seen
    assert received == body and streamed_received == large  # "stream": false and the spacing survive: never re-serialised
    names = {name for name, _ in headers}
    assert {b"x-hop", b"x-ledger-project", b"x-ledger-tags", b"connection"}.isdisjoint(names)
    assert (b"x-custom", b"kept") in headers and (b"authorization", f"Bearer {KEY}".encode()) in headers
    assert (b"host", f"127.0.0.1:{echo.server.port}".encode()) in headers
    assert (b"transfer-encoding", b"chunked") in streamed_headers  # a body that came in pieces went on in pieces
    assert [(row.project, row.tags, row.model_requested, row.stream, row.credits_charged) for row in rows] == [
        ("search", '{"team": "ml"}', "gemini-3.1-pro", False, Decimal("0.02")), (None, None, "gemini-3.1-pro", False, Decimal("0.02"))]


def test_a_proxy_key_stands_for_the_upstream_key_and_its_project_and_an_unknown_key_gets_401(sim, database_url, tmp_path):
    upstream_key, team_key = "sk-upstream-real-0000000009", "sk-team-search-00000000042"
    settings = proxy_settings(database_url, tmp_path, keys=(
        ProxyKey("search-team", "TEST_UPSTREAM_KEY", fingerprint=fingerprint(team_key, load_secret(tmp_path / "secret")),
                 project="search"),))
    sim.platform.reset()
    with ProxyUnderTest(sim.base_url, settings, environ={"TEST_UPSTREAM_KEY": upstream_key}) as proxy:
        with openai.OpenAI(base_url=proxy.base_url, api_key=team_key, max_retries=0) as client:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False,
                                           extra_headers={"X-Ledger-Project": "elsewhere", "X-Ledger-User": "u-1"})
        for key in (KEY, None):
            with httpx2.Client() as plain:
                refused = plain.post(proxy.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
            assert refused.status_code == 401
            assert refused.json() == {"error": {"code": "invalid_api_key", "type": "authentication_error",
                                                "message": refused.json()["error"]["message"]}}
        rows = proxy.rows()
    assert len(sim.platform.call_log) == 1 and sim.platform.call_log[0].key_fingerprint == sim_fingerprint(upstream_key)
    [row] = rows
    assert (row.project, row.end_user, row.key_last4) == ("search", "u-1", upstream_key[-4:])
    assert row.key_fingerprint == fingerprint(upstream_key, load_secret(tmp_path / "secret"))


def test_a_clients_route_claims_and_its_team_key_in_any_header_never_go_upstream(echo, database_url, tmp_path):
    team_key, upstream_key = "sk-team-search-00000000042", "sk-upstream-real-0000000009"
    settings = proxy_settings(database_url, tmp_path, keys=(
        ProxyKey("search-team", "TEST_UPSTREAM_KEY", fingerprint=fingerprint(team_key, load_secret(tmp_path / "secret"))),))
    claims = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Host": "admin.internal", "X-Forwarded-Proto": "https",
              "Forwarded": "for=10.9.9.9", "X-Real-IP": "10.9.9.9", "X-Original-URL": "/v1/admin", "X-Rewrite-URL": "/v1/admin",
              "X-HTTP-Method-Override": "DELETE", "api-key": team_key, "X-Api-Key": team_key, "X-Note": f"key {team_key}"}
    with ProxyUnderTest(echo.server.base_url, settings, environ={"TEST_UPSTREAM_KEY": upstream_key}) as proxy:
        with httpx2.Client() as client:
            answer = client.post(proxy.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                                 headers={"Authorization": f"Bearer {team_key}", "X-Custom": "kept", **claims})
            in_url = client.post(proxy.base_url + f"/chat/completions?api_key={team_key}",
                                 json={"model": MODEL, "messages": MESSAGES}, headers={"Authorization": f"Bearer {team_key}"})
    headers = echo.seen[0][0]
    assert sorted({name.decode() for name, _ in headers} & {name.lower() for name in claims}) == []
    assert team_key.encode() not in b"".join(name + value for name, value in headers)
    assert (b"x-custom", b"kept") in headers and (b"authorization", f"Bearer {upstream_key}".encode()) in headers
    assert answer.status_code == 200 and len(echo.seen) == 1
    assert (in_url.status_code, in_url.json()["error"]["code"]) == (400, "invalid_request")


def test_a_request_without_a_host_or_with_two_is_400_and_nothing_leaves(sim, proxy):
    sim.platform.reset()
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": False}).encode()
    head = f"Content-Type: application/json\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    for request in (f"POST /v1/chat/completions HTTP/1.1\r\n{head}\r\n",
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n{head}\r\n",
                    f"POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nHost: localhost\r\n{head}\r\n"):
        status, _, rest = raw_exchange(proxy.port, request.encode() + body).partition(b"\r\n")
        assert status == b"HTTP/1.1 400 Bad Request", request
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["message"].startswith("An HTTP/1.1 request names exactly one Host")
    assert sim.platform.call_log == [] and proxy.rows() == []
    served = raw_exchange(proxy.port, f"POST /v1/chat/completions HTTP/1.0\r\n{head}\r\n".encode() + body)
    assert served.startswith(b"HTTP/1.1 200 OK") and len(proxy.rows()) == 1  # HTTP/1.0 needs no Host


class KeyEchoApp:
    """An upstream that answers any path with 401 and the key it was sent in the message (as real ones do)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def app(self):
        async def any_path(request: Request) -> Response:
            self.seen.append(str(request.url))
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            return Response(json.dumps({"error": {"code": "invalid_api_key", "type": "authentication_error",
                                                  "message": f"Incorrect API key provided: {key}"}}), 401,
                            media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", any_path, methods=["GET", "POST"])])


@pytest.fixture
def key_echo():
    state = KeyEchoApp()
    with LoopbackServer(state.app()) as server:
        state.server = server
        yield state


def test_a_team_key_percent_encoded_in_the_query_or_the_path_is_refused_as_the_plain_one(key_echo, database_url, tmp_path):
    team_key, upstream_key = "sk-team-search-00000000042", "sk-upstream-real-0000000009"
    settings = proxy_settings(database_url, tmp_path, keys=(
        ProxyKey("search-team", "TEST_UPSTREAM_KEY", fingerprint=fingerprint(team_key, load_secret(tmp_path / "secret"))),))
    encoded = [team_key.replace("-", "%2D"), team_key.replace("-", "%2d"), "sk%2dteam-search%2D00000000042",
               "".join(f"%{ord(c):02x}" for c in team_key)]
    targets = [f"/chat/completions?api_key={form}" for form in encoded] + [f"/chat/completions?x=1&k={team_key}"]
    targets += [f"/{form}/chat/completions" for form in (team_key, *encoded)]
    with ProxyUnderTest(key_echo.server.base_url, settings, environ={"TEST_UPSTREAM_KEY": upstream_key}) as proxy:
        with httpx2.Client() as client:
            answers = {target: client.post(proxy.base_url + target, json={"model": MODEL, "messages": MESSAGES},
                                           headers={"Authorization": f"Bearer {team_key}"}) for target in targets}
    assert {target: answer.status_code for target, answer in answers.items()} == {target: 400 for target in targets}
    assert key_echo.seen == []


def test_a_digitless_upstream_key_the_upstream_echoes_is_in_no_answer_journal_row_or_log(
        key_echo, database_url, tmp_path, caplog, monkeypatch):
    team_key, upstream_key = "sk-team-search-00000000042", "sk-upstreamKeyWithoutAnyDigit"
    # The ledger's database is down while the call is made: the call waits in the journal, to be read there.
    settings = proxy_settings("postgresql://nobody@127.0.0.1:9/none", tmp_path, keys=(
        ProxyKey("search-team", "TEST_UPSTREAM_KEY", fingerprint=fingerprint(team_key, load_secret(tmp_path / "secret"))),))
    monkeypatch.setattr(proxy_parts, "Ledger", lambda url: io.StringIO())  # (no schema to make first: a thing to close)
    caplog.set_level(logging.INFO)
    with ProxyUnderTest(key_echo.server.base_url, settings, environ={"TEST_UPSTREAM_KEY": upstream_key}) as proxy:
        with openai.OpenAI(base_url=proxy.base_url, api_key=team_key, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as refused:
                client.chat.completions.create(model=MODEL, messages=MESSAGES)
        logging.getLogger("ledger.proxy").error("the upstream was sent %s", upstream_key)
        proxy.recorder.flush(0.5)
        held = b"".join(path.read_bytes() for path in (tmp_path / "journal").rglob("*") if path.is_file())
    assert len(key_echo.seen) == 1 and "Incorrect API key provided" in refused.value.response.text
    assert upstream_key not in refused.value.response.text  # the team's client does not hold the upstream key
    assert b"Incorrect API key provided" in held and upstream_key.encode() not in held
    assert replay_journal(database_url, tmp_path / "journal" / "proxy-1").inserted == 1
    with Ledger(database_url) as ledger, ledger.engine.connect() as connection:
        texts = "\n".join(str(value) for table in inspect(connection).get_table_names()
                          for row in connection.execute(text(f"SELECT * FROM {table}")) for value in row)
    assert upstream_key[-4:] in texts and upstream_key not in texts
    assert [r.getMessage() for r in caplog.records if "the upstream was sent" in r.getMessage()] == [
        "the upstream was sent sk-[redacted]"]
    assert all(upstream_key not in r.getMessage() for r in caplog.records)
