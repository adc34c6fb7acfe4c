"""The records of the golden journal files (tests/sink/golden/), built by name.

The files hold these records as the versions named in each file's name wrote
them; they were written by those versions' code and are never regenerated: a
change that reads or writes them differently changes the journal's format.
"""

from __future__ import annotations

from ledger.sink.capture import Capture, RawCapture

BODY = Capture(
    call_id="golden-body", started_at=1_776_356_269.25, ended_at=1_776_356_270.5, first_byte_at=1_776_356_269.75,
    outcome="completed", http_status=200, stream=False,
    request_body=b'{"model":"gemini-3.1-pro","messages":[{"role":"user","content":"q\\n\\u0000"}]}',
    body=b'{"id":"chatcmpl-1","model":"gemini-3.1-pro-preview","usage":{"prompt_tokens":194,"completion_tokens":229,'
         b'"total_tokens":880},"credits_consumed":0.25}\n\x00\xff',
    payloads=(), saw_done=False, attempt=2, key_fingerprint="f" * 32, key_last4="Zq9x",
    project="project-\u00e9", end_user="u-42", tags={"feature": "summary", "team": "n\u00f8rd"},
    notes=("body_too_large", "bad_retry_count"),
)

STREAM = Capture(
    call_id="golden-stream", started_at=1_776_356_300.0, ended_at=1_776_356_301.0, first_byte_at=1_776_356_300.5,
    outcome="completed", http_status=200, stream=True,
    request_body=b'{"model":"gemini-3.1-pro","stream":true}',
    body=None, payloads=(b'{"id":"c-2","choices":[{"delta":{"content":"An"}}]}', b'{"usage":{"prompt_tokens":3}}'),
    saw_done=True, attempt=0, key_fingerprint=None, key_last4=None, project=None, end_user=None, tags={}, notes=(),
)

ERROR = Capture(
    call_id="golden-error", started_at=1_776_356_400.0, ended_at=None, first_byte_at=None,
    outcome="failed", http_status=None, stream=None,
)

CAPTURES = (BODY, STREAM, ERROR)

RAW_CHUNKS = RawCapture(
    call_id="golden-raw-chunks", started_at=1_776_356_500.0, ended_at=1_776_356_500.5, first_byte_at=1_776_356_500.25,
    outcome="completed", http_status=200, request_body=b'{"model":"gemini-3.1-pro"}',
    content_type=b"application/json", content_encoding=None,
    response=[b'{"id":"chatcmpl-3","model":"gemini-3.1-pro-preview",', b'"usage":{"prompt_tokens":5},"credits_consumed":0.5}'],
    attempt=b"1", key_fingerprint="a" * 32, key_last4="Ab12",
    context=("project-1", "u-7", {"feature": "chat"}), attributed={b"x-ledger-user": b"u-8"}, notes=("request_unreadable",),
)

RAW_KEPT = RawCapture(
    call_id="golden-raw-kept", started_at=1_776_356_600.0, ended_at=1_776_356_601.0, first_byte_at=1_776_356_600.5,
    outcome="aborted", http_status=200, request_body=b"{}",
    content_type=b"text/event-stream", content_encoding=b"gzip",
    response=(True, None, (b'{"id":"c-4"}',), True, ("long_stream",)),
    attempt=None, key_fingerprint=None, key_last4=None, context=None, attributed=None, notes=(),
)

RAW_NONE = RawCapture(
    call_id="golden-raw-none", started_at=1_776_356_700.0, ended_at=1_776_356_700.1, first_byte_at=None,
    outcome="refused", http_status=429, request_body=b"", content_type=None, content_encoding=None,
    response=None, attempt=b"x", key_fingerprint=None, key_last4=None, context=(None, None, {}),
    attributed={b"x-ledger-tags": b"{not json"}, notes=(),
)

RAW_CAPTURES = (RAW_CHUNKS, RAW_KEPT, RAW_NONE)
