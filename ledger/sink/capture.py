"""What the recorder keeps of a call on the caller's path, and how the writer makes a record of it.

The recorder emits a `RawCapture`: the pieces of the call as they were, with
the least work done on the caller's path (a short response's bytes as they
came, its Content-Type and Content-Encoding, the request body, the
attribution as it stood). The writer settles it into a `Capture` (what
accounting keeps: the non-streaming body or the kept SSE payloads, the
attribution, the attempt), then `build_record` parses that into a
`CallRecord`: JSON into Decimals, anomalies flagged, the status decided.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import partial
from typing import Mapping, NamedTuple

from ..accounting.parsing import facts_from_body, facts_from_events, plain_text, request_facts
from ..accounting.records import (
    ABORTED, COMPLETED, ERROR, FAILED, NO_TAGS, REFUSED, CallRecord, ResponseFacts, call_record_of,
)
from ..redact import may_hold_secret, redact_bytes
from ..money import ZERO
from ..accounting.sse import Accountant

# Bodies larger than this are not kept for accounting (the caller still gets them).
MAX_KEPT_BODY = 4 * 1024 * 1024

HEADER_PROJECT, HEADER_USER, HEADER_TAGS = b"x-ledger-project", b"x-ledger-user", b"x-ledger-tags"
LEDGER_HEADERS = (HEADER_PROJECT, HEADER_USER, HEADER_TAGS)


class RawCapture(NamedTuple):
    """One attempt as the recorder emits it: its pieces as they were, settled into a Capture by the writer.

    Made on every call's path, so it holds references and primitives only: no
    parsing, no copies. `response` is the response's bytes as they came (a list
    of chunks) while they were few; past the recorder's held bytes it is what
    the recorder's own Accountant kept, `Accountant.finish`'s tuple. The API
    key is never here: only its fingerprint and last four characters.
    """

    call_id: str
    started_at: float  # epoch seconds (time.time())
    ended_at: float | None
    first_byte_at: float | None
    outcome: str  # completed | aborted | failed, as the recorder saw the stream end; refused: a hard limit stopped it
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


# The recorder's constructor: a RawCapture of its 16 fields in the order above, on every call's path.
# tuple.__new__ has no Python frame; RawCapture's own __new__ (and its keywords) costs about 1.4 us a call.
raw_capture_of = partial(tuple.__new__, RawCapture)


class Capture(NamedTuple):
    """One attempt as accounting keeps it: primitives and the payloads a record is parsed from."""

    call_id: str
    started_at: float  # epoch seconds (time.time())
    ended_at: float | None
    first_byte_at: float | None
    outcome: str  # completed | aborted | failed | refused (before the HTTP status is considered)
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
    tags: Mapping[str, str] = NO_TAGS
    notes: tuple[str, ...] = ()  # anomalies seen by the recorder itself (e.g. body_too_large)


capture_of = partial(tuple.__new__, Capture)  # the writer's constructor: the fields in the order above (no frame)


def parse_tags(text: str) -> dict[str, str]:
    """X-Ledger-Tags: a JSON object (`{"feature": "summary"}`) or `k=v,k2=v2`; ValueError when it cannot be read.

    Whatever the caller sent, the only error is ValueError: JSON nested past the
    interpreter's depth (RecursionError) is unreadable tags like any other.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("X-Ledger-Tags is not a JSON object")
            return {plain_text(str(k)): plain_text(str(v)) for k, v in obj.items()}
        except (ValueError, RecursionError) as error:
            raise ValueError(f"X-Ledger-Tags cannot be read ({type(error).__name__})") from None
    tags = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            tags[plain_text(name.strip())] = plain_text(value.strip())
    return tags


def attribution_of(context: tuple | None, attributed: dict | None) -> tuple[str | None, str | None, Mapping[str, str], tuple]:
    """(project, user, tags, notes) of a call: its X-Ledger-* headers over the attribution in context; never raises.

    The one reading of a call's attribution, for its record and for its hard
    limits alike: what cannot be read is left out and named in the notes.
    """
    project, user, tags = context if context is not None else (None, None, NO_TAGS)  # (tags: never changed in place)
    notes: tuple = ()
    if not attributed:
        return project, user, tags, notes
    if HEADER_PROJECT in attributed:
        project = _text(attributed[HEADER_PROJECT])
    if HEADER_USER in attributed:
        user = _text(attributed[HEADER_USER])
    if HEADER_TAGS in attributed:
        try:
            tags = {**tags, **parse_tags(_text(attributed[HEADER_TAGS]))}
        except ValueError:
            notes = ("bad_ledger_tags",)
    return project, user, tags, notes


def _text(value: bytes | None) -> str | None:
    return None if value is None else plain_text(value.decode("utf-8", "replace"))


def accounted(content_type: bytes | None, coding: bytes | None, chunks: list, outcome: str) -> tuple:
    """Accountant.finish()'s tuple for a response's bytes as they came (held by the recorder)."""
    accountant = Accountant(content_type, coding, MAX_KEPT_BODY)
    try:
        if chunks:
            accountant.feed(b"".join(chunks))
    except Exception:
        pass  # noted as recorder_error; what was kept before it stands
    return accountant.finish(outcome == COMPLETED)


def held_without_secrets(chunks: list, content_type: bytes | None, coding: bytes | None, status: int, outcome: str,
                         key: bytes | None = None):
    """A short response's bytes as the journal may keep them: one chunk, anything key-shaped in it redacted.

    An error body the upstream compressed is decoded first (into what
    `accounted` keeps), so that a key it echoes can be found: errors are
    where upstreams echo keys, and they are few and short.
    """
    if coding is not None and status >= 400:
        return accounted_without_secrets(accounted(content_type, coding, chunks, outcome), key)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    known = (key,) if key else ()
    return [redact_bytes(body, known) if may_hold_secret(body, known) else body]


def accounted_without_secrets(kept: tuple, key: bytes | None = None) -> tuple:
    """Accountant.finish()'s tuple with anything key-shaped (or the call's `key`, or a secret known by value) in its
    body and payloads redacted."""
    stream, body, payloads, saw_done, notes = kept
    known = (key,) if key else ()
    if body is not None and may_hold_secret(body, known):
        body = redact_bytes(body, known)
    if any(may_hold_secret(p, known) for p in payloads):
        payloads = tuple(redact_bytes(p, known) for p in payloads)
    return stream, body, payloads, saw_done, notes


def settle(raw: RawCapture) -> Capture:
    """The Capture of a raw capture: what the recorder left to the writer (accounting for held bytes, attribution)."""
    outcome, response, context = raw.outcome, raw.response, raw.context
    if response is None:
        stream, body, payloads, saw_done, kept_notes = None, None, (), False, ()
    else:
        if type(response) is list:
            response = accounted(raw.content_type, raw.content_encoding, response, outcome)
        stream, body, payloads, saw_done, kept_notes = response  # Accountant.finish()'s tuple
        if outcome == ABORTED and saw_done:
            outcome = COMPLETED  # closed after [DONE]: nothing more was to come (the SDK does this)
    attempt, bad_attempt = _attempt(raw.attempt)
    if context is not None and not _plain_context(context):
        context = _plain_attribution(context)
    project, user, tags, bad_attribution = attribution_of(context, raw.attributed)
    if bad_attempt or bad_attribution:
        kept_notes = (*kept_notes, *bad_attempt, *bad_attribution)
    notes = raw.notes
    return capture_of((  # Capture's fields in order
        raw.call_id, raw.started_at, raw.ended_at, raw.first_byte_at, outcome, raw.http_status,
        stream, raw.request_body, body, payloads if type(payloads) is tuple else tuple(payloads), saw_done,
        attempt, raw.key_fingerprint, raw.key_last4, project, user, tags,  # attempt .. tags
        tuple(dict.fromkeys((*kept_notes, *notes))) if kept_notes or notes else (),  # notes
    ))


MAX_ATTEMPT = 1000  # the SDK's retry count; a larger one is not a count (and would not fit the column)


def _attempt(header: bytes | None) -> tuple[int, tuple]:
    """The attempt number of the X-Stainless-Retry-Count header, and a note when it is not one."""
    if header is None:
        return 0, ()
    try:
        number = int(header)
    except (ValueError, TypeError):
        return 0, ("bad_retry_count",)
    return (number, ()) if 0 <= number <= MAX_ATTEMPT else (0, ("bad_retry_count",))


def _plain_context(context: tuple) -> bool:
    """Whether an attribution in context holds only texts both databases store (the common case: checked cheaply)."""
    try:
        project, user, tags = context
        return all(value is None or (type(value) is str and value.isascii() and "\x00" not in value)
                   for value in (project, user)) and all(k.isascii() and v.isascii() and "\x00" not in k + v
                                                         for k, v in tags.items())
    except Exception:
        return False


def _plain_attribution(context: tuple) -> tuple:
    """An attribution in context as texts both databases store (the caller's program may pass anything)."""
    try:
        project, user, tags = context
    except Exception:
        return None, None, NO_TAGS
    texts = []
    for value in (project, user):
        try:
            texts.append(None if value is None else plain_text(str(value)))
        except Exception:
            texts.append(None)
    try:
        tags = {plain_text(str(k)): plain_text(str(v)) for k, v in dict(tags or {}).items()}
    except Exception:
        tags = NO_TAGS
    return (*texts, tags)


def as_capture(capture: Capture | RawCapture) -> Capture:
    """The Capture of what a recorder emitted (a Capture as it is)."""
    return settle(capture) if type(capture) is RawCapture else capture


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


_NO_RESPONSE = ResponseFacts()


def build_record(capture: Capture | RawCapture) -> CallRecord:
    """The CallRecord of a capture: parse, flag, decide the status.

    A capture whose pieces cannot be read at all still makes a record (when,
    who, how it ended; flagged `unreadable_capture`): a call that reached the
    upstream is a row in `calls`, whatever the caller sent with it.
    """
    try:
        return _record_of(capture)
    except Exception:
        return _bare_record(capture)  # a RawCapture has the same fields by these names


def _bare_record(capture: Capture | RawCapture) -> CallRecord:
    """What a capture says without parsing anything the caller or the upstream sent."""
    status = capture.outcome if capture.outcome in (COMPLETED, ABORTED, FAILED, REFUSED) else FAILED
    http_status = capture.http_status if type(capture.http_status) is int and 100 <= capture.http_status < 600 else None
    if http_status is not None and http_status >= 400 and status != REFUSED:
        status = ERROR
    return CallRecord(call_id=str(capture.call_id), started_at=_when(capture.started_at), status=status,
                      http_status=http_status, ended_at=_when(capture.ended_at),
                      response=_NO_RESPONSE._replace(anomalies=("unreadable_capture",)),
                      key_fingerprint=capture.key_fingerprint, key_last4=capture.key_last4)


def _record_of(capture: Capture | RawCapture) -> CallRecord:
    capture = as_capture(capture)
    body, stream, saw_done, notes = capture.body, capture.stream, capture.saw_done, capture.notes
    request = request_facts(capture.request_body)
    if body is not None:
        facts = facts_from_body(body)
    elif capture.payloads or stream:
        facts = facts_from_events(capture.payloads, saw_done)
    else:
        facts = _NO_RESPONSE
    if notes:
        facts = facts._replace(anomalies=facts.anomalies + tuple(notes))
    status, http_status = capture.outcome, capture.http_status
    if status == REFUSED:  # the recorder's own answer (a hard budget limit): the call never left
        facts = facts._replace(credits_charged=ZERO)
    elif http_status is not None and http_status >= 400:
        status = ERROR
    elif status == COMPLETED and stream and not saw_done:
        status = FAILED  # the stream ended without [DONE]: the upstream cut it
    return call_record_of((  # CallRecord's fields in order
        capture.call_id, _when(capture.started_at), status,
        request.model_requested, bool(request.stream if stream is None else stream), request.reasoning_effort,
        request.include_thoughts, request.tools, capture.attempt, _when(capture.first_byte_at),
        _when(capture.ended_at), http_status,
        http_status == 503 and facts.error_code in (None, "upstream_error"),  # refunded
        facts, capture.key_fingerprint, capture.key_last4, capture.project, capture.end_user, capture.tags,
    ))
