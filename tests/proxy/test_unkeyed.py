"""With proxy keys, the upstream key never goes back to a client: an upstream that echoes it every way it can, and what clients get."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy_parts import ProxyUnderTest, proxy_settings
from factories import LoopbackServer
from ledger.keys import fingerprint, load_secret
from ledger.proxy.unkeyed import KeyMask
from ledger.config.proxy import ProxyKey

UPSTREAM_KEY = "sk-upstream-Real-0000000009"
TEAM_KEY = "sk-team-search-00000000042"
MODEL = "gemini-3.1-pro"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "stream": False}


def echoing_upstream() -> Starlette:
    """Every answer carries the key it was called with: in bodies (whole, split, upper case, gzipped) and headers."""

    async def chat(request: Request) -> Response:
        key = request.headers["authorization"].partition(" ")[2]
        how = request.headers.get("x-echo", "401")
        message = json.dumps({"error": {"code": "invalid_api_key", "type": "authentication_error",
                                        "message": f"Incorrect API key provided: {key}. Bearer {key}"}}).encode()
        if how == "401":
            return Response(message, 401, media_type="application/json",
                            headers={"WWW-Authenticate": f'Bearer error="invalid_token", key="{key}"'})
        if how == "upper":
            return Response(message.replace(key.encode(), key.upper().encode()), 500, media_type="application/json")
        if how == "gzip":  # coded though the proxy asked for identity
            return Response(gzip.compress(message), 401, media_type="application/json", headers={"Content-Encoding": "gzip"})
        if how == "headers":
            return Response(b"{}", 200, media_type="application/json",
                            headers={"X-Debug": f"key={key}", "Set-Cookie": f"k={key}; Path=/", f"X-{key}": "1"})

        async def events():  # the key cut at every offset, each piece its own chunk
            for cut in range(1, len(key)):
                yield f'data: {{"id":"chatcmpl-x","choices":[],"note":"{key[:cut]}'.encode()
                await asyncio.sleep(0.002)
                yield f'{key[cut:]}"}}\n\n'.encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def credits(request: Request) -> Response:
        key = request.headers["authorization"].partition(" ")[2]
        return Response(f"internal error for {key}".encode(), 500, media_type="text/plain")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/credits", credits)])


@pytest.fixture
def proxy(database_url, tmp_path):
    settings = proxy_settings(database_url, tmp_path, keys=(
        ProxyKey("search-team", "TEST_UPSTREAM_KEY", fingerprint=fingerprint(TEAM_KEY, load_secret(tmp_path / "secret"))),))
    with LoopbackServer(echoing_upstream()) as upstream:
        with ProxyUnderTest(upstream.base_url, settings, environ={"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as running:
            yield running


def everything_received(proxy: ProxyUnderTest, method: str, path: str, **request) -> tuple[int, bytes]:
    """Status, and the head and body bytes exactly as they reached the client."""
    with httpx2.Client() as client:
        with client.stream(method, proxy.base_url + path, headers={"Authorization": f"Bearer {TEAM_KEY}",
                                                                   **request.pop("headers", {})}, **request) as answer:
            body = b"".join(answer.iter_raw())
            head = b"".join(name + b": " + value + b"\r\n" for name, value in answer.headers.raw)
            assert "content-length" not in answer.headers or int(answer.headers["content-length"]) == len(body)
            return answer.status_code, head + b"\r\n" + body


@pytest.mark.parametrize("how, status", [("401", 401), ("upper", 500), ("gzip", 401), ("headers", 200), ("stream", 200)])
def test_an_upstream_that_echoes_its_key_never_gets_it_to_the_client(proxy, how, status):
    got, received = everything_received(proxy, "POST", "/chat/completions", json=BODY, headers={"X-Echo": how})
    assert got == status and UPSTREAM_KEY.lower().encode() not in received.lower()
    assert b"sk-redacted" in received
    body = received.partition(b"\r\n\r\n")[2]
    if how == "stream":
        events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
        assert len(events) == len(UPSTREAM_KEY) - 1 and all(json.loads(event)["note"] == "sk-redacted****************"
                                                            for event in events)
    elif how != "headers":
        assert json.loads(body)["error"]["code"] == "invalid_api_key"


def test_the_credits_500_and_the_openai_sdks_error_carry_no_upstream_key(proxy):
    got, received = everything_received(proxy, "GET", "/credits")
    assert got == 500 and UPSTREAM_KEY.encode() not in received and received.endswith(b"internal error for sk-redacted****************")
    with openai.OpenAI(base_url=proxy.base_url, api_key=TEAM_KEY, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model=MODEL, messages=BODY["messages"], stream=False)
    assert UPSTREAM_KEY not in str(refused.value) and UPSTREAM_KEY not in refused.value.response.text
    assert "sk-redacted" in refused.value.message


def test_a_masked_body_is_the_same_at_every_cut():
    mask = KeyMask([UPSTREAM_KEY.encode(), b"sk-other-key-1234567890"])
    text = b"x sk-a " + UPSTREAM_KEY.upper().encode() + b" s sk-other-key-1234567890 sk-upstream-Real-000000000 end s"
    expected = mask.whole(text)
    assert expected == (b"x sk-a sk-redacted**************** s sk-redacted************ "
                        b"sk-upstream-Real-000000000 end s")
    for cut in range(len(text) + 1):
        for second in range(cut, len(text) + 1):
            body = mask.body()
            assert body.feed(text[:cut]) + body.feed(text[cut:second]) + body.feed(text[second:]) + body.end() == expected
