"""The journal's formats, byte for byte: files written by each landed version read back to the same records,
and today's records written to today's bytes (tests/sink/golden/, never regenerated)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from golden_records import BODY, CAPTURES, RAW_CAPTURES
from ledger.sink import wire
from ledger.sink.capture import Capture
from ledger.sink.wire import FORMATS, VERSION, decode, encode, framed_size

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


def test_each_golden_file_starts_with_its_versions_tag():
    assert FORMATS[VERSION] == b"M"
    for version, name in ((3, "v3-marshal-captures.seg"), (3, "v3-marshal-raw.seg"), (2, "v2-pickle-captures.seg"),
                          (1, "v1-json-captures.jsonl")):
        assert (GOLDEN / name).read_bytes()[:1] == FORMATS[version]


class GrownCapture(NamedTuple):  # Capture as it would be with a field added after version 3
    call_id: str
    started_at: float
    ended_at: float | None
    first_byte_at: float | None
    outcome: str
    http_status: int | None
    stream: bool | None
    request_body: bytes = b""
    body: bytes | None = None
    payloads: tuple = ()
    saw_done: bool = False
    attempt: int = 0
    key_fingerprint: str | None = None
    model_route: str | None = None  # the new field, not at the end
    key_last4: str | None = None
    project: str | None = None
    end_user: str | None = None
    tags: dict = {}
    notes: tuple = ()


def test_a_record_that_gained_a_field_is_refused_as_the_written_version_and_read_by_name_from_an_earlier_one():
    with pytest.raises(TypeError, match="new version of the journal's format"):
        wire._written_layout(GrownCapture, wire.CAPTURE_V3)
    read = wire._reader(GrownCapture, wire.CAPTURE_V3)
    assert read(tuple(BODY)) == GrownCapture(**BODY._asdict())
    assert read(tuple(BODY)).model_route is None and read(tuple(BODY)).key_last4 == BODY.key_last4
