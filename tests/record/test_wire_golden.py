"""The journal's formats, byte for byte: files written by each landed version read back to the same records,
and today's records written to today's bytes (tests/record/golden/, never regenerated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from golden_records import CAPTURES, RAW_CAPTURES
from ledger.record.capture import Capture
from ledger.record.wire import decode, encode, framed_size

GOLDEN = Path(__file__).parent / "golden"

# What the writer settles each raw capture into (attempt and attribution read, held bytes accounted).
SETTLED = (
    Capture(call_id="golden-raw-chunks", started_at=1776356500.0, ended_at=1776356500.5, first_byte_at=1776356500.25,
            outcome="completed", http_status=200, stream=False, request_body=b'{"model":"gemini-3.1-pro"}',
            body=b'{"id":"chatcmpl-3","model":"gemini-3.1-pro-preview","usage":{"prompt_tokens":5},"credits_consumed":0.5}',
            payloads=(), saw_done=False, attempt=1, key_fingerprint="a" * 32, key_last4="Ab12", project="project-1",
            end_user="u-8", tags={"feature": "chat"}, notes=("request_unreadable",)),
    Capture(call_id="golden-raw-kept", started_at=1776356600.0, ended_at=1776356601.0, first_byte_at=1776356600.5,
            outcome="completed", http_status=200, stream=True, request_body=b"{}", body=None,
            payloads=(b'{"id":"c-4"}',), saw_done=True, attempt=0, key_fingerprint=None, key_last4=None, project=None,
            end_user=None, tags={}, notes=("long_stream",)),
    Capture(call_id="golden-raw-none", started_at=1776356700.0, ended_at=1776356700.1, first_byte_at=None,
            outcome="refused", http_status=429, stream=None, request_body=b"", body=None, payloads=(), saw_done=False,
            attempt=0, key_fingerprint=None, key_last4=None, project=None, end_user=None, tags={},
            notes=("bad_retry_count", "bad_ledger_tags")),
)


def framed_records(data: bytes) -> list[bytes]:
    records, at = [], 0
    while at < len(data):
        size = framed_size(data[at:at + 5])
        assert size is not None, f"no record at byte {at}"
        records.append(data[at:at + size])
        at += size
    return records


@pytest.mark.parametrize("name, expected", [
    ("v3-marshal-captures.seg", CAPTURES),
    ("v3-marshal-raw.seg", SETTLED),
])
def test_a_framed_marshal_journal_reads_back_to_its_records(name, expected):
    assert [decode(record) for record in framed_records((GOLDEN / name).read_bytes())] == list(expected)


@pytest.mark.parametrize("name", ["v2-pickle-captures.seg", "v1-json-captures.jsonl"])
def test_a_journal_of_an_earlier_version_reads_back_to_its_records(name):
    lines = (GOLDEN / name).read_bytes().splitlines(keepends=True)
    assert [decode(line) for line in lines] == list(CAPTURES)


@pytest.mark.parametrize("name, records", [
    ("v3-marshal-captures.seg", CAPTURES),
    ("v3-marshal-raw.seg", RAW_CAPTURES),
])
def test_todays_records_are_written_to_todays_bytes(name, records):
    assert b"".join(encode(record) for record in records) == (GOLDEN / name).read_bytes()
