"""The batch insert converts values by position; it must store what the columns' own types would."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_writer import make_capture  # noqa: E402

from ledger.capture import build_record, record_of_values  # noqa: E402
from ledger.models import Call  # noqa: E402
from ledger.pricing import default_rate_book, price  # noqa: E402
from ledger.models import as_utc  # noqa: E402
from ledger.repository import CALL_COLUMNS, _sqlite_utc_text, _stored, call_values  # noqa: E402
from ledger.usage import record_digest  # noqa: E402
from ledger.writer import BatchResult  # noqa: E402


def test_call_columns_are_the_tables_columns_in_order():
    assert list(CALL_COLUMNS) == [c.name for c in Call.__table__.columns if c.name != "id"]


def values_of(i: int, recorded_at: datetime) -> tuple:
    record = build_record(make_capture(i))
    return call_values(record, price(record, default_rate_book()), record_digest(record), recorded_at)


@pytest.mark.parametrize("dialect, timestamp", [(sqlite.dialect(), _sqlite_utc_text), (postgresql.psycopg.dialect(), as_utc)])
def test_positional_conversion_equals_the_column_types(dialect, timestamp):
    columns = {c.name: c for c in Call.__table__.columns}
    recorded_at = datetime(2026, 11, 25, 9, 30, 1, 250, tzinfo=timezone(timedelta(hours=-5)))
    for i in range(6):  # bodies, streams and errors, in turn
        values = values_of(i, recorded_at)
        for name, value, stored in zip(CALL_COLUMNS, values, _stored(values, timestamp)):
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
        assert _sqlite_utc_text(value) == processor(value)
    for convert in (_sqlite_utc_text, as_utc):
        with pytest.raises(ValueError):
            convert(datetime(2026, 1, 1))
    assert _stored(values_of(0, datetime.now(timezone.utc)), as_utc)[CALL_COLUMNS.index("credits_charged")] == 250_000_000


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


def test_the_writers_one_pass_rows_equal_build_record_and_price():
    from ledger.capture import encode, entry_digest, line_fields
    from ledger.writer import LedgerWriter

    writer = LedgerWriter("sqlite:///unused.db")  # prepare() needs no database
    captures = odd_captures()
    lines = [encode(c) for c in captures]
    rows, sources, aside = writer.prepare([(line_fields(line), line, None) for line in lines])
    assert aside == [] and len(rows) == len(captures)
    for capture, line, row, values in zip(captures, lines, rows, sources):
        record = build_record(capture)
        expected = call_values(record, price(record, default_rate_book()), entry_digest(line), row[-1])
        assert row == expected, capture
        assert build_record(capture) == record_of_values(values)


def test_a_replay_whose_record_was_stored_by_an_earlier_version_is_a_duplicate_and_other_content_a_conflict(database_url):
    """Rows of earlier versions carry the record's digest, rows of journal entries the entry's."""

    from ledger.capture import encode, line_fields
    from ledger.db import Ledger
    from ledger.models import RejectedRecord
    from ledger.repository import insert_calls
    from ledger.writer import LedgerWriter
    from sqlalchemy import func, select

    captures = [make_capture(i) for i in range(9)]
    with Ledger(database_url) as ledger, ledger.session() as session:  # as an earlier version stored them
        insert_calls(session, [(r, price(r, default_rate_book())) for r in map(build_record, captures[:6])])
    writer = LedgerWriter(database_url)
    writer.connect()
    try:
        again = [(line_fields(encode(c)), encode(c), None) for c in captures]  # 6 stored, 3 new: the bulk path's fallback
        assert writer.write_fields(again) == BatchResult(3, 6, 0, 0)
        assert writer.write_fields(again) == BatchResult(0, 9, 0, 0)  # entry digests now, for the 3
        other = captures[1]._replace(attempt=7)
        assert writer.write_fields([(line_fields(encode(other)), encode(other), None)]) == BatchResult(0, 0, 1, 0)
        changed = [c._replace(project="elsewhere") for c in captures[6:8]] + [make_capture(9)]
        assert writer.write_fields([(line_fields(encode(c)), encode(c), None) for c in changed]) == BatchResult(1, 0, 2, 0)
    finally:
        writer.close()
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 10
        assert session.scalar(select(func.count()).select_from(RejectedRecord)) == 3
