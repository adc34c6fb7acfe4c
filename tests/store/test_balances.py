"""Snapshots, top-ups and the ledger's sums between snapshots, on a real ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger.accounting.pricing import default_rate_book, price
from ledger.accounting.records import COMPLETED, ERROR, CallRecord, ResponseFacts, Usage
from ledger.accounting.reconcile import Overlap
from ledger.accounting.snapshots import OK, SERVER_ERROR, BalanceSnapshotValue, SnapshotPoint
from ledger.store import balances, snapshot_windows
from ledger.store.calls import insert_calls

T0 = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


def snapshot(session, minutes: int, consumed: int, purchased: int = 10_000, status: str = OK) -> int:
    figures = {} if status != OK else {
        "balance": Decimal(purchased - consumed), "total_purchased": Decimal(purchased), "total_consumed": Decimal(consumed)}
    return balances.insert_snapshot(session, BalanceSnapshotValue("acme", T0 + timedelta(minutes=minutes), status, **figures))


def call(n: int, started_minutes: float, ended_minutes: float, charged: str | None, *, fp: str = "fp-acme",
         status: str = COMPLETED, http: int = 200) -> CallRecord:
    usage = Usage(1000, 100, 50) if charged is not None else None
    facts = ResponseFacts(f"chatcmpl-{n}", "gemini-3.1-pro-preview", "stop", usage,
                          None if charged is None else Decimal(charged))
    return CallRecord(f"call-{n}", T0 + timedelta(minutes=started_minutes), status, "gemini-3.1-pro", False,
                      http_status=http, ended_at=T0 + timedelta(minutes=ended_minutes), response=facts, key_fingerprint=fp)


def test_a_call_is_in_the_window_it_started_in_and_only_calls_overlapping_a_poll_may_be_booked_across_it(ledger):
    second = 1 / 60
    records = [
        call(1, 1, 1.1, "0.30"),  # plainly in window 0
        call(2, 9.9, 10 - second, "0.20"),  # ended a second before the poll at 10: may be booked after it
        call(3, 10 + second / 2, 10.2, "0.50"),  # started while the poll at 10 was being answered
        call(4, 12, 12.1, None, status=ERROR, http=503),  # an error: no charge known, none expected
        call(5, 13, 13.1, None),  # no usage, no charge: the platform may have charged it
        call(6, 14, 14.1, "0.70", fp="fp-other"),  # another account's key
        call(7, 15, 15.1, "0.05", fp=None),  # a key the ledger knows of no account
        call(8, 5, 21, "1.00"),  # outlasts a whole window: may be booked after the polls at 10 and 20
        call(9, 10.5, 10.6, "0.26"),  # after the poll at 10 was answered: certainly after it
    ]
    with ledger.session() as session:
        insert_calls(session, [(r, price(r, default_rate_book())) for r in records])
    points = [SnapshotPoint(k, T0 + timedelta(minutes=10 * k), Decimal(0), Decimal(0), Decimal(0),
                            T0 + timedelta(minutes=10 * k, seconds=1)) for k in range(3)]
    with ledger.session() as session:
        sums, overlaps = snapshot_windows.windows_and_overlaps(
            session, frozenset({"fp-acme"}), frozenset({"fp-acme", "fp-other"}), points, timedelta(seconds=2))
    first, second_window = sums
    assert (first.calls, first.charged) == (3, Decimal("1.50"))  # calls 1, 2 and 8
    assert (second_window.calls, second_window.charged, second_window.unknown_charge) == (4, Decimal("0.76"), 1)
    assert (second_window.unattributed_calls, second_window.unattributed_charged) == (1, Decimal("0.05"))
    # call 3 was charged 0.50 for what the card prices at 0.256; the 503 is clean; call 5 has no usage
    assert {c.pricing_class: c.calls for c in second_window.by_class} == {"overcharge": 1, "ok": 1, "rounding": 1, "missing_usage": 1}
    assert overlaps[0] == Overlap()
    assert overlaps[1] == Overlap(booked_late=Decimal("1.20"), booked_early=Decimal("0.50"))  # calls 2 and 8; 3
    assert overlaps[2] == Overlap(booked_late=Decimal("1.00"))  # call 8 again


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
        (top_up,) = balances.top_ups_in(session, T0, T0 + timedelta(minutes=30), "acme")
        assert top_up.credits == 5000 and top_up.snapshot_id == points[1].id
        assert balances.snapshot_accounts(session) == ["acme"]
