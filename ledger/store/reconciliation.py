"""The reconciliation of the ledger against the balance snapshots: the sums gathered in SQL, checked by the pure check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Sequence

from ..accounting.reconcile import (
    DEFAULT_EDGE_SECONDS,
    DEFAULT_ROUNDING,
    ROUNDING_RULES,
    AccountReconciliation,
    Reconciliation,
    reconcile_account,
)
from . import balances
from .engine import Ledger
from .keys import account_fingerprints


def reconcile(
    ledger: Ledger,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    rounding: str = DEFAULT_ROUNDING,
    edge_seconds: float = DEFAULT_EDGE_SECONDS,
    settle_seconds: float = 0.0,
    accounts: Sequence[str] | None = None,
    cumulative_from_first: bool = False,
) -> Reconciliation:
    """Reconcile every account that has snapshots (or `accounts`) over [start, end].

    Snapshots taken less than `settle_seconds` ago are left out: calls that
    ended before them may not have reached the ledger yet (journal, writer).
    With `cumulative_from_first`, the cumulative line starts at the account's
    first snapshot ever, whatever `start` (one more query, not one per window).
    Top-ups found are recorded (idempotent).
    """
    if rounding not in ROUNDING_RULES:
        raise ValueError(f"unknown rounding rule {rounding!r}: one of {', '.join(ROUNDING_RULES)}")
    if settle_seconds > 0:
        settled = datetime.now(timezone.utc) - timedelta(seconds=settle_seconds)
        end = settled if end is None else min(end, settled)
    edge = timedelta(seconds=edge_seconds)
    results = []
    with ledger.session() as session:
        by_account = account_fingerprints(session)
        every_key = frozenset().union(*by_account.values()) if by_account else frozenset()
        names = list(accounts) if accounts is not None else balances.snapshot_accounts(session)
        for name in names:
            fps = by_account.get(name, frozenset())
            points = balances.ok_snapshots(session, name, start, end)
            balances.record_top_ups(session, name, points)
            sums = [balances.ledger_sums(session, fps, every_key, a.taken_at, b.taken_at) for a, b in zip(points, points[1:])]
            edges = [balances.edge_charges(session, fps, p.taken_at, edge) for p in points]
            since = None
            if cumulative_from_first and points:
                first = balances.first_ok_snapshot(session, name)
                if first is not None and first.id != points[0].id:
                    since = (
                        first,
                        balances.ledger_sums(session, fps, every_key, first.taken_at, points[-1].taken_at),
                        balances.edge_charges(session, fps, first.taken_at, edge),
                    )
            windows, cumulative = reconcile_account(name, points, sums, edges, rounding, since)
            results.append(
                AccountReconciliation(name, tuple(windows), cumulative, balances.failed_polls(session, name, start, end))
            )
    return Reconciliation(tuple(results), start, end, rounding, edge_seconds)
