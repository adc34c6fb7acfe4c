import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.usage import facts_from_body, facts_from_sse, request_facts

REFERENCE = (
    b'{"id": "chatcmpl-20260417001546375193862M1p62g7j", "object": "chat.completion", "created": 1776356269,'
    b' "model": "gemini-3.1-pro-preview", "choices": [{"index": 0, "finish_reason": "stop",'
    b' "message": {"role": "assistant", "content": "hi"}}], "usage": {"prompt_tokens": 194,'
    b' "completion_tokens": 229, "total_tokens": 880, "completion_tokens_details": {"reasoning_tokens": 457,'
    b' "audio_tokens": 0, "text_tokens": 0}}, "credits_consumed": 0.25}'
)


def test_reference_body_parses_exactly():
    facts = facts_from_body(REFERENCE)
    assert facts.completion_id == "chatcmpl-20260417001546375193862M1p62g7j"
    assert facts.model_reported == "gemini-3.1-pro-preview"
    assert facts.finish_reason == "stop"
    assert (facts.usage.prompt_tokens, facts.usage.completion_tokens, facts.usage.reasoning_tokens) == (194, 229, 457)
    assert facts.usage.total_tokens == 880
    assert facts.credits_charged == Decimal("0.25") and isinstance(facts.credits_charged, Decimal)
    assert facts.anomalies == ()


def test_stream_keeps_first_id_and_last_usage():
    chunks = [
        {"id": "chatcmpl-1", "model": "gemini-3.1-pro-preview", "choices": [{"delta": {"content": "a"}}]},
        {"id": "chatcmpl-1", "choices": [{"delta": {}, "finish_reason": "length"}]},
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "credits_consumed": 0.01},
    ]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    facts = facts_from_sse(raw)
    assert (facts.completion_id, facts.model_reported, facts.finish_reason) == ("chatcmpl-1", "gemini-3.1-pro-preview", "length")
    assert facts.usage.completion_tokens == 4 and facts.credits_charged == Decimal("0.01")
    assert facts_from_sse(raw.replace(b"data: [DONE]\n\n", b"")).anomalies == ("stream_incomplete",)


@pytest.mark.parametrize(
    "body, anomaly",
    [
        (b"", "empty_body"),
        (b"<html>bad gateway</html>", "malformed_body"),
        (b'{"usage": {"prompt_tokens": NaN}}', "non_finite_number"),
        (b'{"credits_consumed": Infinity}', "non_finite_number"),
        (b'{"usage": {"prompt_tokens": -5, "completion_tokens": 1}}', "absurd_prompt_tokens"),
        (b'{"usage": {"prompt_tokens": 1e400, "completion_tokens": 1}}', "bad_prompt_tokens"),
        (b'{"usage": {"prompt_tokens": 99999999999, "completion_tokens": 1}}', "absurd_prompt_tokens"),
        (b'{"usage": {"prompt_tokens": "12", "completion_tokens": 1}}', "bad_prompt_tokens"),
        (b'{"usage": {"prompt_tokens": true, "completion_tokens": 1}}', "bad_prompt_tokens"),
        (b'{"credits_consumed": "0.25"}', "bad_credits_consumed"),
        (b'{"credits_consumed": -0.25}', "absurd_credits_consumed"),
        (b'{"credits_consumed": 0.' + b"1" * 80 + b"}", "number_too_long"),
        (b'{"credits_consumed": ' + b"9" * 5000 + b"}", "number_too_long"),
        (b"[1, 2]", "malformed_body"),
        (b'{"usage": [1]}', "bad_usage"),
    ],
)
def test_what_the_upstream_got_wrong_is_an_anomaly_never_an_amount(body, anomaly):
    facts = facts_from_body(body)
    assert anomaly in facts.anomalies
    assert facts.credits_charged is None or facts.credits_charged >= 0
    if facts.usage is not None:
        assert facts.usage.prompt_tokens is None or 0 <= facts.usage.prompt_tokens


@given(st.binary(max_size=300))
def test_any_bytes_parse_without_raising(raw):
    facts_from_body(raw)
    facts_from_sse(raw)
    request_facts(raw)


def test_request_defaults_follow_the_api():
    assert request_facts(b'{"model": "gemini-3.1-pro", "messages": []}').stream is True
    facts = request_facts(
        b'{"model": "gemini-3.1-pro", "stream": false, "reasoning_effort": "low", "include_thoughts": false,'
        b' "tools": [{"type": "function", "function": {"name": "googleSearch"}}]}'
    )
    assert (facts.stream, facts.reasoning_effort, facts.include_thoughts, facts.tools) == (False, "low", False, "googleSearch")


def test_the_record_digest_sees_every_field_and_nothing_else():
    from dataclasses import fields, replace
    from datetime import datetime, timedelta, timezone

    from ledger.usage import CallRecord, ResponseFacts, Usage, record_digest

    when = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    usage = Usage(194, 229, 457, 0, 0, 880)
    facts = ResponseFacts("chatcmpl-1", "gemini-3.1-pro-preview", "stop", usage, Decimal("0.25"), None, None, ("a",))
    record = CallRecord("c1", when, "completed", "gemini-3.1-pro", True, "low", False, "none", 1, when, when, 200,
                        False, facts, "f" * 32, "Zq9x", "search", "u-42", {"b": "2", "a": "1"})
    digest = record_digest(record)
    assert digest == record_digest(replace(record, tags={"a": "1", "b": "2"}))  # tag order is not content

    def changed(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, int):
            return value + 1
        if isinstance(value, str):
            return value + "x"
        if isinstance(value, Decimal):
            return value + Decimal("0.01")
        if isinstance(value, datetime):
            return value + timedelta(microseconds=1)
        if isinstance(value, tuple):
            return value + ("z",)
        if isinstance(value, dict):
            return {**value, "c": "3"}
        raise AssertionError(f"no change for {value!r}")

    for f in fields(CallRecord):
        if f.name != "response":
            assert record_digest(replace(record, **{f.name: changed(getattr(record, f.name))})) != digest, f.name
    for f in fields(ResponseFacts):
        if f.name != "usage":
            other = replace(facts, **{f.name: changed(getattr(facts, f.name)) if getattr(facts, f.name) else "x"})
            assert record_digest(replace(record, response=other)) != digest, f.name
    for f in fields(Usage):
        other = replace(facts, usage=replace(usage, **{f.name: getattr(usage, f.name) + 1}))
        assert record_digest(replace(record, response=other)) != digest, f.name
    assert record_digest(replace(record, response=replace(facts, usage=None))) != digest
