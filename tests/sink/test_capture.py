"""From what the recorder kept to a record: attribution, attempts, and how a call's status is decided."""

from __future__ import annotations

from factories import make_capture, make_raw_capture

from ledger.sink.capture import RawCapture, as_capture, build_record, parse_tags, settle


def raw(**changes) -> RawCapture:
    return make_raw_capture(0, call_id="c-1")._replace(**changes)


def test_a_raw_capture_settles_into_the_capture_of_the_same_call():
    for i in range(3):
        settled, made = as_capture(make_raw_capture(i, call_id=f"c-{i}")), make_capture(i, call_id=f"c-{i}")
        assert settled._replace(payloads=()) == made._replace(payloads=(), tags=dict(made.tags))
        assert build_record(settled) == build_record(made)


def test_attribution_headers_win_over_the_context_and_tags_merge():
    capture = settle(raw(context=("search", "u-1", {"team": "a", "feature": "x"}),
                         attributed={b"x-ledger-project": b"billing", b"x-ledger-tags": b"feature=summary,env=prod"}))
    assert (capture.project, capture.end_user) == ("billing", "u-1")
    assert dict(capture.tags) == {"team": "a", "feature": "summary", "env": "prod"}


def test_bad_attribution_tags_are_noted_and_the_rest_kept():
    capture = settle(raw(attributed={b"x-ledger-tags": b'{"not": "closed"'}, notes=("request_body_unread",)))
    assert capture.notes == ("bad_ledger_tags", "request_body_unread")
    assert "bad_ledger_tags" in build_record(capture).anomalies


def test_the_sdk_retry_count_is_the_attempt_and_garbage_is_attempt_zero():
    assert settle(raw(attempt=b"2")).attempt == 2
    assert settle(raw(attempt=b"two")).attempt == 0 and settle(raw(attempt=None)).attempt == 0


def test_tags_are_a_json_object_or_pairs():
    assert parse_tags('{"a": 1, "b": "x"}') == {"a": "1", "b": "x"}
    assert parse_tags(" a = 1 , b=2,,=3,c") == {"a": "1", "b": "2"}


def test_a_status_follows_the_http_status_and_the_streams_end():
    body = make_capture(0)  # a 200 JSON body
    stream = make_capture(1)  # a complete SSE stream
    error = make_capture(2)  # a 503 upstream_error
    assert build_record(body).status == "completed" and not build_record(body).refunded
    assert build_record(error).status == "error" and build_record(error).refunded  # refunded by the platform
    assert build_record(error._replace(http_status=429)).refunded is False
    cut = build_record(stream._replace(saw_done=False, payloads=stream.payloads[:-1]))
    assert cut.status == "failed" and "stream_incomplete" in cut.anomalies  # the upstream cut it
    assert build_record(stream._replace(outcome="aborted")).status == "aborted"
    closed_after_done = settle(raw(outcome="aborted", response=[b"data: {}\n\ndata: [DONE]\n\n"],
                                   content_type=b"text/event-stream"))
    assert closed_after_done.outcome == "completed"  # the SDK closes after [DONE]: nothing more was to come
    assert build_record(body._replace(http_status=None, body=None, stream=None, outcome="failed")).status == "failed"
