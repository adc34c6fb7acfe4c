"""`balance` and `reconcile`: the prepaid balances polled now, and their movements matched against the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from ..accounting.verdict import GAP_VERDICT, NOTHING_VERDICT, PARTIAL_VERDICT
from ..config import Settings
from ..reports.text import format_balances, format_reconciliation
from ..service.polling import poll_balances
from ..store.engine import Ledger
from ..store.reconciliation import reconcile_as_configured
from . import EXIT_GAP, EXIT_NOTHING, EXIT_OK, EXIT_PROBLEM

_EXIT_OF_VERDICT = {GAP_VERDICT: EXIT_GAP, NOTHING_VERDICT: EXIT_NOTHING, PARTIAL_VERDICT: EXIT_NOTHING}


def balance(settings: Settings, out: TextIO) -> int:
    """Poll every account now, store the snapshots and print them: EXIT_OK when every account answered."""
    with Ledger(settings.database_url) as ledger:
        values = poll_balances(settings, ledger)
    out.write(format_balances(values))
    return EXIT_OK if all(v.ok for v in values) else EXIT_PROBLEM


def reconcile(settings: Settings, out: TextIO, *, start: datetime | None = None, end: datetime | None = None,
              as_json: bool = False) -> int:
    """The reconciliation's table (or JSON): EXIT_GAP for an unexplained gap, EXIT_NOTHING when nothing was checked."""
    with Ledger(settings.database_url, must_exist=True) as ledger:
        result = reconcile_as_configured(settings, ledger, start, end)
    out.write(result.to_json() + "\n" if as_json else format_reconciliation(result))
    return _EXIT_OF_VERDICT.get(result.verdict, EXIT_OK)
