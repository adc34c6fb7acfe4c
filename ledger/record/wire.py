"""A journal record: how a capture is written to the journal and read back (the one place that packs it).

A record is RECORD_MARK, the length of its payload (4 bytes, little-endian),
the payload and a newline. The payload is a `marshal` (version 2: no
reference table) of a RawCapture's 16 fields or a Capture's 18, told apart by
their number; it holds only str, bytes, numbers, None, bools, lists, tuples
and dicts, and may hold newlines and NULs, so records are read by their
frame, never split at newlines. The journal copies a record's first byte
last, so a record that has it was copied whole.

Two earlier formats are still read, because both were written by landed
versions and a segment leaves a journal only once the ledger has every
record in it: a segment of a process that was killed waits, whatever its
age, for the next replay. They are `P` and the base64 of a pickle of a
Capture's 18 fields, a line each, in `.seg` segments (written by versions
from cd462d6 to before e2c7620), and one JSON object a line in `.jsonl`
segments (written by versions before cd462d6).
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import marshal
import pickle
import struct

from .capture import Capture, RawCapture, settle

RECORD_MARK = b"M"  # a record's first byte (copied last)
RECORD_LENGTH = struct.Struct("<I")
RECORD_HEAD = 1 + RECORD_LENGTH.size  # the marker and the length, before the payload
_PICKLED = b"P"
_CAPTURE_SIZE = len(Capture._fields)
_RAW_SIZE = len(RawCapture._fields)
_tuple_new = tuple.__new__


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
                return settle(_tuple_new(RawCapture, fields))
            except Exception as error:  # a record of the right size with wrong pieces
                raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        return _tuple_new(Capture, fields)
    if line[:1] == _PICKLED:
        try:
            fields = _PlainValues(io.BytesIO(binascii.a2b_base64(line[1:]))).load()
        except Exception as error:  # garbage in a pickle can fail in many ways: all of them mean "not an entry"
            raise ValueError(f"not a journal entry ({type(error).__name__})") from None
        if type(fields) is not tuple or len(fields) != _CAPTURE_SIZE:
            raise ValueError("not a journal entry")
        return _tuple_new(Capture, fields)
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
