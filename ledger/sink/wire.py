"""The journal's format, versioned: how a capture is written to the journal and read back (the one place that packs it).

Each version of the format has a tag, a record's first byte (`FORMATS`), and
a layout: the field at each position of a record. A record is read by the
reader of its version. Only this module knows positions: a record type's
fields must be the current version's layout (checked on import), so a field
added to Capture or RawCapture is a new version with its own tag, and the
readers of the earlier versions stay (tests/sink/golden/ holds a journal of
each, byte for byte).

Version 3 (the current one, tag `M`): a record is RECORD_MARK, the length of
its payload (4 bytes, little-endian), the payload and a newline. The payload
is a `marshal` (version 2: no reference table) of a RawCapture's 16 fields or
a Capture's 18, told apart by their number; it holds only str, bytes,
numbers, None, bools, lists, tuples and dicts, and may hold newlines and NULs,
so records are read by their frame, never split at newlines. The journal
copies a record's first byte last, so a record that has it was copied whole.

Two earlier versions are still read, because both were written by landed
versions and a segment leaves a journal only once the ledger has every
record in it: a segment of a process that was killed waits, whatever its
age, for the next replay. Version 2 (tag `P`): the base64 of a pickle of a
Capture's 18 fields, a line each, in `.seg` segments (written by versions
from cd462d6 to before e2c7620). Version 1 (a JSON object, tag `{`): one a
line in `.jsonl` segments (written by versions before cd462d6).
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import marshal
import pickle
import struct
from functools import partial

from .capture import Capture, RawCapture, settle

# The layouts: the field at each position of a record, by version. Never change one: add a version.
CAPTURE_V2 = (
    "call_id", "started_at", "ended_at", "first_byte_at", "outcome", "http_status", "stream", "request_body", "body",
    "payloads", "saw_done", "attempt", "key_fingerprint", "key_last4", "project", "end_user", "tags", "notes",
)
CAPTURE_V3 = CAPTURE_V2
RAW_CAPTURE_V3 = (
    "call_id", "started_at", "ended_at", "first_byte_at", "outcome", "http_status", "request_body", "content_type",
    "content_encoding", "response", "attempt", "key_fingerprint", "key_last4", "context", "attributed", "notes",
)

VERSION = 3  # the version written
RECORD_MARK = b"M"  # version 3's tag: a record's first byte (copied last)
_PICKLED = b"P"  # version 2's tag
FORMATS = {3: RECORD_MARK, 2: _PICKLED, 1: b"{"}  # each version's tag
RECORD_LENGTH = struct.Struct("<I")
RECORD_HEAD = 1 + RECORD_LENGTH.size  # the marker and the length, before the payload


def _written_layout(record_type: type, layout: tuple[str, ...]) -> None:
    """Refuse to write a record whose fields are not the current version's layout (a new field is a new version)."""
    if record_type._fields != layout:
        raise TypeError(f"{record_type.__name__}'s fields are not the layout of journal version {VERSION}: "
                        "a changed record is a new version of the journal's format (ledger.sink.wire)")


_written_layout(Capture, CAPTURE_V3)
_written_layout(RawCapture, RAW_CAPTURE_V3)


def _reader(record_type: type, layout: tuple[str, ...]):
    """The record of a tuple of fields in a version's layout: by position while the layout is the record's own
    (tuple.__new__ has no Python frame: the writer's hot loop), else by name (a field added since takes its default)."""
    if record_type._fields == layout:
        return partial(tuple.__new__, record_type)
    return lambda fields: record_type(**dict(zip(layout, fields)))


_capture_v2 = _reader(Capture, CAPTURE_V2)
_capture_v3 = _reader(Capture, CAPTURE_V3)
_raw_capture_v3 = _reader(RawCapture, RAW_CAPTURE_V3)
_CAPTURE_SIZE, _RAW_SIZE = len(CAPTURE_V3), len(RAW_CAPTURE_V3)


def payload(capture: Capture | RawCapture) -> bytes:
    """A journal record's payload: what `frame` makes a record of."""
    if type(capture) is not RawCapture:
        capture = _plain_capture(capture)
    return marshal.dumps(capture[:], 2)  # [:]: a plain tuple of the fields, which marshal takes


def _plain_capture(capture: Capture) -> Capture:
    """The capture with plain containers (a dict of tags, tuples), as marshal writes them."""
    if type(capture.tags) is dict and type(capture.payloads) is tuple and type(capture.notes) is tuple:
        return capture
    return capture._replace(payloads=tuple(capture.payloads), tags=dict(capture.tags), notes=tuple(capture.notes))


def frame(body: bytes) -> bytes:
    """The journal record of a payload: its marker, its length, the payload, a newline."""
    return b"".join((RECORD_MARK, RECORD_LENGTH.pack(len(body)), body, b"\n"))


def encode(capture: Capture | RawCapture) -> bytes:
    """One journal record."""
    return frame(payload(capture))


def framed_size(head: bytes) -> int | None:
    """The whole size of the record whose first bytes are `head` (at least RECORD_HEAD of them), None if not a record."""
    if head[:1] != RECORD_MARK or len(head) < RECORD_HEAD:
        return None
    return RECORD_HEAD + RECORD_LENGTH.unpack_from(head, 1)[0] + 1


def decode(line: bytes) -> Capture:
    """The capture of one journal record (or line of an earlier version); ValueError if it is not one."""
    if line[:1] == RECORD_MARK:
        if framed_size(line) != len(line) or line[-1:] != b"\n":
            raise ValueError("not a journal entry (its frame is cut short or broken)")
        try:
            fields = marshal.loads(memoryview(line)[RECORD_HEAD:-1])
        except Exception as error:
            raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        if type(fields) is not tuple or len(fields) not in (_CAPTURE_SIZE, _RAW_SIZE):
            raise ValueError("not a journal entry")
        if len(fields) == _RAW_SIZE:
            try:
                return settle(_raw_capture_v3(fields))
            except Exception as error:  # a record of the right size with wrong pieces
                raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        return _capture_v3(fields)
    if line[:1] == _PICKLED:
        try:
            fields = _PlainValues(io.BytesIO(binascii.a2b_base64(line[1:]))).load()
        except Exception as error:  # garbage in a pickle can fail in many ways: all of them mean "not an entry"
            raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        if type(fields) is not tuple or len(fields) != len(CAPTURE_V2):
            raise ValueError("not a journal entry")
        return _capture_v2(fields)
    return _decode_json(line)


class _PlainValues(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"a journal line names {module}.{name}")


def _raw(text: str) -> bytes:
    return text.encode("latin-1")


def _decode_json(line: bytes) -> Capture:
    # One JSON object a line, bytes as latin-1 text.
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


def entry_digest(line: bytes) -> str:
    """The record digest of a journal entry: SHA-256 of its record (of a line of an earlier version,
    without its newline). A replay re-reads the same bytes; other content under the same call id is
    another record."""
    return hashlib.sha256(line if line[:1] == RECORD_MARK else line.rstrip(b"\r\n")).hexdigest()


def line_text(line: bytes) -> str:
    """A journal record or line as text, exactly (for a record kept aside): UTF-8 as it is, else base64
    (a NUL too: PostgreSQL's text refuses it, and a torn segment's zero-filled tail holds them)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return text
    return "base64:" + binascii.b2a_base64(line, newline=False).decode("ascii")
