"""A wider rollup table made from `call_rollups`' stored rows (in SQL), not from the raw calls.

A migration that adds a rollup table builds it this way: the 15-minute rows
hold every dimension and every call, those of periods whose raw calls
retention deleted included, so their sums per wider bucket are the table's
rows. `rollup verify` then sets the table beside the raw calls as any other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, func, literal_column, select, type_coerce
from sqlalchemy.orm import Session

from .models import CallRollup, UTCDateTime
from .rollup_tables import DAY, HOUR, MEASURES, RollupTable, upsert


def _floor(column, grain, dialect: str):
    """A stored 15-minute bucket floored to an hour or a day (UTC)."""
    if dialect == "postgresql":
        width = {HOUR: "1 hour", DAY: "1 day"}[grain]
        return type_coerce(func.date_bin(literal_column(f"interval '{width}'"), column,
                                         literal_column("timestamptz '2000-01-01 00:00:00+00'")), UTCDateTime)
    # UTCDateTime's text on SQLite, 'YYYY-MM-DD HH:MM:SS.ffffff'
    if grain == HOUR:
        return type_coerce(func.substr(column, 1, 13).op("||")(":00:00.000000"), UTCDateTime)
    if grain == DAY:
        return type_coerce(func.substr(column, 1, 11).op("||")("00:00:00.000000"), UTCDateTime)
    raise ValueError(f"no floor to {grain}")


def build_from_quarters(session: Session, table: RollupTable, start: datetime, end: datetime) -> int:
    """Add to `table` the sums of `call_rollups`' rows of [start, end) (whole buckets of `table`: the caller's
    range, e.g. a UTC day) per its bucket, recorded bucket and dimensions; how many groups."""
    dialect = session.get_bind().dialect.name
    bucket = _floor(CallRollup.bucket_start, table.grain, dialect)
    recorded = _floor(CallRollup.recorded_bucket, table.grain, dialect)
    dims = [getattr(CallRollup, name) for name in table.dims]
    query = (select(bucket, recorded, *dims,
                    *[type_coerce(func.sum(getattr(CallRollup, name)), BigInteger) for name in MEASURES])
             .where(CallRollup.bucket_start >= start, CallRollup.bucket_start < end)
             .group_by(bucket, recorded, *dims))
    width = len(dims)
    groups = {(row[0], row[1], tuple(row[2:2 + width])): [int(v) for v in row[2 + width:]]
              for row in session.execute(query)}
    upsert(session, table, groups)
    return len(groups)
