"""The ledger for an analyst: its calls and a period's spend as pandas DataFrames, every amount exact.

Credit and USD columns hold `Decimal` values (dtype object), never floats, so a
column's sum is the ledger's to the nano-credit. The rows are those of
`credit-ledger calls` and `credit-ledger report` (the same queries); nothing is written.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Sequence

import pandas as pd

from ..accounting.periods import Period, parse_period, zone_named
from ..accounting.group_keys import parse_group_keys
from ..money import from_nano
from ..store.call_rows import call_rows
from ..store.engine import Ledger
from ..store.reading import one_snapshot
from ..store.spend import Selection
from .calls import CALL_FIELDS, STORE_NAMES
from .spend import build_report
from .spend_out import figures_dict

_EVER = (datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(9999, 1, 1, tzinfo=timezone.utc))
_CREDITS = ("credits_charged", "credits_expected")
_WHOLE = ("http_status", "attempt", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")


def calls(database_url: str, since: datetime | None = None, until: datetime | None = None,
          project: str | None = None) -> pd.DataFrame:
    """The calls started in [since, until) (all by default), oldest first, with `calls --format json`'s columns."""
    selection = Selection(since or _EVER[0], until or _EVER[1])
    with Ledger(database_url, must_exist=True) as ledger, ledger.session() as session:
        rows = [tuple(row) for chunk in call_rows(session, selection, STORE_NAMES, project=project) for row in chunk]
    columns = list(zip(*rows)) if rows else [()] * len(CALL_FIELDS)
    # Column by column from Python values: a frame built from rows would turn a column of
    # integers with a None in it into floats, and a credit must never be one.
    return pd.DataFrame({name: _column(name, values) for name, values in zip(CALL_FIELDS, columns)})


def _column(name: str, values: tuple) -> pd.Series | pd.Index:
    if name in _CREDITS:
        return pd.Series([None if v is None else from_nano(v) for v in values], dtype=object)
    if name in _WHOLE:
        return pd.Series(values, dtype="Int64")
    if name == "started_at":  # the text both databases give: YYYY-MM-DD HH:MM:SS.ffffff, UTC
        return pd.Series(pd.to_datetime([str(v)[:26] for v in values], utc=True, format="%Y-%m-%d %H:%M:%S.%f"))
    if name == "stream":
        return pd.Series([bool(v) for v in values], dtype=bool)
    if name == "tags":
        return pd.Series([json.loads(v) if v else {} for v in values], dtype=object)
    if name == "anomalies":
        return pd.Series([v.split(",") if v else [] for v in values], dtype=object)
    return pd.Series(values, dtype=object)


def spend(database_url: str, period: str | Period, by: str | Sequence[str] = (), tz: str = "UTC",
          account: str | None = None) -> pd.DataFrame:
    """A period's spend, one row per group of `by` (one row in all without): `report --format json`'s groups.

    `period` as the CLI takes it (`2026-11`, `2026-W48`, ...) in zone `tz`, or a Period.
    """
    if isinstance(period, str):
        period = parse_period(period, zone_named(tz))
    keys = parse_group_keys(list(by) if not isinstance(by, str) else by)
    with Ledger(database_url, must_exist=True) as ledger, one_snapshot(ledger) as session:
        report = build_report(session, period, keys, account)
    labels = [key.label for key in keys]
    if not keys:
        rows = [figures_dict(report.total)] if not report.empty else []
    else:
        rows = [{**dict(zip(labels, group.values)), **figures_dict(group.figures), "share": group.share}
                for group in report.groups]
    frame = pd.DataFrame.from_records(rows, columns=[*labels, *figures_dict(report.total), *(["share"] if keys else [])])
    frame.attrs.update(period=period.label, start=period.start, end=period.end, zone=period.zone)
    return frame
