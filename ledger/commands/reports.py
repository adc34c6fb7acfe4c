"""`report`: spend over a period, grouped, to the terminal, standard output or a file (table, CSV, JSON, Excel, FOCUS)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence, TextIO

from ..accounting.periods import Period
from ..config import Settings
from ..accounting.group_keys import GroupKey
from ..reports.run import ReportRequest, write_report
from ..store.engine import Ledger

ReportFormat = Literal["table", "csv", "json", "xlsx", "focus"]


def report(settings: Settings, out: TextIO, *, period: Period, keys: Sequence[GroupKey] = (), account: str | None = None,
           fmt: ReportFormat = "table", output: str | None = None, with_calls: bool = False) -> list[Path]:
    """Make the report of `period` grouped by `keys`; returns the files written (none for a stream).

    `output` is a file, a folder or "-" (standard output: `out`); None is the reports folder (the table: `out`).
    """
    request = ReportRequest(period, tuple(keys), account, fmt, output, with_calls)
    with Ledger(settings.database_url, must_exist=True) as ledger:
        return write_report(settings, ledger, request, out)
