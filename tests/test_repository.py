"""The batch insert converts values by position; it must store what the columns' own types would."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_writer import make_capture  # noqa: E402

from ledger.capture import build_record  # noqa: E402
from ledger.models import Call  # noqa: E402
from ledger.pricing import default_rate_book, price  # noqa: E402
from ledger.models import as_utc  # noqa: E402
from ledger.repository import CALL_COLUMNS, _sqlite_utc_text, _stored, call_values  # noqa: E402
from ledger.usage import record_digest  # noqa: E402


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
