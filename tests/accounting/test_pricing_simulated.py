"""The pricing check against the simulated platform: no false alarm on 2,000 clean
calls, and each billing fault knob found by `credit-ledger check` as its own class.

The platform runs in-process (its answers are the bytes the HTTP shell would
send); each answer goes through the recorder's own SSE scanner and
`build_record`, as a recorded call would, then `price`.
"""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections import Counter

import pytest

from ledger.sink.capture import Capture, build_record
from ledger.cli import main
from ledger.accounting.pricing import CLEAN_CLASSES, default_rate_book, price
from ledger.store.calls import insert_calls
from ledger.sim.platform import Platform
from ledger.sim.values import BILLING_FAULTS, FAULTS, SimulatorConfig
from ledger.accounting.sse import SSEScanner

BOOK = default_rate_book()
KEY = "sk-pricing-simulated-0001"


def capture_of(platform: Platform, request: dict, headers: dict | None = None) -> Capture:
    """The Capture the recorder would make of this call's answer (whole, not cut by the network)."""
    started = time.time()
    answer = platform.complete(request, KEY, headers or {})
    raw = json.dumps(request).encode()
    common = dict(call_id=uuid.uuid4().hex, started_at=started, ended_at=time.time(), first_byte_at=started,
                  http_status=answer.status, request_body=raw, key_last4=KEY[-4:])
    if answer.events is None:
        body = answer.body()
        if answer.abort:  # as the HTTP shell does: half the body, then the connection breaks
            return Capture(outcome="failed", stream=False, body=body[: len(body) // 2], **common)
        return Capture(outcome="completed", stream=False, body=body, **common)
    scanner = SSEScanner()
    sent = 0
    for event in answer.events:
        scanner.feed(event)
        sent += 1
    if not answer.abort:
        scanner.feed(b"data: [DONE]\n\n")
    return Capture(outcome="completed" if not answer.abort else "failed", stream=True,
                   payloads=scanner.payloads(), saw_done=scanner.saw_done, **common)


def random_request(rng: random.Random, n: int) -> dict:
    size = rng.choice((1, 10, 100, 1000, 10_000, 50_000))
    return {
        "model": rng.choice(("gemini-3.1-pro", "gemini-3.1-pro", "gemini-3-pro", "gemini-2.5-pro")),
        "messages": [{"role": "user", "content": "w" * rng.randint(1, size)}],
        "reasoning_effort": rng.choice(("low", "high")),
        "stream": n % 2 == 0,
        "max_tokens": rng.choice((16, 400, 4096)),
    }


def test_two_thousand_clean_calls_raise_no_false_alarm():
    # 2,000 calls, not 10,000 (a fifth of the time): both clean classes are seen (1,986 rounded, 14 exact with this
    # seed), and test_pricing's properties hold the rounding rule over every charge.
    rng = random.Random(2026)
    platform = Platform(SimulatorConfig(seed=11, starting_balance=10**9, completion_range=(0, 3000)))
    classes: Counter = Counter()
    for n in range(2_000):
        record = build_record(capture_of(platform, random_request(rng, n)))
        finding = price(record, BOOK)
        classes[finding.pricing_class] += 1
        assert finding.pricing_class in CLEAN_CLASSES, (finding, record)
        booked = platform.call_log[-1]  # what the platform took, to the hundredth
        assert (record.response.completion_id, finding.credits_charged) == (booked.id, booked.credits_charged)
    assert classes["ok"] + classes["rounding"] == 2_000
    assert classes["rounding"] > 1000 and classes["ok"] > 10  # exact charges and rounded ones both seen


CLEAN_FAULTS = ("slow_chunks", "unrecorded")  # no effect on the bill


def test_every_fault_knob_is_either_a_billing_fault_or_harmless():
    assert set(BILLING_FAULTS) | set(CLEAN_FAULTS) == FAULTS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_each_fault_knob_is_found_by_check_as_its_own_class(ledger, tmp_path, monkeypatch, stream):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(5)
    platform = Platform(SimulatorConfig(seed=3, starting_balance=10**9))
    expected: dict[str, str] = {}
    records = []
    # Each billing fault knob, with the class `check` must name it by.
    cases = [(fault, BILLING_FAULTS.get(fault)) for fault in [*BILLING_FAULTS, *CLEAN_FAULTS] * 3]
    cases += [(None, None)] * 50
    rng.shuffle(cases)
    for fault, klass in cases:
        if fault == "malformed_body" and stream:
            continue  # a cut content chunk leaves the usage whole: priced, not a billing fault
        # A fault is told from rounding only when it moves the charge by more than the
        # tolerance (0.005): a prompt long enough that a refund's kept charge shows, high
        # effort (reasoning at least twice the output), and a model whose rates differ
        # from the wrong_rate knob's.
        request = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "word " * 3000}],
                   "reasoning_effort": "high", "stream": stream, "max_tokens": 4096}
        capture = capture_of(platform, request, {"X-Sim-Fault": fault} if fault else {})
        record = build_record(capture)
        records.append((record, price(record, BOOK)))
        if klass:
            expected[record.call_id] = klass
    with ledger.session() as session:
        insert_calls(session, records)

    out = io.StringIO()
    assert main(["--database-url", ledger.url, "check", "--json"], out=out) == 0
    report = json.loads(out.getvalue())
    found = {f["call_id"]: f["pricing_class"] for f in report["findings"]}
    assert found == expected  # every fault named as its class, nothing else flagged
    totals = {t["pricing_class"]: t["calls"] for t in report["totals"]}
    assert totals == dict(Counter(expected.values()))
