"""Balance assertions: the tolerance holds a clean run silent and finds a one-credit gap."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.reconcile import (
    DRIFT,
    EXPLAINED,
    GAP,
    INVARIANT,
    OK,
    AccountReconciliation,
    ClassSum,
    LedgerSums,
    Reconciliation,
    SnapshotPoint,
    format_reconciliation,
    reconcile_account,
)

T0 = datetime(2026, 11, 24, tzinfo=timezone.utc)
CENT = Decimal("0.01")


def run_platform(batches, start=Decimal("200.37"), purchased=Decimal(10000), gap_at=None, gap=Decimal(0), rule=ROUND_FLOOR):
    """Snapshots of a platform that charged `batches` (lists of call charges), rounding its exact total.

    Returns (points, window sums as the ledger knows them). `gap` credits are
    taken by the platform in window `gap_at` without the ledger knowing.
    """
    exact = start
    points, sums = [], []

    def snap(i):
        consumed = exact.quantize(Decimal(1), rounding=rule)
        points.append(SnapshotPoint(i + 1, T0 + timedelta(minutes=5 * i), purchased - consumed, purchased, consumed))

    snap(0)
    for i, batch in enumerate(batches):
        charged = sum(batch, Decimal(0))
        exact += charged + (gap if i == gap_at else 0)
        sums.append(LedgerSums(calls=len(batch), charged=charged, priced_charged=charged, expected=charged, max_charge=max(batch, default=Decimal(0))))
        snap(i + 1)
    return points, sums


def random_batches(rng, windows, calls=(0, 40)):
    return [[Decimal(rng.randint(1, 500)) * CENT for _ in range(rng.randint(*calls))] for _ in range(windows)]


charges = st.lists(st.decimals(min_value="0.01", max_value="5", places=2), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(charges, min_size=1, max_size=30), st.decimals(min_value=0, max_value=1000, places=4), st.sampled_from(["floor", "half"]))
def test_a_clean_run_never_raises_an_alarm(batches, start, rule):
    rounding = ROUND_FLOOR if rule == "floor" else ROUND_HALF_EVEN
    points, sums = run_platform(batches, start=start, rule=rounding)
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points), rule)
    assert [w.status for w in windows] == [OK] * len(windows)
    assert cumulative.status == OK
    assert abs(cumulative.difference) <= 1


def test_the_cumulative_difference_does_not_drift_with_rounding():
    rng = random.Random(1)
    points, sums = run_platform(random_batches(rng, 2000))
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points))
    # Each window differs by up to one credit of rounding; their sum would wander, the direct comparison cannot.
    assert sum(abs(w.difference) for w in windows) > 100
    assert abs(cumulative.difference) < 1
    assert cumulative.status == OK


def test_a_one_credit_gap_is_found_within_a_few_polls():
    """Over many random days: how many polls after a 1-credit gap until it is flagged."""
    delays = []
    for seed in range(400):
        rng = random.Random(seed)
        batches = random_batches(rng, 40, calls=(5, 40))
        points, sums = run_platform(batches, start=Decimal(rng.randint(0, 10**6)) / 1000, gap_at=20, gap=Decimal(1))
        windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points))
        assert all(w.status == OK for w in windows[:20]), seed
        flagged = [i for i, w in enumerate(windows) if w.unexplained]
        assert flagged and flagged[0] >= 20, seed
        delays.append(flagged[0] - 20 + 1)
        assert cumulative.unexplained
        assert abs(cumulative.difference - 1) < 1  # sized within one credit
    delays.sort()
    assert delays[len(delays) // 2] <= 2
    assert delays[int(len(delays) * 0.99)] <= 8


def test_a_gap_beyond_one_window_tolerance_is_named_and_sized():
    rng = random.Random(5)
    points, sums = run_platform(random_batches(rng, 10), gap_at=3, gap=Decimal("7.5"))
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points))
    assert windows[3].status == GAP
    spend = windows[3].explanation("unrecorded_spend")
    assert spend is not None and abs(spend.credits - Decimal("7.5")) < 1
    assert cumulative.status == GAP
    assert abs(cumulative.explanation("unrecorded_spend").credits - Decimal("7.5")) < 1


def test_the_ledger_above_the_platform_is_a_gap_too():
    rng = random.Random(6)
    points, sums = run_platform(random_batches(rng, 6), gap_at=2, gap=Decimal(-3))
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points))
    assert windows[2].status == GAP
    assert windows[2].explanation("ledger_above_platform").credits < -2


def test_calls_near_a_snapshot_widen_the_tolerance_of_both_windows():
    rng = random.Random(7)
    batches = random_batches(rng, 4)
    points, sums = run_platform(batches)
    # The platform counted 3 credits of a call in the window before; the ledger saw it end just after.
    moved = Decimal(3)
    sums[1] = LedgerSums(calls=sums[1].calls - 1, charged=sums[1].charged - moved)
    sums[2] = LedgerSums(calls=sums[2].calls + 1, charged=sums[2].charged + moved)
    edges = [Decimal(0)] * len(points)
    strict, _ = reconcile_account("a", points, sums, edges)
    assert strict[1].status == GAP and strict[2].status == GAP
    edges[2] = moved  # the charges of calls that ended within the edge of snapshot 2
    windows, cumulative = reconcile_account("a", points, sums, edges)
    assert [w.status for w in windows] == [OK] * 4
    assert windows[1].tolerance == 1 + moved
    assert cumulative.status == OK


def test_a_top_up_is_named_and_not_a_gap():
    rng = random.Random(8)
    points, sums = run_platform(random_batches(rng, 3))
    bought = Decimal(5000)
    points[2:] = [
        SnapshotPoint(p.id, p.taken_at, p.balance + bought, p.total_purchased + bought, p.total_consumed) for p in points[2:]
    ]
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points))
    assert [w.status for w in windows] == [OK] * 3
    assert windows[1].purchased == bought and windows[1].explanation("top_up").credits == bought
    assert cumulative.explanation("top_up").credits == bought


def test_a_broken_platform_invariant_is_unexplained():
    points, sums = run_platform([[Decimal(1)], [Decimal(2)]])
    p = points[1]
    points[1] = SnapshotPoint(p.id, p.taken_at, p.balance - 5, p.total_purchased, p.total_consumed)
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points))
    assert windows[0].status == INVARIANT
    assert windows[0].explanation("invariant_broken").credits == -5
    assert cumulative.status == INVARIANT


def test_pricing_findings_are_named_with_their_difference():
    points, _ = run_platform([[Decimal(10)]])
    sums = [
        LedgerSums(
            calls=5,
            charged=Decimal(10),
            priced_charged=Decimal(9),
            expected=Decimal("7.5"),
            by_class=(
                ClassSum("ok", 2, Decimal(3), Decimal(3), Decimal(3)),
                ClassSum("reasoning_billed", 2, Decimal(6), Decimal(6), Decimal("4.5")),
                ClassSum("missing_usage", 1, Decimal(1), Decimal(0), Decimal(0)),
            ),
        )
    ]
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * 2)
    assert windows[0].status == OK
    assert windows[0].explanation("reasoning_billed").credits == Decimal("1.5")
    assert windows[0].explanation("missing_usage").credits == 1
    assert windows[0].explanation("ok") is None
    assert cumulative.above_rate_card == Decimal("1.5")


def test_aborted_streams_of_unknown_charge_explain_a_rise_they_could_have_cost():
    points, _ = run_platform([[Decimal(10)]])
    sums = [LedgerSums(calls=4, charged=Decimal(7), max_charge=Decimal(2), aborted=2, unknown_charge=2)]
    windows, _ = reconcile_account("a", points, sums, [Decimal(0)] * 2)
    assert windows[0].status == EXPLAINED
    assert windows[0].explanation("aborted_streams").calls == 2
    assert not windows[0].unexplained
    sums = [LedgerSums(calls=4, charged=Decimal(3), max_charge=Decimal(2), aborted=1, unknown_charge=1)]
    windows, _ = reconcile_account("a", points, sums, [Decimal(0)] * 2)
    assert windows[0].status == GAP


def test_drift_is_found_when_each_window_is_within_its_tolerance():
    # Exact consumption 100.9 -> +0.2 = 101.1 -> +0.4 and 1 unknown = 102.5; read as 100, 101, 102.
    # Window 2 differs by 0.6 only, yet no exact start fits all three snapshots.
    def point(i, consumed):
        return SnapshotPoint(i, T0 + timedelta(minutes=5 * i), Decimal(1000) - consumed, Decimal(1000), Decimal(consumed))

    points = [point(1, 100), point(2, 101), point(3, 102)]
    sums = [LedgerSums(calls=1, charged=Decimal("0.2")), LedgerSums(calls=1, charged=Decimal("0.4"))]
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * 3)
    assert windows[0].status == OK
    assert windows[1].difference == Decimal("0.6")
    assert windows[1].status == DRIFT
    assert abs(windows[1].explanation("unrecorded_spend").credits - 1) < 1  # the real gap: 1 credit
    assert cumulative.unexplained and cumulative.difference == Decimal("1.4")


def test_the_table_and_json_show_every_window_and_the_cumulative_line():
    rng = random.Random(9)
    points, sums = run_platform(random_batches(rng, 3), gap_at=1, gap=Decimal(4))
    windows, cumulative = reconcile_account("acme", points, sums, [Decimal(0)] * len(points))
    rec = Reconciliation((AccountReconciliation("acme", tuple(windows), cumulative, {"unreachable": 2}),), None, None, "floor", 2.0)
    table = format_reconciliation(rec)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["account", "from", "to"]
    assert sum(1 for line in lines if line.startswith("acme ")) == 4
    assert "cumulative" in table and "unrecorded_spend 4" in table
    assert "2 unreachable" in table and "UNEXPLAINED GAP" in lines[-1]
    data = json.loads(rec.to_json())
    assert data["has_unexplained_gap"] is True
    assert len(data["accounts"][0]["windows"]) == 3
    assert data["accounts"][0]["cumulative"]["status"] == GAP
    assert isinstance(data["accounts"][0]["cumulative"]["difference"], str)  # exact, not a float


@pytest.mark.parametrize("rule", ["floor", "ceil", "half", "any"])
def test_every_rounding_rule_accepts_its_own_clean_run(rule):
    rounding = {"floor": ROUND_FLOOR, "ceil": "ROUND_CEILING", "half": ROUND_HALF_EVEN, "any": ROUND_FLOOR}[rule]
    rng = random.Random(10)
    points, sums = run_platform(random_batches(rng, 50), rule=rounding)
    windows, cumulative = reconcile_account("a", points, sums, [Decimal(0)] * len(points), rule)
    assert all(w.status == OK for w in windows) and cumulative.status == OK


# ---------------------------------------------------------------- against a ledger and a platform on loopback

import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import uvicorn  # noqa: E402
from sqlalchemy import select  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from ledger import balances  # noqa: E402
from ledger.config import AccountConfig, KeyConfig, Settings  # noqa: E402
from ledger.jobs import poll_balances  # noqa: E402
from ledger.keys import fingerprint, load_secret  # noqa: E402
from ledger.models import BalanceSnapshot  # noqa: E402
from ledger.pricing import default_rate_book, price  # noqa: E402
from ledger.reconcile import reconcile  # noqa: E402
from ledger.repository import insert_calls  # noqa: E402
from ledger.usage import ABORTED, COMPLETED, CallRecord, ResponseFacts, Usage  # noqa: E402

BOOK = default_rate_book()


class Platform:
    """The platform's books: exact consumption, /v1/credits answering it floored to integers."""

    def __init__(self) -> None:
        self.consumed = Decimal("1234.567")
        self.purchased = Decimal(20000)
        self.failing = False

    async def credits(self, request) -> Response:
        if self.failing:
            return Response(b"<html>bad gateway</html>", status_code=200)
        consumed = int(self.consumed.to_integral_value(ROUND_FLOOR))
        purchased = int(self.purchased)
        return JSONResponse({"code": 200, "msg": "success", "data": {
            "balance": purchased - consumed, "total_purchased": purchased, "total_consumed": consumed}})


@pytest.fixture
def platform():
    platform = Platform()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/v1/credits", platform.credits)]), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    platform.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    yield platform
    server.should_exit = True
    thread.join(5)
    sock.close()


def _settings(database_url, base_url) -> Settings:
    return Settings(database_url=database_url, accounts=(AccountConfig("acme", base_url, (KeyConfig("main", key="sk-acme-main-0001"),)),))


class Day:
    """Calls recorded in the ledger (and charged by the platform), polls between batches."""

    def __init__(self, ledger, platform, settings) -> None:
        self.ledger, self.platform, self.settings = ledger, platform, settings
        self.fp = fingerprint("sk-acme-main-0001", load_secret())
        self.n = 0
        self.rng = random.Random(3)
        self.unrecorded = Decimal(0)

    def calls(self, count, *, recorded=True, charge_factor=Decimal(1), status=COMPLETED, reasoning_billed=False):
        records = []
        for _ in range(count):
            self.n += 1
            prompt, completion, reasoning = self.rng.randint(50, 4000), self.rng.randint(10, 1500), self.rng.randint(0, 800)
            billed = completion + (reasoning if reasoning_billed else 0)
            exact = (prompt * 160 + billed * 960) * charge_factor / 1_000_000
            charged = exact.quantize(CENT)
            self.platform.consumed += charged
            if not recorded:
                self.unrecorded += charged
            ended = datetime.now(timezone.utc)
            known = status == COMPLETED
            record = CallRecord(
                call_id=f"call-{self.n}", started_at=ended - timedelta(milliseconds=5), ended_at=ended, status=status,
                model_requested="gemini-3.1-pro", http_status=200, key_fingerprint=self.fp, key_last4="0001",
                response=ResponseFacts(
                    usage=Usage(prompt, completion, reasoning, 0, 0, prompt + completion + reasoning) if known else None,
                    credits_charged=charged if known else None, model_reported="gemini-3.1-pro-preview",
                ),
            )
            records.append((record, price(record, BOOK)))
        if recorded:
            with self.ledger.session() as session:
                insert_calls(session, records)

    def poll(self):
        time.sleep(0.002)  # the poll goes out after the calls ended
        return poll_balances(self.settings, self.ledger)


@pytest.fixture
def day(ledger, platform):
    return Day(ledger, platform, _settings(ledger.url, platform.base_url))


def test_a_clean_run_reconciles_and_a_top_up_is_recorded_once(day, ledger, platform):
    day.poll()
    for i in range(12):
        day.calls(25)
        if i == 6:
            platform.purchased += 5000
        day.poll()
    rec = reconcile(ledger, day.settings, edge_seconds=0)
    (acme,) = rec.accounts
    assert len(acme.windows) == 12 and not rec.has_unexplained_gap, format_reconciliation(rec)
    assert acme.cumulative.ledger_calls == 300 and abs(acme.cumulative.difference) < 1
    assert acme.cumulative.explanation("top_up").credits == 5000
    reconcile(ledger, day.settings, edge_seconds=0)  # again: still one top-up row
    with ledger.session() as session:
        (top_up,) = balances.top_ups(session)
        assert top_up.credits == 5000 and top_up.account == "acme"
        assert balances.account_fingerprints(session) == {"acme": frozenset({day.fp})}


def test_calls_that_bypass_the_recorder_are_unrecorded_spend(day, ledger):
    day.poll()
    for i in range(6):
        day.calls(20)
        if i == 3:
            day.calls(4, recorded=False)
        day.poll()
    rec = reconcile(ledger, day.settings, edge_seconds=0)
    windows, cumulative = rec.accounts[0].windows, rec.accounts[0].cumulative
    assert rec.has_unexplained_gap and day.unrecorded > 1
    assert [w.status for w in windows] == [OK, OK, OK, GAP, OK, OK]
    assert abs(windows[3].explanation("unrecorded_spend").credits - day.unrecorded) < 1
    assert cumulative.status == GAP
    assert abs(cumulative.explanation("unrecorded_spend").credits - day.unrecorded) < 1


def test_reasoning_billed_and_a_systematic_overcharge_are_named_and_sized(day, ledger):
    day.poll()
    day.calls(30, reasoning_billed=True)
    day.poll()
    day.calls(200, charge_factor=Decimal("1.02"))
    day.poll()
    rec = reconcile(ledger, day.settings, edge_seconds=0)
    first, second = rec.accounts[0].windows
    assert not rec.has_unexplained_gap and rec.has_findings
    reasoning = first.explanation("reasoning_billed")
    assert reasoning.calls == 30 and abs(reasoning.credits - first.above_rate_card) < 1
    assert abs(second.above_rate_card - second.expected * Decimal("0.02")) < 1
    assert second.explanation("overcharge") is not None


def test_aborted_streams_of_unknown_charge_are_named(day, ledger):
    day.poll()
    day.calls(20)
    day.calls(2, status=ABORTED)
    day.poll()
    rec = reconcile(ledger, day.settings, edge_seconds=0)
    (window,) = rec.accounts[0].windows
    assert window.explanation("aborted_streams").calls == 2
    assert window.status in (OK, EXPLAINED)


def test_failed_polls_lose_no_snapshot_before_or_after(day, ledger, platform):
    day.poll()
    day.calls(10)
    day.poll()
    platform.failing = True
    for _ in range(3):
        day.calls(10)
        assert day.poll()[0].status == "malformed_body"
    platform.failing = False
    day.calls(10)
    day.poll()
    rec = reconcile(ledger, day.settings, edge_seconds=0)
    acme = rec.accounts[0]
    assert acme.failed_polls == {"malformed_body": 3}
    assert len(acme.windows) == 2 and not rec.has_unexplained_gap
    assert acme.windows[1].ledger_calls == 40
    with ledger.session() as session:
        raw = [s.raw_response for s in session.scalars(select(BalanceSnapshot)) if s.status != "ok"]
    assert raw == ["<html>bad gateway</html>"] * 3


def test_recent_windows_with_the_cumulative_line_since_the_first_snapshot(day, ledger):
    day.poll()
    for i in range(8):
        day.calls(10)
        if i == 1:
            day.calls(3, recorded=False)  # an old gap, before the windows listed
        day.poll()
    with ledger.session() as session:
        points = balances.ok_snapshots(session, "acme")
    start = points[4].taken_at
    recent = reconcile(ledger, day.settings, start, edge_seconds=0)
    assert len(recent.accounts[0].windows) == 4 and not recent.has_unexplained_gap
    whole = reconcile(ledger, day.settings, start, edge_seconds=0, cumulative_from_first=True)
    assert len(whole.accounts[0].windows) == 4
    cumulative = whole.accounts[0].cumulative
    assert cumulative.start == points[0].taken_at and cumulative.ledger_calls == 80
    assert cumulative.unexplained and abs(cumulative.difference - day.unrecorded) < 1
