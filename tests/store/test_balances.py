"""Snapshots, top-ups and the ledger's sums between snapshots, on a real ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger.accounting.pricing import default_rate_book, price
from ledger.accounting.records import COMPLETED, ERROR, CallRecord, ResponseFacts, Usage
from ledger.accounting.snapshots import OK, SERVER_ERROR, BalanceSnapshotValue
from ledger.store import balances
from ledger.store.calls import insert_calls

T0 = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


def snapshot(session, minutes: int, consumed: int, purchased: int = 10_000, status: str = OK) -> int:
    figures = {} if status != OK else {
        "balance": Decimal(purchased - consumed), "total_purchased": Decimal(purchased), "total_consumed": Decimal(consumed)}
    return balances.insert_snapshot(session, BalanceSnapshotValue("acme", T0 + timedelta(minutes=minutes), status, **figures))


def call(n: int, ended_minutes: float, charged: str | None, *, fp: str = "fp-acme", status: str = COMPLETED,
         http: int = 200) -> CallRecord:
    started = T0 + timedelta(minutes=ended_minutes, seconds=-2)
    usage = Usage(1000, 100, 50) if charged is not None else None
    facts = ResponseFacts(f"chatcmpl-{n}", "gemini-3.1-pro-preview", "stop", usage,
                          None if charged is None else Decimal(charged))
    return CallRecord(f"call-{n}", started, status, "gemini-3.1-pro", False, http_status=http,
                      ended_at=T0 + timedelta(minutes=ended_minutes), response=facts, key_fingerprint=fp)


def test_snapshots_in_order_failed_polls_apart_and_top_ups_once(ledger):
    with ledger.session() as session:
        first = snapshot(session, 0, 100)
        snapshot(session, 5, 0, status=SERVER_ERROR)
        snapshot(session, 10, 150, purchased=15_000)
        snapshot(session, 20, 170, purchased=15_000)
    with ledger.session() as session:
        points = balances.ok_snapshots(session, "acme")
        assert [p.total_consumed for p in points] == [100, 150, 170] and all(p.invariant_error == 0 for p in points)
        assert balances.failed_polls(session, "acme", None, None) == {SERVER_ERROR: 1}
        assert balances.first_ok_snapshot(session, "acme").id == first
        assert balances.previous_ok_snapshot(session, "acme", points[-1].id) == points[1]
        assert balances.ok_snapshots(session, "acme", T0 + timedelta(minutes=1), T0 + timedelta(minutes=10)) == points[1:2]
        assert balances.record_top_ups(session, "acme", points) == 1
        assert balances.record_top_ups(session, "acme", points) == 0  # idempotent per snapshot
        (top_up,) = balances.top_ups(session, "acme")
        assert top_up.credits == 5000 and top_up.snapshot_id == points[1].id
        assert balances.snapshot_accounts(session) == ["acme"]


def test_a_call_counts_in_the_window_in_which_it_ended_and_calls_near_a_snapshot_are_its_edge(ledger):
    records = [
        call(1, 1, "0.30"), call(2, 9.99, "0.20"),  # (0, 10]: both, the second ended just before the snapshot
        call(3, 10.01, "0.50"),  # ended just after: the next window's
        call(4, 12, None, status=ERROR, http=503),  # an error: no charge known, none expected
        call(5, 13, None),  # no usage, no charge: the platform may have charged it
        call(6, 14, "0.70", fp="fp-other"),  # another account's key
        call(7, 15, "0.05", fp=None),  # a key the ledger does not know
    ]
    with ledger.session() as session:
        insert_calls(session, [(r, price(r, default_rate_book())) for r in records])
    mine, every = frozenset({"fp-acme"}), frozenset({"fp-acme", "fp-other"})
    with ledger.session() as session:
        first = balances.ledger_sums(session, mine, every, T0, T0 + timedelta(minutes=10))
        second = balances.ledger_sums(session, mine, every, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
        edge = balances.edge_charges(session, mine, T0 + timedelta(minutes=10), timedelta(seconds=2))
    assert (first.calls, first.charged) == (2, Decimal("0.50"))
    assert (second.calls, second.charged, second.unknown_charge) == (3, Decimal("0.50"), 1)
    assert (second.unattributed_calls, second.unattributed_charged) == (1, Decimal("0.05"))
    # call 3 was charged 0.50 for what the card prices at 0.256; the 503 is clean; call 5 has no usage
    assert {c.pricing_class: c.calls for c in second.by_class} == {"overcharge": 1, "ok": 1, "missing_usage": 1}
    assert edge == Decimal("0.70")  # calls 2 and 3 ended within 2 s of the snapshot at 10 minutes
