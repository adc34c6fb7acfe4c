"""The simulator as its users see it: the openai SDK and raw HTTP on loopback, and the core in-process."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

import httpx2
import pytest
from hypothesis import given, strategies as st
from openai import APIConnectionError, AsyncOpenAI, OpenAI

from ledger.sim.server import (
    FAULTS, AccountConfig, KeySettings, Platform, SimulatorConfig, SimulatorServer, Usage, dumps,
)

MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")
HELLO = [{"role": "user", "content": "Describe this video in one sentence, please."}]
LONG = [{"role": "user", "content": "Describe every frame of this video. " * 120}]  # about 1,000 tokens


def expected_charge(prompt: int, completion: int, rate_in: int = 160, rate_out: int = 960) -> Decimal:
    exact = (Decimal(prompt) * rate_in + Decimal(completion) * rate_out) / MILLION
    return exact.quantize(CENT, rounding=ROUND_HALF_UP)


def body(**extra):
    return {"model": "gemini-3.1-pro", "messages": HELLO, **extra}


def sse_events(raw: bytes) -> list[str]:
    return [line[len("data: "):] for line in raw.decode().split("\n\n") if line.startswith("data: ")]


def chunks_of(raw: bytes) -> list[dict]:
    return [json.loads(data, parse_float=Decimal) for data in sse_events(raw) if data != "[DONE]"]


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(SimulatorConfig(seed=7)) as running:
        yield running


@pytest.fixture
def sim(server):
    server.platform.reset()
    yield server
    server.platform.reset()


@pytest.fixture
def key() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


@pytest.fixture
def http(sim, key):
    with httpx2.Client(base_url=sim.root_url, headers={"authorization": f"Bearer {key}"}, timeout=10) as client:
        yield client


@pytest.fixture
def client(sim, key):
    with OpenAI(api_key=key, base_url=sim.base_url, max_retries=0) as sdk:
        yield sdk


def post(http, payload, **headers) -> httpx2.Response:
    return http.post("/v1/chat/completions", json=payload, headers=headers)


def credits_of(http) -> dict:
    response = http.get("/v1/credits")
    assert response.status_code == 200, response.text
    return response.json()["data"]


# --- responses ---------------------------------------------------------------------


def test_non_stream_response_parses_with_the_sdk_and_charges_the_rounded_formula(client):
    raw = client.chat.completions.with_raw_response.create(model="gemini-3.1-pro", messages=HELLO, stream=False)
    completion = raw.parse()
    assert completion.model == "gemini-3.1-pro-preview"
    assert re.fullmatch(r"chatcmpl-\d{23}[A-Za-z0-9]{8}", completion.id)
    usage = completion.usage
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens + reasoning
    assert completion.choices[0].message.content.count(" ") == usage.completion_tokens
    document = json.loads(raw.text, parse_float=Decimal)
    charged = expected_charge(usage.prompt_tokens, usage.completion_tokens)
    assert document["credits_consumed"] == charged
    assert f'"credits_consumed":{charged}' in raw.text  # an exact literal, two decimals


def test_stream_parses_with_the_sdk_with_usage_and_charge_on_the_final_chunk(client):
    with client.chat.completions.create(model="gemini-3.1-pro", messages=HELLO, stream=True) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thoughts = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert content.count(" ") == final.usage.completion_tokens
    assert thoughts  # include_thoughts defaults to true
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert Decimal(str(final.model_extra["credits_consumed"])) == expected_charge(
        final.usage.prompt_tokens, final.usage.completion_tokens)


def test_async_sdk_streams_too(sim, key):
    async def run() -> list:
        async with AsyncOpenAI(api_key=key, base_url=sim.base_url, max_retries=0) as sdk:
            stream = await sdk.chat.completions.create(model="gemini-2.5-pro", messages=HELLO, stream=True)
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert chunks[-1].usage.prompt_tokens > 0 and chunks[-1].model == "gemini-2.5-pro"


@pytest.mark.parametrize("extra", [{}, {"stream_options": {"include_usage": True}}, {"stream": None}])
def test_stream_is_the_default_and_always_ends_with_usage_then_done(http, extra):
    response = post(http, body(**extra))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2], parse_float=Decimal)
    assert final["choices"] == []
    usage = final["usage"]
    assert final["credits_consumed"] == expected_charge(usage["prompt_tokens"], usage["completion_tokens"])


def test_max_tokens_limits_the_output_and_finishes_with_length(http):
    chunks = chunks_of(post(http, body(max_tokens=7)).content)
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"


def test_high_reasoning_effort_reports_more_reasoning_tokens_than_low(http):
    def reasoning(effort: str) -> list[tuple[int, int]]:
        found = []
        for _ in range(5):
            usage = post(http, body(stream=False, reasoning_effort=effort)).json()["usage"]
            found.append((usage["completion_tokens"], usage["completion_tokens_details"]["reasoning_tokens"]))
        return found

    assert all(r >= 2 * c for c, r in reasoning("high"))
    assert all(r <= c // 2 for c, r in reasoning("low"))


def test_prompt_tokens_grow_with_text_and_media_parts(http):
    def prompt(content) -> int:
        return post(http, body(stream=False, messages=[{"role": "user", "content": content}])).json()["usage"][
            "prompt_tokens"]

    text = "x" * 400
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert prompt(text) == 4 + 100
    assert prompt([{"type": "text", "text": text}, image]) == 4 + 100 + 258


def test_decimal_amounts_are_written_as_exact_json_literals():
    assert dumps({"a": Decimal("0.25"), "b": [Decimal("0.10"), Decimal("1E+2")]}) == b'{"a":0.25,"b":[0.10,100]}'
    assert dumps({"note": "\u0001decimal:1"}) == b'{"note":"\\u0001decimal:1"}'  # a string stays a string
    assert b"0.25000000000000001" not in dumps({"a": Decimal("0.25")})


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_every_finite_decimal_survives_the_json_round_trip(amount):
    assert json.loads(dumps({"amount": amount}), parse_float=Decimal)["amount"] == amount


# --- balances ----------------------------------------------------------------------


def test_balances_follow_the_exact_charges_within_one_credit(http, sim, key):
    charged = Decimal(0)
    for index in range(12):
        headers = {"X-Sim-Completion-Tokens": str(300 + 97 * index)}
        if index % 2:
            charged += json.loads(post(http, body(stream=False), **headers).content, parse_float=Decimal)[
                "credits_consumed"]
        else:
            charged += chunks_of(post(http, body(), **headers).content)[-1]["credits_consumed"]
    figures = credits_of(http)
    assert figures["total_purchased"] == 10_000
    assert 0 <= charged - figures["total_consumed"] < 1  # floor of the exact figure
    assert figures["balance"] == figures["total_purchased"] - figures["total_consumed"]
    state = http.get("/sim/state").json()["accounts"][sim.platform.account_for(key)]
    assert Decimal(state["consumed_exact"]) == charged and state["calls"] == 12


def test_top_up_raises_total_purchased_and_balance(http, key):
    before = credits_of(http)
    response = http.post("/sim/topup", json={"api_key": key, "credits": 500})
    assert response.status_code == 200 and response.json()["total_purchased"] == before["total_purchased"] + 500
    after = credits_of(http)
    assert (after["total_purchased"], after["balance"]) == (before["total_purchased"] + 500, before["balance"] + 500)


def test_ten_thousand_calls_in_process_keep_the_platform_invariant():
    platform = Platform(SimulatorConfig(seed=1, charge_precision=Decimal("0.0001"), starting_balance=100_000))
    charged = Decimal(0)
    for index in range(10_000):
        answer = platform.complete(body(stream=bool(index % 2)), f"sk-{index % 3}", {})
        assert answer.status == 200
        charged += answer.credits_charged
        assert answer.credits_charged == answer.credits_charged.quantize(Decimal("0.0001"))
    state = platform.state()
    assert sum(account["consumed_exact"] for account in state.values()) == charged
    for account in state.values():
        assert 0 <= account["consumed_exact"] - account["total_consumed"] < 1
        assert account["balance"] == account["total_purchased"] - account["total_consumed"]


# --- errors ------------------------------------------------------------------------

ERROR_TABLE = [
    (400, "invalid_request", "invalid_request_error"),
    (401, "invalid_api_key", "authentication_error"),
    (402, "insufficient_credits", "billing_error"),
    (403, "ip_not_allowed", "permission_error"),
    (404, "model_not_found", "invalid_request_error"),
    (404, "task_not_found", "invalid_request_error"),
    (429, "rate_limit_exceeded", "rate_limit_error"),
    (429, "spend_limit_exceeded", "billing_error"),
    (500, "internal_error", "api_error"),
    (503, "upstream_error", "upstream_error"),
]


@pytest.mark.parametrize("status,code,kind", ERROR_TABLE)
def test_every_error_of_the_table_can_be_forced(http, status, code, kind):
    response = post(http, body(), **{"X-Sim-Error": code})
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, kind) and error["message"]


@pytest.mark.parametrize("payload,headers,status,code,message", [
    ({"messages": HELLO}, {}, 400, "invalid_request", "'model' is required."),
    ({"model": "gemini-3.1-pro", "messages": []}, {}, 400, "invalid_request", None),
    ({"model": "gemini-3.1-pro"}, {}, 400, "invalid_request", None),
    (body(tools=[{"type": "function", "function": {"name": "calculator"}}]), {}, 400, "invalid_request", None),
    (body(reasoning_effort="medium"), {}, 400, "invalid_request", None),
    (body(model="gemini-9"), {}, 404, "model_not_found", None),
    (body(model="gpt-5-4"), {}, 404, "model_not_found", None),  # served on /v1/responses
    (body(), {"authorization": "Bearer pk-not-a-key"}, 401, "invalid_api_key", None),
    (body(), {"authorization": ""}, 401, "invalid_api_key", None),
])
def test_natural_errors_have_the_table_status_and_code(http, payload, headers, status, code, message):
    response = post(http, payload, **headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and (message is None or error["message"] == message)


def test_google_search_tool_is_accepted(http):
    tools = [{"type": "function", "function": {"name": "googleSearch"}}]
    assert post(http, body(stream=False, tools=tools)).status_code == 200


def test_unknown_paths_answer_404_in_the_error_format(http):
    response = http.get("/v1/videos")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert http.get("/v1/chat/completions").json()["error"]["code"] == "method_not_allowed"


def test_upstream_error_refunds_the_call(http, sim, key):
    assert post(http, body(), **{"X-Sim-Error": "upstream_error"}).status_code == 503
    state = sim.platform.state()[sim.platform.account_for(key)]
    assert (state["consumed_exact"], state["refunds"]) == (0, 1)


def test_charge_refund_keeps_the_charge_that_upstream_error_refunds():
    platform = Platform()
    refunded = platform.complete(body(messages=LONG), "sk-a", {"X-Sim-Error": "upstream_error"})
    kept = platform.complete(body(messages=LONG), "sk-a", {"X-Sim-Fault": "charge_refund"})
    state = platform.state()[platform.account_for("sk-a")]
    assert refunded.status == kept.status == 503
    assert (state["refunds"], state["calls"]) == (1, 1)
    assert state["consumed_exact"] == kept.credits_charged == kept.payload["credits_consumed"] > 0


def test_concurrent_calls_are_all_booked():
    platform = Platform(SimulatorConfig(seed=2))
    charges: list[Decimal] = []

    def worker(index: int) -> None:
        for _ in range(200):
            charges.append(platform.complete(body(stream=False), f"sk-{index % 2}", {}).credits_charged)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = platform.state().values()
    assert sum(account["calls"] for account in state) == len(charges) == 1600
    assert sum(account["consumed_exact"] for account in state) == sum(charges)


def test_configured_accounts_share_a_balance_and_enforce_key_settings():
    accounts = {
        "studio": AccountConfig(keys=["sk-one", "sk-two", KeySettings("sk-off", disabled=True)], balance=3),
        "capped": AccountConfig(keys=[KeySettings("sk-cap", total_limit=1)]),
        "fenced": AccountConfig(keys=[KeySettings("sk-far", ip_allowlist=["10.0.0.0/8"]),
                                      KeySettings("sk-near", ip_allowlist=["127.0.0.1"])]),
        "busy": AccountConfig(keys=[KeySettings("sk-busy", rate_limit_per_second=1)]),
    }
    big = {"X-Sim-Completion-Tokens": "2000"}  # 1.92 credits and a little
    with SimulatorServer(SimulatorConfig(accounts=accounts)) as running, httpx2.Client(timeout=10) as http:
        def call(api_key: str) -> httpx2.Response:
            return http.post(running.base_url + "/chat/completions", json=body(stream=False),
                             headers={"authorization": f"Bearer {api_key}", **big})

        def code(api_key: str) -> str | None:
            response = call(api_key)
            return None if response.status_code == 200 else response.json()["error"]["code"]

        assert [code("sk-one"), code("sk-two")] == [None, None]
        assert code("sk-one") == "insufficient_credits"  # 3 credits bought, about 3.9 spent
        credits = http.get(running.base_url + "/credits", headers={"authorization": "Bearer sk-two"}).json()["data"]
        assert credits["total_consumed"] == 3 and credits["balance"] == 0
        assert code("sk-off") == "invalid_api_key" and code("sk-stranger") == "invalid_api_key"
        assert [code("sk-cap"), code("sk-cap")] == [None, "spend_limit_exceeded"]
        assert [code("sk-far"), code("sk-near")] == ["ip_not_allowed", None]
        assert [code("sk-busy"), code("sk-busy")] == [None, "rate_limit_exceeded"]


def test_hourly_limit_opens_again_after_an_hour():
    now = [1_000_000.0]
    accounts = {"a": AccountConfig(keys=[KeySettings("sk-h", hourly_limit=Decimal("0.5"))])}
    platform = Platform(SimulatorConfig(accounts=accounts), clock=lambda: now[0])
    forced = {"X-Sim-Completion-Tokens": "1000"}
    assert platform.complete(body(), "sk-h", forced).status == 200
    assert platform.complete(body(), "sk-h", forced).payload["error"]["code"] == "spend_limit_exceeded"
    now[0] += 3601
    assert platform.complete(body(), "sk-h", forced).status == 200


# --- faults ------------------------------------------------------------------------


def _usage_and_charge(response: httpx2.Response, stream: bool) -> tuple[dict, Decimal]:
    document = chunks_of(response.content)[-1] if stream else json.loads(response.content, parse_float=Decimal)
    return document["usage"], document["credits_consumed"]


def check_priced(rate_in, rate_out, factor=Decimal(1), bill_reasoning=False):
    def check(response, stream, charged):
        usage, credits = _usage_and_charge(response, stream)
        output = usage["completion_tokens"]
        if bill_reasoning:
            output += usage["completion_tokens_details"]["reasoning_tokens"]
        exact = (Decimal(usage["prompt_tokens"]) * rate_in + Decimal(output) * rate_out) / MILLION * factor
        assert credits == exact.quantize(CENT, rounding=ROUND_HALF_UP) == charged
    return check


def check_omit_usage(response, stream, charged):
    documents = chunks_of(response.content) if stream else [response.json()]
    assert all("usage" not in d and "credits_consumed" not in d for d in documents)
    assert charged > 0


def check_omit_charge(response, stream, charged):
    documents = chunks_of(response.content) if stream else [response.json()]
    assert any("usage" in d for d in documents)
    assert all("credits_consumed" not in d for d in documents)
    assert charged > 0


def check_charge_refund(response, stream, charged):
    assert response.status_code == 503
    document = json.loads(response.content, parse_float=Decimal)
    assert document["error"]["code"] == "upstream_error"
    assert document["credits_consumed"] == expected_charge(document["usage"]["prompt_tokens"], 0) == charged > 0


def check_cut_stream(response, stream, charged):
    raise AssertionError("a cut stream must not arrive whole")


def check_malformed(response, stream, charged):
    if stream:
        bad = [data for data in sse_events(response.content) if data != "[DONE]" and not _is_json(data)]
        good = [json.loads(data) for data in sse_events(response.content) if data != "[DONE]" and _is_json(data)]
        assert len(bad) == 1 and "usage" in good[-1]
    else:
        assert not _is_json(response.text)
    assert charged > 0


def check_unremarkable(response, stream, charged):
    assert _usage_and_charge(response, stream)[1] == charged


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


FAULT_CHECKS = {
    "overcharge": check_priced(160, 960, Decimal("1.5")),
    "bill_reasoning": check_priced(160, 960, bill_reasoning=True),
    "wrong_rate": check_priced(57, 450),
    "omit_usage": check_omit_usage,
    "charge_refund": check_charge_refund,
    "slow_chunks": check_unremarkable,
    "cut_stream": check_cut_stream,
    "malformed_body": check_malformed,
    "unrecorded": check_unremarkable,
    "omit_charge": check_omit_charge,
}


def test_every_fault_has_a_check():
    assert set(FAULT_CHECKS) == FAULTS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("fault", sorted(set(FAULT_CHECKS) - {"cut_stream"}))
def test_fault_forced_by_header_does_what_it_says(http, sim, key, fault, stream):
    http.post("/sim/faults", json={"chunk_latency": 0.01})
    started = time.monotonic()
    response = post(http, body(stream=stream, max_tokens=12, messages=LONG), **{"X-Sim-Fault": fault})
    elapsed = time.monotonic() - started
    (call,) = sim.platform.call_log
    assert call.faults == (fault,)
    FAULT_CHECKS[fault](response, stream, sim.platform.state()[sim.platform.account_for(key)]["consumed_exact"])
    if fault == "slow_chunks":
        assert elapsed >= (0.01 * 4 if stream else 0.01)


def test_cut_stream_breaks_the_connection_before_usage_and_done(client, sim, key):
    with pytest.raises(APIConnectionError):
        with client.chat.completions.create(model="gemini-3.1-pro", messages=HELLO, stream=True,
                                            extra_headers={"X-Sim-Fault": "cut_stream"}) as stream:
            received = [chunk for chunk in stream]
    with httpx2.Client(timeout=10) as http, pytest.raises(httpx2.RemoteProtocolError):
        with http.stream("POST", sim.base_url + "/chat/completions", json=body(),
                         headers={"authorization": f"Bearer {key}", "X-Sim-Fault": "cut_stream"}) as response:
            received = []
            for piece in response.iter_bytes():
                received.append(piece)
    events = sse_events(b"".join(received))
    assert len(events) == 3 and "[DONE]" not in events and all("usage" not in e for e in events)
    with httpx2.Client(timeout=10) as http, pytest.raises(httpx2.RemoteProtocolError):
        http.post(sim.base_url + "/chat/completions", json=body(stream=False),
                  headers={"authorization": f"Bearer {key}", "X-Sim-Fault": "cut_stream"})
    charges = [call.credits_charged for call in sim.platform.call_log]
    assert len(charges) == 3 and all(charges)  # charged normally


def test_fault_headers_are_ignored_when_not_allowed(http, sim):
    assert http.post("/sim/faults", json={"allow_fault_headers": False}).status_code == 200
    response = post(http, body(stream=False), **{"X-Sim-Fault": "overcharge", "X-Sim-Error": "internal_error"})
    assert response.status_code == 200 and sim.platform.call_log[0].faults == ()


def test_faults_apply_globally_at_their_configured_rate_and_deterministically():
    def faulted(seed: int) -> list[tuple[str, ...]]:
        platform = Platform(SimulatorConfig(seed=seed, faults={"overcharge": Decimal("0.3"), "omit_usage": 0.1}))
        for _ in range(400):
            platform.complete(body(stream=False), "sk-a", {})
        return [call.faults for call in platform.call_log]

    first = faulted(5)
    share = sum("overcharge" in faults for faults in first) / len(first)
    assert 0.2 < share < 0.4 and any("omit_usage" in faults for faults in first)
    assert faulted(5) == first and faulted(6) != first


def test_fault_rates_can_be_set_at_runtime(http, sim):
    knobs = http.post("/sim/faults", json={"faults": {"wrong_rate": 1}}).json()
    assert knobs["faults"] == {"wrong_rate": 1}
    FAULT_CHECKS["wrong_rate"](post(http, body(stream=False, messages=LONG)), False,
                               sim.platform.call_log[0].credits_charged)
    assert http.post("/sim/reset").json()["faults"] == {}


@pytest.mark.parametrize("include_thoughts", [True, False])
def test_reasoning_text_streams_only_when_thoughts_are_included(http, include_thoughts):
    chunks = chunks_of(post(http, body(include_thoughts=include_thoughts)).content)
    thoughts = [c for c in chunks if c["choices"] and "reasoning_content" in c["choices"][0]["delta"]]
    assert bool(thoughts) == include_thoughts
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


def test_same_seed_gives_the_same_token_counts():
    def usages(seed: int) -> list[Usage]:
        platform = Platform(SimulatorConfig(seed=seed))
        return [platform.complete(body(reasoning_effort=effort), "sk-a", {}).usage
                for effort in ["high", "low"] * 25]

    assert usages(11) == usages(11) and usages(11) != usages(12)


def test_unknown_fault_names_are_refused(http):
    assert post(http, body(), **{"X-Sim-Fault": "teleport"}).status_code == 400
    assert http.post("/sim/faults", json={"faults": {"teleport": 1}}).status_code == 400
    with pytest.raises(ValueError):
        Platform(SimulatorConfig(faults={"teleport": 1}))


# --- the credits endpoint's knobs ---------------------------------------------------


@pytest.mark.parametrize("status,code", [(500, "internal_error"), (503, "upstream_error"), (429, "rate_limit_exceeded")])
def test_credits_endpoint_can_fail(http, status, code):
    assert http.post("/sim/faults", json={"credits_status": status, "credits_retry_after": 3}).status_code == 200
    response = http.get("/v1/credits")
    assert response.status_code == status and response.json()["error"]["code"] == code
    if status != 500:
        assert response.headers["retry-after"] == "3"
    http.post("/sim/faults", json={"credits_status": None})
    assert http.get("/v1/credits").status_code == 200


def test_credits_endpoint_can_be_slow(http):
    http.post("/sim/faults", json={"credits_latency": 0.3})
    started = time.monotonic()
    assert http.get("/v1/credits").status_code == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("mode", ["non_json", "wrong_shape", "non_integer", True])
def test_credits_endpoint_can_be_garbled(http, mode):
    knob = {"garbled": mode} if mode is True else {"credits_garbled": mode}
    assert http.post("/sim/faults", json=knob).status_code == 200
    raw = http.get("/v1/credits").content
    if mode in ("non_json", True):
        assert not _is_json(raw.decode())
    elif mode == "wrong_shape":
        assert "data" not in json.loads(raw)
    else:
        figures = json.loads(raw, parse_float=Decimal)["data"]
        assert all(value % 1 == Decimal("0.5") for value in figures.values())


# --- big streams and the server itself ---------------------------------------------


def test_a_five_megabyte_stream_arrives_in_pieces_with_the_forced_token_count(sim, key):
    tokens = 110_000
    with httpx2.Client(timeout=30) as http:
        with http.stream("POST", sim.base_url + "/chat/completions", json=body(),
                         headers={"authorization": f"Bearer {key}", "X-Sim-Completion-Tokens": str(tokens)}) as response:
            pieces, size, tail = 0, 0, b""
            for piece in response.iter_bytes():
                pieces, size, tail = pieces + 1, size + len(piece), (tail + piece)[-2000:]
    assert size > 5_000_000 and pieces > 10
    events = sse_events(tail)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == tokens


def test_server_urls_and_clean_stop():
    server = SimulatorServer()
    with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
        assert server.base_url == server.root_url + "/v1"
        with httpx2.Client() as http:
            assert http.get(server.root_url + "/sim/state").status_code == 200
    with httpx2.Client() as http, pytest.raises(httpx2.ConnectError):
        http.get(server.root_url + "/sim/state")
