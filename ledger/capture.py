"""What the recorder keeps of a call on the caller's path, and how it becomes a record.

The recorder emits a `RawCapture`: the pieces of the call as they were, with
the least work done on the caller's path (a short response's bytes as they
came, its Content-Type and Content-Encoding, the request body, the
attribution as it stood). It is journalled as one record (`encode`).
`settle` makes of it a `Capture` (what
accounting keeps: the non-streaming body or the kept SSE payloads, the
attribution, the attempt) and `build_record` the record: parsing into Decimals,
flagging anomalies. Both run off the caller's path, in the writer.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import marshal
import pickle
import struct
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Mapping, NamedTuple

from .sse import Accountant
from .usage import (
    ABORTED,
    COMPLETED,
    ERROR,
    FAILED,
    CallRecord,
    body_values,
    events_values,
    request_values,
    response_facts,
)

# Bodies larger than this are not kept for accounting (the caller still gets them).
MAX_KEPT_BODY = 4 * 1024 * 1024


class Capture(NamedTuple):
    """One attempt as the recorder saw it: primitives and raw payloads only.

    A NamedTuple rather than a frozen dataclass: the recorder makes one on every
    call's path (a frozen dataclass's `__init__` costs several times a tuple's),
    and a capture's fields in order are what a journal record holds.
    """

    call_id: str
    started_at: float  # epoch seconds (time.time())
    ended_at: float | None
    first_byte_at: float | None
    outcome: str  # completed | aborted | failed (before the HTTP status is considered)
    http_status: int | None
    stream: bool | None  # as the response showed it (text/event-stream), None if no response
    request_body: bytes = b""  # the request JSON (what accounting needs of it is parsed later)
    body: bytes | None = None  # non-streaming response body, when kept
    payloads: tuple[bytes, ...] = ()  # kept SSE data payloads, in order
    saw_done: bool = False
    attempt: int = 0
    key_fingerprint: str | None = None
    key_last4: str | None = None
    project: str | None = None
    end_user: str | None = None
    tags: Mapping[str, str] = MappingProxyType({})  # read-only: a default shared by every capture
    notes: tuple[str, ...] = ()  # anomalies seen by the recorder itself (e.g. body_too_large)


class RawCapture(NamedTuple):
    """One attempt as the recorder emits it: its pieces as they were, settled into a Capture by the writer.

    Made on every call's path, so it holds references and primitives only: no
    parsing, no copies. `response` is the response's bytes as they came (a list
    of chunks) while they were few; past the recorder's held bytes it is what
    the recorder's own Accountant kept, `Accountant.finish`'s tuple. The API
    key is never here: only its fingerprint and last four characters.
    """

    call_id: str
    started_at: float
    ended_at: float | None
    first_byte_at: float | None
    outcome: str  # completed | aborted | failed, as the recorder saw the stream end
    http_status: int | None
    request_body: bytes  # as sent, or a summary of a long one
    content_type: bytes | None  # the response's header as sent (None: no header)
    content_encoding: bytes | None
    response: list | tuple | None  # the chunks as they came, or Accountant.finish()'s tuple; None: no response
    attempt: bytes | None  # the X-Stainless-Retry-Count header as sent
    key_fingerprint: str | None
    key_last4: str | None
    context: tuple | None  # (project, user, tags) of the attribution in context
    attributed: dict | None  # the X-Ledger-* headers taken out of the request, by lower-case name
    notes: tuple[str, ...]  # what the recorder itself gave up on (a request body it could not read)


HEADER_PROJECT, HEADER_USER, HEADER_TAGS = b"x-ledger-project", b"x-ledger-user", b"x-ledger-tags"


def parse_tags(text: str) -> dict[str, str]:
    """X-Ledger-Tags: a JSON object (`{"feature": "summary"}`) or `k=v,k2=v2`."""
    text = text.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("X-Ledger-Tags is not a JSON object")
        return {str(k): str(v) for k, v in obj.items()}
    tags = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            tags[name.strip()] = value.strip()
    return tags


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def accounted(content_type: bytes | None, coding: bytes | None, chunks: list, outcome: str) -> tuple:
    """Accountant.finish()'s tuple for a response's bytes as they came (held by the recorder)."""
    accountant = Accountant(content_type, coding, MAX_KEPT_BODY)
    try:
        if chunks:
            accountant.feed(b"".join(chunks))
    except Exception:
        pass  # noted as recorder_error; what was kept before it stands
    return accountant.finish(outcome == COMPLETED)


def settle(raw: RawCapture | tuple) -> tuple:
    """The Capture's fields (in _FIELDS order) of a raw capture: what the recorder left to the writer."""
    (call_id, started_at, ended_at, first_byte_at, outcome, http_status, request_body, content_type, coding,
     response, attempt, key_fingerprint, key_last4, context, attributed, notes) = raw
    if response is None:
        stream, body, payloads, saw_done, kept_notes = None, None, (), False, ()
    else:
        if type(response) is list:
            response = accounted(content_type, coding, response, outcome)
        stream, body, payloads, saw_done, kept_notes = response  # (a tuple of payloads, as marshal keeps it)
        if outcome == ABORTED and saw_done:
            outcome = COMPLETED  # closed after [DONE]: nothing more was to come (the SDK does this)
    try:
        attempt_no = int(attempt) if attempt is not None else 0
    except ValueError:
        attempt_no = 0
    project, user, tags = context if context is not None else (None, None, {})  # (tags: never changed in place)
    if attributed:
        kept_notes = list(kept_notes)
        if HEADER_PROJECT in attributed:
            project = _text(attributed[HEADER_PROJECT])
        if HEADER_USER in attributed:
            user = _text(attributed[HEADER_USER])
        if HEADER_TAGS in attributed:
            try:
                tags = {**tags, **parse_tags(_text(attributed[HEADER_TAGS]))}
            except ValueError:
                kept_notes.append("bad_ledger_tags")
    all_notes = tuple(dict.fromkeys((*kept_notes, *notes))) if kept_notes or notes else ()
    return (
        call_id, started_at, ended_at, first_byte_at, outcome, http_status, stream, request_body, body, payloads,
        saw_done, attempt_no, key_fingerprint, key_last4, project, user, tags, all_notes,
    )


def as_capture(capture: Capture | RawCapture) -> Capture:
    """The Capture of what a recorder emitted (a Capture as it is)."""
    return Capture(*settle(capture)) if type(capture) is RawCapture else capture


# A journal record is b"M", the length of its payload (4 bytes, little-endian), the payload (a
# marshal, version 2, of the capture's fields) and a newline. Measured between loopback calls, a
# version-2 marshal costs the caller next to nothing where a pickle (and its base64) took 14 us:
# version 2 keeps no reference table, and a pickler is code the caller's path otherwise never runs.
# The payload is a Capture's 18 fields or a RawCapture's 16 (told apart by their number).
# It holds only str, bytes, numbers, None, bools, lists, tuples and dicts; it may hold newlines
# and NULs, so records are read by their frame, never split at newlines. The journal copies a
# record's first byte last, so a record that has it was copied whole; on the caller's path it
# frames the payload as it copies it (`Journal.append_record_locked`: a joined record was one
# more copy of it, 3 - 5 us between loopback calls). Lines of earlier versions (b"P" and the
# base64 of a pickle; JSON objects) still decode.
RECORD_MARK = b"M"  # a record's first byte (copied last)
RECORD_LENGTH = struct.Struct("<I")
RECORD_HEAD = 1 + RECORD_LENGTH.size  # the marker and the length, before the payload
_PICKLED = b"P"
_FIELDS = Capture._fields
_RAW_SIZE = len(RawCapture._fields)


def capture_fields(capture: Capture | RawCapture) -> tuple:
    """The capture's fields as a plain tuple, in _FIELDS order (a raw capture's settled)."""
    c = capture
    if type(c) is RawCapture:
        return settle(c)
    if type(c.tags) is dict and type(c.payloads) is tuple and type(c.notes) is tuple:
        return tuple(c)  # what the recorder makes: nothing to convert
    return (*c[:9], tuple(c.payloads), *c[10:16], dict(c.tags), tuple(c.notes))


def payload(capture: Capture | RawCapture) -> bytes:
    """A journal record's payload: what `frame` makes a record of (see the notes above)."""
    return marshal.dumps(capture[:] if type(capture) is RawCapture else capture_fields(capture), 2)  # [:]: a plain tuple


def frame(body: bytes) -> bytes:
    """The journal record of a payload: its marker, its length, the payload, a newline."""
    return b"".join((RECORD_MARK, RECORD_LENGTH.pack(len(body)), body, b"\n"))


def encode(capture: Capture | RawCapture) -> bytes:
    """One journal record (see the notes above)."""
    return frame(payload(capture))


def framed_size(head: bytes) -> int | None:
    """The whole size of the record whose first bytes are `head` (at least RECORD_HEAD of them), None if not a record."""
    if head[:1] != RECORD_MARK or len(head) < RECORD_HEAD:
        return None
    return RECORD_HEAD + RECORD_LENGTH.unpack_from(head, 1)[0] + 1


class _PlainValues(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"a journal line names {module}.{name}")


def line_fields(line: bytes) -> tuple:
    """The capture's fields (in _FIELDS order) of one journal record or line; ValueError if it is not one."""
    if line[:1] == RECORD_MARK:
        if framed_size(line) != len(line) or line[-1:] != b"\n":
            raise ValueError("not a journal entry (its frame is cut short or broken)")
        try:
            fields = marshal.loads(memoryview(line)[RECORD_HEAD:-1])
        except Exception as error:
            raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        if type(fields) is not tuple or len(fields) not in (len(_FIELDS), _RAW_SIZE):
            raise ValueError("not a journal entry")
        if len(fields) == _RAW_SIZE:
            try:
                return settle(fields)  # (a RawCapture's fields in order: settle only unpacks them)
            except Exception as error:  # a record of the right size with wrong pieces
                raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        return fields
    if line[:1] == _PICKLED:
        try:
            fields = _PlainValues(io.BytesIO(binascii.a2b_base64(line[1:]))).load()
        except Exception as error:  # garbage in a pickle can fail in many ways: all of them mean "not an entry"
            raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        if type(fields) is not tuple or len(fields) != len(_FIELDS):
            raise ValueError("not a journal entry")
        return fields
    return capture_fields(_decode_json(line))


def entry_digest(line: bytes) -> str:
    """The record digest of a journal entry: SHA-256 of its record (of a line of an earlier version,
    without its newline). A replay re-reads the same bytes; other content under the same call id is
    another record."""
    return hashlib.sha256(line if line[:1] == RECORD_MARK else line.rstrip(b"\r\n")).hexdigest()


def line_text(line: bytes) -> str:
    """A journal record or line as text, exactly (for a record kept aside): UTF-8 as it is, else base64."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + binascii.b2a_base64(line, newline=False).decode("ascii")


def decode(line: bytes) -> Capture:
    """The capture of one journal line; ValueError if the line is not one."""
    return Capture(*line_fields(line))  # _FIELDS is Capture's own field order (the round-trip tests hold it)


def _raw(text: str) -> bytes:
    return text.encode("latin-1")


def _decode_json(line: bytes) -> Capture:
    # The line format of earlier versions: a JSON object, bytes as latin-1 text.
    obj = json.loads(line)
    if not isinstance(obj, dict) or "i" not in obj:
        raise ValueError("not a journal entry")
    return Capture(
        call_id=obj["i"],
        started_at=obj["s"],
        ended_at=obj.get("e"),
        first_byte_at=obj.get("f"),
        outcome=obj["o"],
        http_status=obj.get("h"),
        stream=obj.get("st"),
        request_body=_raw(obj.get("q", "")),
        body=_raw(obj["b"]) if "b" in obj else None,
        payloads=tuple(_raw(p) for p in obj.get("p", ())),
        saw_done=bool(obj.get("d")),
        attempt=int(obj.get("a", 0)),
        key_fingerprint=obj.get("k"),
        key_last4=obj.get("k4"),
        project=obj.get("pr"),
        end_user=obj.get("u"),
        tags=obj.get("t") or {},
        notes=tuple(obj.get("n", ())),
    )


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def record_values(fields: tuple) -> tuple:
    """A CallRecord's fields as a tuple (the response as a `body_values` tuple) from a capture's fields.

    Parse, flag, decide the status: what `build_record` does, without building
    the values (the ledger writer makes rows of these tuples directly).
    """
    (call_id, started_at, ended_at, first_byte_at, outcome, http_status, stream, request_body,
     body, payloads, saw_done, attempt, key_fingerprint, key_last4, project, end_user, tags, notes) = fields
    model_requested, requested_stream, effort, thoughts, tools = request_values(request_body)
    if body is not None:
        facts = body_values(body)
    elif payloads or stream:
        facts = events_values(payloads, saw_done)
    else:
        facts = _NO_RESPONSE
    if notes:
        facts = (*facts[:7], facts[7] + tuple(notes))
    status = outcome
    if http_status is not None and http_status >= 400:
        status = ERROR
    elif status == COMPLETED and stream and not saw_done:
        status = FAILED  # the stream ended without [DONE]: the upstream cut it
    refunded = http_status == 503 and facts[5] in (None, "upstream_error")
    return (
        call_id, _when(started_at), status, model_requested, bool(requested_stream if stream is None else stream),
        effort, thoughts, tools, attempt, _when(first_byte_at), _when(ended_at), http_status, refunded, facts,
        key_fingerprint, key_last4, project, end_user, tags,
    )


_NO_RESPONSE = (None, None, None, None, None, None, None, ())


def record_of_values(values: tuple) -> CallRecord:
    """The CallRecord of a `record_values` tuple."""
    return CallRecord(*values[:13], response_facts(values[13]), *values[14:18], dict(values[18]))


def build_record(capture: Capture) -> CallRecord:
    """The CallRecord of a capture: parse, flag, decide the status."""
    return record_of_values(record_values(capture_fields(capture)))


__all__ = ["Capture", "RawCapture", "settle", "as_capture", "accounted", "parse_tags", "encode", "decode", "framed_size", "line_text", "capture_fields", "line_fields", "entry_digest", "record_values", "record_of_values", "build_record", "ABORTED", "COMPLETED", "FAILED", "MAX_KEPT_BODY"]
