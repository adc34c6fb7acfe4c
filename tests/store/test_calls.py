"""The batch insert converts values by position; it must store what the columns' own types would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from factories import make_capture
from sqlalchemy.dialects import postgresql, sqlite

from ledger.accounting.pricing import default_rate_book, price
from ledger.accounting.records import record_digest
from ledger.sink.capture import build_record
from ledger.sink.writer import BatchResult
from ledger.store.calls import CALL_COLUMNS, call_row, sqlite_utc_text, stored_values
from ledger.store.models import Call, as_utc


def test_call_columns_are_the_tables_columns_in_order():
    assert list(CALL_COLUMNS) == [c.name for c in Call.__table__.columns if c.name != "id"]


def values_of(i: int, recorded_at: datetime) -> tuple:
    record = build_record(make_capture(i))
    return call_row(record, price(record, default_rate_book()), record_digest(record), recorded_at)


@pytest.mark.parametrize("dialect, timestamp", [(sqlite.dialect(), sqlite_utc_text), (postgresql.psycopg.dialect(), as_utc)])
def test_positional_conversion_equals_the_column_types(dialect, timestamp):
    columns = {c.name: c for c in Call.__table__.columns}
    recorded_at = datetime(2026, 11, 25, 9, 30, 1, 250, tzinfo=timezone(timedelta(hours=-5)))
    for i in range(6):  # bodies, streams and errors, in turn
        values = values_of(i, recorded_at)
        for name, value, stored in zip(CALL_COLUMNS, values, stored_values(values, timestamp)):
            processor = columns[name].type._cached_bind_processor(dialect)
            expected = processor(value) if processor is not None else value
            if dialect.name == "postgresql" and isinstance(expected, datetime):
                assert stored == expected and stored.tzinfo is timezone.utc, name  # the same instant, in UTC
            elif isinstance(stored, bool):  # sqlite3 binds a bool as the integer the type would give
                assert int(stored) == expected, name
            else:
                assert stored == expected and type(stored) is type(expected), name


def test_sqlite_text_of_odd_datetimes_and_naive_ones_refused():
    processor = Call.__table__.c.started_at.type._cached_bind_processor(sqlite.dialect())
    for value in (datetime(5, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(2026, 12, 31, 23, 59, 59, 999999,
                  tzinfo=timezone(timedelta(hours=14))), datetime.fromtimestamp(1776356269.7, timezone.utc)):
        assert sqlite_utc_text(value) == processor(value)
    for convert in (sqlite_utc_text, as_utc):
        with pytest.raises(ValueError):
            convert(datetime(2026, 1, 1))
    assert stored_values(values_of(0, datetime.now(timezone.utc)), as_utc)[CALL_COLUMNS.index("credits_charged")] == 250_000_000


def odd_captures() -> list:
    """Captures of every shape the writer's one-pass rows must treat as build_record + price do."""

    base = [make_capture(i) for i in range(6)]
    body = base[0]
    odd = [
        body._replace(body=b'{"usage": {"prompt_tokens": NaN}}'),
        body._replace(body=b"not json", notes=("body_too_large",)),
        body._replace(body=b'{"usage": {"prompt_tokens": -3, "completion_tokens": true}, "credits_consumed": "1"}'),
        body._replace(body=b"", outcome="failed", http_status=None, stream=None),
        body._replace(body=None, payloads=(), stream=True, saw_done=False, outcome="aborted"),
        body._replace(request_body=b'{"model": "gemini-3.1-pro", "stream": true, "reasoning_effort": "high", '
                b'"tools": [{"function": {"name": "f"}}, 3]}', tags={"b": "2", "a": "1"}),
        body._replace(request_body=b"[1]", body=b'{"error": {"code": 5, "type": "x"}}', http_status=429),
        base[1]._replace(payloads=(b"garbage", *base[1].payloads), attempt=2, key_fingerprint=None),
        base[2]._replace(http_status=503, body=b'{"error": {"code": "other"}}', tags={}),
    ]
    return base + odd


def test_the_writers_rows_of_journal_lines_are_the_records_of_their_captures_priced():
    from ledger.sink.wire import encode, entry_digest
    from ledger.sink.writer import LedgerWriter

    writer = LedgerWriter("sqlite:///unused.db")  # prepare() needs no database
    captures = odd_captures()
    lines = [encode(c) for c in captures]
    records, rows, aside = writer.prepare([(None, line, None) for line in lines])  # decoded from the lines
    assert aside == [] and len(rows) == len(captures)
    for capture, line, row, record in zip(captures, lines, rows, records):
        assert record == build_record(capture), capture
        assert row == call_row(record, price(record, default_rate_book()), entry_digest(line), row[-1]), capture


def test_a_replay_whose_record_was_stored_by_an_earlier_version_is_a_duplicate_and_other_content_a_conflict(database_url):
    """Rows of earlier versions carry the record's digest, rows of journal entries the entry's."""

    from ledger.sink.wire import encode
    from ledger.store.engine import Ledger
    from ledger.store.models import RejectedRecord
    from ledger.store.calls import insert_calls
    from ledger.sink.writer import LedgerWriter
    from sqlalchemy import func, select

    captures = [make_capture(i) for i in range(9)]
    with Ledger(database_url) as ledger, ledger.session() as session:  # as an earlier version stored them
        insert_calls(session, [(r, price(r, default_rate_book())) for r in map(build_record, captures[:6])])
    writer = LedgerWriter(database_url)
    writer.connect()
    try:
        again = [(None, encode(c), None) for c in captures]  # 6 stored, 3 new: the bulk path's fallback
        assert writer.write(again) == BatchResult(3, 6, 0, 0)
        assert writer.write(again) == BatchResult(0, 9, 0, 0)  # entry digests now, for the 3
        other = captures[1]._replace(attempt=7)
        assert writer.write([(None, encode(other), None)]) == BatchResult(0, 0, 1, 0)
        changed = [c._replace(project="elsewhere") for c in captures[6:8]] + [make_capture(9)]
        assert writer.write([(None, encode(c), None) for c in changed]) == BatchResult(1, 0, 2, 0)
    finally:
        writer.close()
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 10
        assert session.scalar(select(func.count()).select_from(RejectedRecord)) == 3


def test_the_keys_of_a_batch_are_remembered_with_their_own_last_four(database_url):
    from ledger.store.calls import insert_calls
    from ledger.store.engine import Ledger
    from ledger.store.models import ApiKey
    from sqlalchemy import select

    captures = [make_capture(0)._replace(key_fingerprint="a" * 64, key_last4="Ab12"),
                make_capture(1)._replace(key_fingerprint="b" * 64, key_last4="Cd34"),
                make_capture(2)._replace(key_fingerprint=None, key_last4=None)]
    with Ledger(database_url) as ledger, ledger.session() as session:
        insert_calls(session, [(r, price(r, default_rate_book())) for r in map(build_record, captures)])
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert dict(session.execute(select(ApiKey.fingerprint, ApiKey.last4)).all()) == {"a" * 64: "Ab12", "b" * 64: "Cd34"}


def test_a_text_too_wide_for_its_column_is_cut_and_flagged_the_same_on_every_database(database_url):
    """A call the upstream charged is a call in the ledger: a 500-character project does not keep it out."""
    from ledger.sink.wire import encode
    from ledger.sink.writer import LedgerWriter
    from ledger.store.engine import Ledger
    from sqlalchemy import select

    long_project, long_effort = "p" * 500, "e" * 40
    capture = make_capture(0)._replace(
        project=long_project, end_user="u" * 300,
        request_body=b'{"model": "gemini-3.1-pro", "stream": false, "reasoning_effort": "' + long_effort.encode() + b'"}')
    writer = LedgerWriter(database_url)
    writer.connect()
    try:
        assert writer.write([(None, encode(capture), None), (None, encode(make_capture(1)), None)]) == BatchResult(2, 0, 0, 0)
    finally:
        writer.close()
    with Ledger(database_url) as ledger, ledger.session() as session:
        row = session.scalars(select(Call).where(Call.call_id == capture.call_id)).one()
        assert row.project == long_project[:200] and row.end_user == "u" * 200 and row.reasoning_effort == long_effort[:20]
        assert set(row.anomalies.split(",")) == {"truncated_project", "truncated_end_user", "truncated_reasoning_effort"}
        assert row.pricing_class in ("ok", "rounding")  # still priced as the call it is


def test_the_columns_a_caller_or_upstream_fills_are_all_cut_to_their_width():
    from ledger.accounting.parsing import MAX_TEXT
    from ledger.store.calls import OUTSIDE_TEXTS, TEXT_LIMITS, UNBOUNDED_LIMITS

    # What the row does not look at, parsing has cut to a width its column holds.
    looked_at = {CALL_COLUMNS[index] for index, _ in UNBOUNDED_LIMITS}
    assert all(Call.__table__.c[name].type.length >= MAX_TEXT for name in set(OUTSIDE_TEXTS) - looked_at)
    assert {"project", "end_user", "reasoning_effort"} <= looked_at

    widths = {name: Call.__table__.c[name].type.length for name in OUTSIDE_TEXTS}
    assert all(widths.values()) and len(TEXT_LIMITS) == len(OUTSIDE_TEXTS)
    record = build_record(make_capture(0))
    wide = record._replace(project="x" * 999, response=record.response._replace(finish_reason="f" * 999, error_code="c" * 999))
    row = call_row(wide, price(wide, default_rate_book()), "d", datetime.now(timezone.utc))
    for name, width in widths.items():
        value = row[CALL_COLUMNS.index(name)]
        assert value is None or len(value) <= width, name
