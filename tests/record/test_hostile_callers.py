"""What a caller sends cannot keep its call out of the ledger or out of its limits: every call that reached the
upstream is one `calls` row, flagged where the caller's input could not be read, in-process and through the proxy."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select

from factories import insert_records, make_call
from hostile_input import (  # noqa: F401 (counting_sim: a fixture)
    DEEP_TAGS, HELLO, KEY, Flush, capped, counting_sim, counts, one_row_per_call_reaching_the_upstream,
)

from ledger.accounting.budgets import Budget
from ledger.config.alerts import AlertSettings
from ledger.config import Settings
from ledger.sink.capture import RawCapture, build_record, parse_tags, settle
from ledger.record.recorder import Recorder
from ledger.store.engine import Ledger
from ledger.store.models import Call



def settings_for(database_url: str, folder: Path, *budgets: Budget) -> Settings:
    return Settings(database_url=database_url, secret_path=str(folder / "secret"), journal_path=str(folder / "journal"),
                    writer_processes=0, limits_refresh_seconds=0.05, alerting=AlertSettings(tuple(budgets)))


def raw_capture(**fields) -> RawCapture:
    base = dict(call_id="c-1", started_at=1_796_601_600.0, ended_at=1_796_601_601.0, first_byte_at=None, outcome="completed",
                http_status=200, request_body=b"{}", content_type=b"application/json", content_encoding=None,
                response=[b'{"id": "chatcmpl-1", "choices": []}'], attempt=None, key_fingerprint=None, key_last4=None,
                context=None, attributed=None, notes=())
    return RawCapture(**{**base, **fields})


# ---------------------------------------------------------------- the pieces, one by one


@pytest.mark.parametrize("text", [DEEP_TAGS, '{"x": ' + "[" * 900 + "]" * 900 + "}", "[1]", '{"a": 1', "\udc80=1"])
def test_unreadable_tags_are_a_value_error_whatever_their_shape(text):
    try:
        parse_tags(text)
    except ValueError:
        pass  # what every caller catches


def test_a_capture_with_hostile_attribution_settles_into_a_flagged_record():
    attributed = {b"x-ledger-tags": DEEP_TAGS.encode(), b"x-ledger-project": b"a\x00b\xff", b"x-ledger-user": b"u"}
    record = build_record(settle(raw_capture(attributed=attributed, attempt=b"99999999999999999999",
                                             context=("p\ud800", 7, {"k": "v"}))))
    assert "bad_ledger_tags" in record.response.anomalies and "bad_retry_count" in record.response.anomalies
    assert record.tags == {"k": "v"} and record.attempt == 0
    assert "\x00" not in record.project and record.end_user == "u"
    for text in (record.project, record.end_user, *record.tags):
        text.encode("utf-8")  # what both databases store


@pytest.mark.parametrize("body", [
    b'{"model": "gemini\\u0000-3.1-pro", "messages": []}',
    b'{"model": "gemini-\\ud800", "reasoning_effort": "\\udfff", "messages": []}',
    b'{"model": "gemini-3.1-pro", "tools": [{"function": {"name": "a\\u0000"}}]}',
])
def test_texts_of_the_request_body_are_stored_whatever_they_hold(database_url, tmp_path, body):
    from ledger.sink.writer import LedgerWriter

    writer = LedgerWriter(database_url)
    writer.connect()
    try:
        result = writer.write([(raw_capture(request_body=body), None, None)])
    finally:
        writer.close()
    assert (result.inserted, result.kept_aside) == (1, 0)


# ---------------------------------------------------------------- the review's example, in-process and through the proxy


def test_deeply_nested_tags_leave_the_call_in_calls_flagged_and_inside_its_limits(database_url, tmp_path, counting_sim):
    with Ledger(database_url) as ledger:  # the project's limit is spent already
        insert_records(ledger, [make_call(datetime.now(timezone.utc), 5, project="spent")])
    rec = Recorder(settings=settings_for(database_url, tmp_path, capped("by-tag", "100", tags=(("team", "beta"),)),
                                         capped("by-project", project="spent")))
    try:
        client = httpx2.Client(transport=rec.transport(httpx2.HTTPTransport()))
        url, body = counting_sim.base_url + "/chat/completions", {"model": "gemini-3.1-pro", "messages": HELLO, "stream": False}
        headers = {"Authorization": f"Bearer {KEY}", "X-Ledger-Tags": DEEP_TAGS}
        answered = client.post(url, json=body, headers={**headers, "X-Ledger-Project": "open"})
        refused = client.post(url, json=body, headers={**headers, "X-Ledger-Project": "spent"})
        client.close()
        assert rec.flush(30)
    finally:
        rec.close()
    assert (answered.status_code, refused.status_code, counting_sim.reached) == (200, 402, 1)
    with Ledger(database_url) as ledger, ledger.session() as session:
        rows = list(session.scalars(select(Call).where(Call.key_last4.is_not(None)).order_by(Call.started_at)))
    assert [(r.project, r.status, r.tags) for r in rows] == [("open", "completed", None), ("spent", "refused", None)]
    assert all("bad_ledger_tags" in r.anomalies for r in rows)
    assert counts(database_url)[1] == 0



# ---------------------------------------------------------------- any shape, at every header and at the body


def test_any_header_and_body_leave_one_row_per_call_in_process(database_url, tmp_path, counting_sim):
    rec = Recorder(settings=settings_for(database_url, tmp_path, capped("by-tag", "1000000", tags=(("team", "beta"),)),
                                         capped("by-model", "1000000", model="gemini-3.1-pro")))
    try:
        flush = Flush(rec, rec.transport(httpx2.HTTPTransport()))
        one_row_per_call_reaching_the_upstream(counting_sim.base_url, counting_sim, flush, database_url, f"Bearer {KEY}")
    finally:
        rec.close()


# ---------------------------------------------------------------- the recorder's own failures still leave the row


def test_a_capture_no_record_can_be_parsed_from_is_a_bare_flagged_row():
    broken = settle(raw_capture())._replace(body=12345, project="p")  # a body that is not bytes: parsing raises
    record = build_record(broken)
    assert (record.call_id, record.status, record.http_status) == ("c-1", "completed", 200)
    assert record.response.anomalies == ("unreadable_capture",)


def test_a_call_whose_limit_check_or_capture_fails_is_recorded_all_the_same(database_url, tmp_path, counting_sim, monkeypatch):
    import ledger.record.call as call_module
    from ledger.record.limits import HardLimits

    rec = Recorder(settings=settings_for(database_url, tmp_path, capped("by-project", "100", project="p")))
    try:
        client = httpx2.Client(transport=rec.transport(httpx2.HTTPTransport()))
        url, body = counting_sim.base_url + "/chat/completions", {"model": "gemini-3.1-pro", "messages": HELLO, "stream": False}
        headers = {"Authorization": f"Bearer {KEY}", "X-Ledger-Project": "p"}
        with monkeypatch.context() as patched:
            patched.setattr(HardLimits, "check", lambda *args: 1 / 0)
            before_leaving = client.post(url, json=body, headers=headers)
        with monkeypatch.context() as patched:
            patched.setattr(call_module, "request_headers", lambda request: 1 / 0)
            at_the_end = client.post(url, json=body, headers=headers)
        client.close()
        assert rec.flush(30)
    finally:
        rec.close()
    assert (before_leaving.status_code, at_the_end.status_code, counting_sim.reached) == (200, 200, 2)
    with Ledger(database_url) as ledger, ledger.session() as session:
        rows = list(session.scalars(select(Call).order_by(Call.started_at)))
    assert [(r.project, r.status, r.anomalies) for r in rows] == [("p", "completed", None), (None, "completed", "recorder_error")]
