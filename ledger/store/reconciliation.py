"""The reconciliation of the ledger against the balance snapshots: the sums gathered in SQL, checked by the pure check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Sequence

from ..accounting.reconcile import (
    DEFAULT_BILLING_SETTLE_SECONDS,
    DEFAULT_ROUNDING,
    ROUNDING_RULES,
    reconcile_account,
)
from ..accounting.snapshots import Bracket
from ..accounting.verdict import AccountReconciliation, Reconciliation
from ..config import Settings
from ..money import ZERO
from . import balances, snapshot_windows
from .engine import Ledger
from .keys import account_fingerprints


def reconcile(
    ledger: Ledger,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    rounding: str = DEFAULT_ROUNDING,
    billing_settle_seconds: float = DEFAULT_BILLING_SETTLE_SECONDS,
    settle_seconds: float = 0.0,
    accounts: Sequence[str] | None = None,
    expected_accounts: Sequence[str] = (),
    cumulative_from_first: bool = False,
    bracketed: bool = False,
) -> Reconciliation:
    """Reconcile every account that has snapshots (or `accounts`) over [start, end].

    `expected_accounts` are reconciled even where they have no snapshot at
    all (the configured accounts: nothing to reconcile is a verdict of its
    own, not a pass). Snapshots taken less than `settle_seconds` ago are left
    out: calls that ended before them may not have reached the ledger yet
    (journal, writer). With `cumulative_from_first`, the cumulative line
    starts at the account's first snapshot ever, whatever `start`. With
    `bracketed` (a period: both bounds given), each account's snapshots run
    from the last before `start` to the first at or after `end`, and the
    result says which those were (`Bracket`). Nothing is written: a report
    reconciles a read-only ledger.
    """
    if bracketed and (start is None or end is None):
        raise ValueError("a bracketed reconciliation is of a period: give its start and end")
    if rounding not in ROUNDING_RULES:
        raise ValueError(f"unknown rounding rule {rounding!r}: one of {', '.join(ROUNDING_RULES)}")
    if settle_seconds > 0:
        settled = datetime.now(timezone.utc) - timedelta(seconds=settle_seconds)
        end = settled if end is None else min(end, settled)
    billing_settle = timedelta(seconds=billing_settle_seconds)
    results = []
    with ledger.session() as session:  # a fixed number of queries, whatever the number of accounts
        by_account = account_fingerprints(session)
        every_key = frozenset().union(*by_account.values()) if by_account else frozenset()
        names = list(accounts) if accounts is not None else balances.snapshot_accounts(session)
        names += [name for name in expected_accounts if name not in names]
        keys = {name: by_account.get(name, frozenset()) for name in names}
        brackets: dict[str, Bracket] = {}
        if bracketed:
            points_of = {}
            for name, (opening, inside, closing) in balances.bracketing_snapshots_of(session, names, start, end).items():
                brackets[name] = Bracket(start, end, opening, closing)
                points_of[name] = [p for p in (opening, *inside, closing) if p is not None]
        else:
            points_of = balances.ok_snapshots_of(session, names, start, end)
        windows = snapshot_windows.windows_and_overlaps_of(
            session, [(keys[name], points_of[name]) for name in names], every_key, billing_settle)
        since = _since_first(session, names, keys, points_of, every_key, billing_settle) if cumulative_from_first else {}
        failed = balances.failed_polls_of(session, names, start, end)
        for name, (sums, overlaps) in zip(names, windows):
            before, refunded_before = since.get(name, (None, ZERO))
            found, cumulative = reconcile_account(name, points_of[name], sums, overlaps, rounding, before,
                                                  refunded_before)
            results.append(AccountReconciliation(name, tuple(found), cumulative, failed[name], brackets.get(name)))
    return Reconciliation(tuple(results), start, end, rounding, billing_settle_seconds)


def _since_first(session, names, keys, points_of, every_key, billing_settle) -> dict[str, tuple]:
    """For each account whose points start after its first snapshot ever: (the first snapshot, the ledger's sums
    from it to the last point, the first's overlap) and the refunds before the points (the cumulative line's)."""
    firsts = balances.first_ok_snapshots_of(session, [name for name in names if points_of[name]])
    later = [name for name, first in firsts.items() if first is not None and first.id != points_of[name][0].id]
    whole = snapshot_windows.windows_and_overlaps_of(
        session, [(keys[name], [firsts[name], points_of[name][-1]]) for name in later], every_key, billing_settle)
    refunds = balances.refunds_between_of(
        session, {name: (firsts[name].taken_at, points_of[name][0].taken_at) for name in later})
    return {name: ((firsts[name], sums[0], overlaps[0]), refunds[name])
            for name, (sums, overlaps) in zip(later, whole)}


def reconcile_as_configured(settings: Settings, ledger: Ledger, start: datetime | None = None,
                            end: datetime | None = None, **options) -> Reconciliation:
    """The reconciliation every caller makes (`reconcile`, a close, a workbook's Summary, the service's jobs):
    the config's rounding and billing settle time, and every configured account expected, snapshots or not."""
    return reconcile(ledger, start, end, rounding=settings.reconcile.rounding,
                     billing_settle_seconds=settings.reconcile.billing_settle_seconds,
                     expected_accounts=[a.name for a in settings.accounts], **options)
