"""`close`, `reopen` and `closes`: a period's figures and the digest of its calls fixed, undone, and listed."""

from __future__ import annotations

from typing import TextIO

from ..accounting.periods import Period
from ..config import Settings
from ..reports.closes import print_closes
from ..service.closing import close_period, reopen_period
from ..store.engine import Ledger
from . import EXIT_OK


def close(settings: Settings, out: TextIO, *, period: Period, accept_gap: str | None = None) -> int:
    """Close `period` and print what was fixed; GapError (nothing written) when its reconciliation has a gap
    that `accept_gap`, a reason, does not accept."""
    with Ledger(settings.database_url, must_exist=True) as ledger:
        result = close_period(settings, ledger, period, accept_gap=accept_gap)
    row, report = result.row, result.report
    print(f"closed {period.label} ({period.zone}) at {row.cutoff_at:%Y-%m-%dT%H:%M:%SZ}: {row.calls} calls, "
          f"{report.total.credits_charged} credits charged, reconciliation {result.verdict}"
          + (f" (accepted: {row.reason})" if row.reason else ""), file=out)
    print(f"digest {row.calls_digest}", file=out)
    for account in result.reconciliation.accounts:
        if account.bracket is not None:
            print(f"bracket {account.account}: {account.bracket.describe()}", file=out)
    return EXIT_OK


def reopen(settings: Settings, out: TextIO, *, period: Period, reason: str) -> int:
    """Reopen a closed period: a new row, with the reason."""
    with Ledger(settings.database_url, must_exist=True) as ledger:
        reopen_period(ledger, period, reason)
    print(f"reopened {period.label} ({period.zone}): {reason}", file=out)
    return EXIT_OK


def show_closes(settings: Settings, out: TextIO, *, as_json: bool = False) -> int:
    """Every close and reopen, oldest first, and which closes are in force."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        print_closes(session, out, as_json)
    return EXIT_OK
