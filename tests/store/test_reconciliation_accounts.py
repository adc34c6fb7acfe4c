"""Every account reconciled at once is each account reconciled alone: the batched reads (one query for every
account's snapshots, windows, first snapshots, refunds and failed polls) split back to the right account."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from ledger.accounting.snapshots import OK, SERVER_ERROR, BalanceSnapshotValue
from ledger.store import balances
from ledger.store.models import Call
from ledger.store.reconciliation import reconcile
from ledger_rows import T0, call_values, insert, register

ACCOUNTS = ("alpha", "beta", "gamma")


def poll(ledger, account: str, minutes: int, consumed: str | None, status: str = OK) -> None:
    figures = {} if consumed is None else {
        "balance": Decimal(1000) - Decimal(consumed), "total_purchased": Decimal(1000), "total_consumed": Decimal(consumed)}
    with ledger.session() as session:
        balances.insert_snapshot(session, BalanceSnapshotValue(account, T0 + timedelta(minutes=minutes), status, **figures))


@pytest.fixture
def accounts(ledger):
    """Three accounts' keys, calls of every kind between their polls (and of no known key), a call outlasting a
    window, a refund (total_consumed falling) of beta's, failed polls of gamma's."""
    rows = []
    for n, account in enumerate(ACCOUNTS):
        fp = str(n) * 64
        register(ledger, fp, f"k{n}00", "main", account)
        for minute in range(1, 60, 3 + n):
            rows.append(call_values(started_at=T0 + timedelta(minutes=minute), key_fingerprint=fp,
                                    charged=f"0.{25 + n}", pricing_class=("ok", "rounding", "overcharge")[minute % 3],
                                    status="completed" if minute % 7 else "aborted"))
        consumed = Decimal(0)
        for minute in range(0, 70, 10 + 5 * n):
            consumed += Decimal("1.5") if (account, minute) != ("beta", 45) else Decimal(-2)
            poll(ledger, account, minute, str(consumed))
    rows.append(call_values(started_at=T0 + timedelta(minutes=12), key_fingerprint="e" * 64, charged="0.5"))
    long_id = "long-call"
    rows.append(call_values(call_id=long_id, started_at=T0 + timedelta(minutes=2), key_fingerprint="1" * 64))
    insert(ledger, rows)
    with ledger.session() as session:
        session.execute(update(Call).where(Call.call_id == long_id).values(ended_at=T0 + timedelta(minutes=41)))
    poll(ledger, "gamma", 5, None, SERVER_ERROR)
    poll(ledger, "gamma", 25, None, SERVER_ERROR)


@pytest.mark.parametrize("bounds, options", [
    ((None, None), {}),
    ((T0 + timedelta(minutes=20), T0 + timedelta(minutes=65)), {}),
    ((T0 + timedelta(minutes=20), T0 + timedelta(minutes=50)), {"bracketed": True}),
    ((T0 + timedelta(minutes=25), None), {"cumulative_from_first": True}),
])
def test_every_account_at_once_is_each_account_alone(accounts, ledger, bounds, options):
    together = reconcile(ledger, *bounds, expected_accounts=["delta"], **options)
    alone = [reconcile(ledger, *bounds, accounts=[name], **options).accounts[0] for name in (*ACCOUNTS, "delta")]
    assert [a.account for a in together.accounts] == [*ACCOUNTS, "delta"]
    assert together.accounts == tuple(alone)
    assert all(sum(w.ledger_calls for w in a.windows) for a in together.accounts[:3])
    assert together.accounts[2].failed_polls == ({SERVER_ERROR: 1} if bounds[0] else {SERVER_ERROR: 2})


def test_the_batched_readers_are_each_accounts_own(accounts, ledger):
    start, end = T0 + timedelta(minutes=20), T0 + timedelta(minutes=50)
    with ledger.session() as session:
        names = [*ACCOUNTS, "delta"]
        assert balances.bracketing_snapshots_of(session, names, start, end) == {
            name: balances.bracketing_snapshots(session, name, start, end) for name in names}
        assert balances.first_ok_snapshots_of(session, names) == {
            name: balances.first_ok_snapshot(session, name) for name in names}
        assert balances.failed_polls_of(session, names, None, end) == {
            name: balances.failed_polls(session, name, None, end) for name in names}
        ranges = {"alpha": (T0, end), "beta": (T0 + timedelta(minutes=30), end), "gamma": (start, start)}
        refunds = balances.refunds_between_of(session, ranges)
        assert refunds == {name: balances.refunds_between(session, name, *span) for name, span in ranges.items()}
        assert refunds["beta"] == Decimal(-2)
