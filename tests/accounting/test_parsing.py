import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounting.parsing import MAX_TEXT, facts_from_body, facts_from_sse, request_facts
from ledger.accounting.records import MAX_TOKENS

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


def _sound(facts) -> None:
    """What any parse must give, whatever the bytes: exact amounts or none, counts in range, named anomalies."""
    assert facts.credits_charged is None or (isinstance(facts.credits_charged, Decimal) and facts.credits_charged >= 0)
    if facts.usage is not None:
        assert all(n is None or (type(n) is int and 0 <= n <= MAX_TOKENS) for n in facts.usage)
    assert type(facts.anomalies) is tuple and all(isinstance(a, str) and a for a in facts.anomalies)
    for text in (facts.completion_id, facts.model_reported, facts.finish_reason, facts.error_code, facts.error_type):
        assert text is None or (isinstance(text, str) and len(text) <= MAX_TEXT)


@given(st.binary(max_size=300))
def test_any_bytes_parse_into_sound_facts_or_named_anomalies(raw):
    _sound(facts_from_body(raw))
    _sound(facts_from_sse(raw))
    request = request_facts(raw)
    assert isinstance(request.stream, bool) and request.model_requested is None or isinstance(request.model_requested, str)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["usage", "prompt_tokens", "completion_tokens", "credits_consumed", "choices", "finish_reason", "id", "model",
         "error", "code", "type", "completion_tokens_details", "reasoning_tokens"]), inner, max_size=5),
    max_leaves=20,
)


@given(_json_values)
def test_any_json_body_parses_into_sound_facts_or_named_anomalies(value):
    raw = json.dumps(value).encode()
    _sound(facts_from_body(raw))
    _sound(facts_from_sse(b"data: " + raw + b"\n\ndata: [DONE]\n\n"))


def test_request_defaults_follow_the_api():
    assert request_facts(b'{"model": "gemini-3.1-pro", "messages": []}').stream is True
    facts = request_facts(
        b'{"model": "gemini-3.1-pro", "stream": false, "reasoning_effort": "low", "include_thoughts": false,'
        b' "tools": [{"type": "function", "function": {"name": "googleSearch"}}]}'
    )
    assert (facts.stream, facts.reasoning_effort, facts.include_thoughts, facts.tools) == (False, "low", False, "googleSearch")
