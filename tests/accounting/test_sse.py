"""The SSE scanner and the decoders, fed the same bytes cut at every offset."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from ledger.accounting.sse import MAX_LINE, DecodeError, SSEScanner, decoder_for
from ledger.accounting.parsing import facts_from_events, facts_from_sse


def _event(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(content="x", finish=None, usage=None, **extra):
    obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gemini-3.1-pro-preview",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}], "usage": usage, **extra}
    return _event(obj)


USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 40,
         "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": 0, "text_tokens": 0}}
STREAM = (
    b": keep-alive comment\r\n\r\n"
    + _chunk("")
    + b"".join(_chunk(f"word {i} ") for i in range(20))
    + _chunk("", finish="stop")
    + b'data: {"id":"chatcmpl-1","choices":[],"usage":' + json.dumps(USAGE).encode() + b',"credits_consumed":0.02}\r\n\r\n'
    + b"data: [DONE]\n\n"
)


def _scan(pieces) -> SSEScanner:
    scanner = SSEScanner()
    for piece in pieces:
        scanner.feed(piece)
    return scanner


def _state(scanner: SSEScanner):
    return scanner.payloads(), scanner.saw_done


def test_scanner_keeps_the_first_chunk_the_finish_the_usage_and_done():
    scanner = _scan([STREAM])
    facts = facts_from_events(scanner.payloads(), scanner.saw_done)
    assert facts == facts_from_sse(STREAM)  # the same facts as parsing the whole stream
    assert facts.completion_id == "chatcmpl-1" and facts.finish_reason == "stop"
    assert facts.usage.completion_tokens == 20 and str(facts.credits_charged) == "0.02"
    assert scanner.saw_done and len(scanner.payloads()) == 3


def test_the_same_bytes_split_at_every_offset_give_the_same_result():
    whole = _state(_scan([STREAM]))
    for cut in range(len(STREAM) + 1):
        assert _state(_scan([STREAM[:cut], STREAM[cut:]])) == whole, cut
    assert _state(_scan([STREAM[i : i + 1] for i in range(len(STREAM))])) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_cutting_gives_the_same_result(cuts):
    edges = [0, *sorted(cuts), len(STREAM)]
    assert _state(_scan([STREAM[a:b] for a, b in zip(edges, edges[1:])])) == _state(_scan([STREAM]))


def test_null_usage_and_null_finish_reason_are_not_kept_over_real_ones():
    stream = _chunk("", finish="stop", usage=USAGE, credits_consumed=0.02) + _chunk("late", usage=None, credits_consumed=None)
    facts = facts_from_events(_scan([stream]).payloads(), False)
    assert facts.finish_reason == "stop" and facts.usage.prompt_tokens == 10 and str(facts.credits_charged) == "0.02"
    assert facts.anomalies == ("stream_incomplete",)


def test_done_inside_content_is_not_the_end_of_the_stream():
    assert not _scan([_chunk("the text says [DONE] here")]).saw_done


def test_an_error_event_is_kept():
    stream = _chunk("a") + _event({"error": {"code": "upstream_error", "type": "upstream_error", "message": "down"}})
    facts = facts_from_events(_scan([stream]).payloads(), False)
    assert (facts.error_code, facts.error_type) == ("upstream_error", "upstream_error")


def test_an_over_long_line_is_skipped_not_accumulated():
    huge = b"data: " + b'{"x":"' + b"a" * (3 * MAX_LINE) + b'"}\n\n'
    scanner = _scan([_chunk("first")] + [huge[i : i + 1000] for i in range(0, len(huge), 1000)] + [STREAM])
    assert scanner.skipped_lines == 1
    assert len(scanner._tail) <= MAX_LINE
    assert scanner.saw_done and facts_from_events(scanner.payloads(), True).usage.prompt_tokens == 10


def _decoded(encoding: str, data: bytes, pieces: int) -> bytes:
    decoder = decoder_for(encoding)
    out: list[bytes] = []
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        decoder.decode(data[i : i + step], out.append)
    decoder.finish(out.append)
    return b"".join(out)


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate, as some servers send it
    ("br", brotli.compress),
    ("zstd", zstandard.ZstdCompressor().compress),
    ("gzip, br", lambda data: brotli.compress(gzip.compress(data))),
])
@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_compressed_bodies_decode_in_pieces(encoding, compress, pieces):
    assert _decoded(encoding, compress(STREAM * 50), pieces) == STREAM * 50


def test_a_bomb_is_decoded_in_bounded_pieces():
    decoder = decoder_for("gzip")
    sizes: list[int] = []
    decoder.decode(gzip.compress(b"\0" * (20 * 1024 * 1024)), lambda piece: sizes.append(len(piece)))
    assert sum(sizes) == 20 * 1024 * 1024 and max(sizes) <= 1024 * 1024


def test_identity_is_no_decoder_and_garbage_is_a_decode_error():
    assert decoder_for(None) is None and decoder_for("identity") is None
    with pytest.raises(DecodeError):
        decoder_for("compress")
    with pytest.raises(DecodeError):
        decoder_for("gzip").decode(b"not gzip at all", lambda piece: None)

