"""The monthly users' rollup made from, and checked against, the daily users' rows of its months (in SQL).

`call_rollups_monthly_users` has the dimensions of `call_rollups_daily_users`
(so a row's dims_key is the same) per UTC month and recorded month: each of
its rows is the sum of the daily rows of its month whose recording falls in
its recorded month. The writer adds to both in one transaction; a rebuild of
some days makes their months anew from the days' rows once these are made;
verify sets each month beside that sum (the daily rows are checked against
the calls themselves, and stay when retention deletes the calls).
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import BigInteger, func, literal_column, select, text, type_coerce
from sqlalchemy.orm import Session

from .models import UTCDateTime
from .rollup_tables import DAILY_USERS, MEASURES, MONTHLY_USERS


def _month(column, dialect: str):
    """The UTC month holding a stored bucket (its first instant)."""
    if dialect == "postgresql":
        return type_coerce(func.date_trunc("month", column, literal_column("'UTC'")), UTCDateTime)
    # UTCDateTime's text on SQLite, 'YYYY-MM-DD HH:MM:SS.ffffff': the first of its month at midnight
    return type_coerce(func.substr(column, 1, 8).op("||")("01 00:00:00.000000"), UTCDateTime)


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """[start, end) widened to whole UTC months."""
    return (None if start is None else MONTHLY_USERS.floor(start)), (None if end is None else MONTHLY_USERS.ceil(end))


def _summed(dialect: str, start: datetime | None, end: datetime | None):
    """The daily users' rows of the months [start, end) summed per month, recorded month and dimensions."""
    day = DAILY_USERS.model
    month, recorded = _month(day.bucket_start, dialect), _month(day.recorded_bucket, dialect)
    dims = [getattr(day, name) for name in DAILY_USERS.dims]
    query = select(month.label("bucket_start"), recorded.label("recorded_bucket"), day.dims_key, *dims,
                   *[type_coerce(func.sum(getattr(day, name)), BigInteger).label(name) for name in MEASURES])
    if start is not None:
        query = query.where(day.bucket_start >= start)
    if end is not None:
        query = query.where(day.bucket_start < end)
    return query.group_by(month, recorded, day.dims_key, *dims)


def rebuild_months(session: Session, start: datetime | None, end: datetime | None) -> None:
    """Make the monthly users' rows of the UTC months [start, end) touches anew from the daily users' rows."""
    start, end = _range(start, end)
    model = MONTHLY_USERS.model
    delete = model.__table__.delete()
    if start is not None:
        delete = delete.where(model.bucket_start >= start)
    if end is not None:
        delete = delete.where(model.bucket_start < end)
    session.execute(delete)
    columns = ["bucket_start", "recorded_bucket", "dims_key", *MONTHLY_USERS.dims, *MEASURES]
    summed = _summed(session.get_bind().dialect.name, start, end)
    session.execute(model.__table__.insert().from_select(columns, summed))


def compare_months(session: Session, start: datetime, end: datetime) -> list[tuple]:
    """[(bucket, recorded bucket, dims_key), dims, stored sums, summed sums] of each monthly users' row of the months
    [start, end) touches that is not its daily rows' sum (None: no such row on that side), in key order."""
    start, end = _range(start, end)
    model, width = MONTHLY_USERS.model, len(MONTHLY_USERS.dims)
    stored_query = select(model.bucket_start, model.recorded_bucket, model.dims_key,
                          *[getattr(model, name) for name in MONTHLY_USERS.dims],
                          *[type_coerce(getattr(model, name), BigInteger) for name in MEASURES])
    stored_query = stored_query.where(model.bucket_start >= start, model.bucket_start < end)
    sides = []
    for query in (stored_query, _summed(session.get_bind().dialect.name, start, end)):
        sides.append({(row[0], row[1], row[2], tuple(row[3:3 + width])): tuple(int(v) for v in row[3 + width:])
                      for row in session.execute(query)})
    stored, summed = sides
    return [((key[0], key[1], key[2]), key[3], stored.get(key), summed.get(key))
            for key in sorted(stored.keys() | summed.keys(), key=lambda k: k[:3])
            if stored.get(key) != summed.get(key)]


def remake_months(session: Session, start: datetime | None = None, end: datetime | None = None) -> None:
    """Make the monthly users' rows of the UTC months [start, end) touches anew from the daily users' rows, in the
    caller's transaction, writers kept out of both tables until it commits (the writers' order)."""
    if session.get_bind().dialect.name == "postgresql":
        for table in (DAILY_USERS, MONTHLY_USERS):
            session.execute(text(f"LOCK TABLE {table.name} IN EXCLUSIVE MODE"))
    rebuild_months(session, start, end)


def month_ranges(days: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The UTC months the ranges touch, each as [start, end)."""
    found: list[tuple[datetime, datetime]] = []
    for start, end in days:
        month = MONTHLY_USERS.floor(start)
        while month < end:
            if not found or found[-1][0] != month:
                found.append((month, MONTHLY_USERS.after(month)))
            month = MONTHLY_USERS.after(month)
    return found
