"""Reconciliation against a real ledger and a platform on loopback: top-ups, named findings, the cumulative line."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from factories import LoopbackServer

from ledger.store import balances
from ledger.store.keys import account_fingerprints
from ledger.config import AccountConfig, KeyConfig, Settings
from ledger.service.credits import CreditsClient
from ledger.service.polling import poll_balances
from ledger.keys import fingerprint, load_secret
from ledger.store.models import BalanceSnapshot
from ledger.accounting.pricing import default_rate_book, price
from ledger.accounting.reconcile import EXPLAINED, GAP, OK
from ledger.reports.text import format_reconciliation
from ledger.store.reconciliation import reconcile
from ledger.store.calls import insert_calls
from ledger.accounting.records import ABORTED, COMPLETED, CallRecord, ResponseFacts, Usage

BOOK = default_rate_book()
CENT = Decimal("0.01")


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
    with LoopbackServer(Starlette(routes=[Route("/v1/credits", platform.credits)])) as server:
        platform.base_url = server.root_url + "/v1"
        yield platform


def _settings(database_url, base_url) -> Settings:
    return Settings(database_url=database_url, accounts=(AccountConfig("acme", base_url, (KeyConfig("main", key="sk-acme-main-0001"),)),))


class Day:
    """Calls recorded in the ledger (and charged by the platform), polls between batches, on a clock of its own:
    each reading of it is a second after the one before, so a poll is taken after the calls before it."""

    def __init__(self, ledger, platform, settings) -> None:
        self.ledger, self.platform, self.settings = ledger, platform, settings
        self.fp = fingerprint("sk-acme-main-0001", load_secret())
        self.n = 0
        self.rng = random.Random(3)
        self.unrecorded = Decimal(0)
        self.now = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
        self.client = CreditsClient(load_secret(settings.secret_path), clock=self.clock)

    def clock(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

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
            ended = self.clock()
            known = status == COMPLETED
            record = CallRecord(
                call_id=f"call-{self.n}", started_at=ended - timedelta(microseconds=1), ended_at=ended, status=status,
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
        return poll_balances(self.settings, self.ledger, client=self.client)


@pytest.fixture
def day(ledger, platform):
    day = Day(ledger, platform, _settings(ledger.url, platform.base_url))
    yield day
    day.client.close()


def test_a_clean_run_reconciles_and_a_top_up_is_found_once(day, ledger, platform):
    day.poll()
    for i in range(12):
        day.calls(25)
        if i == 6:
            platform.purchased += 5000
        day.poll()
    rec = reconcile(ledger, billing_settle_seconds=0)
    (acme,) = rec.accounts
    assert len(acme.windows) == 12 and not rec.has_unexplained_gap, format_reconciliation(rec)
    assert acme.cumulative.ledger_calls == 300 and abs(acme.cumulative.difference) < 1
    assert acme.cumulative.explanation("top_up").credits == 5000
    reconcile(ledger, billing_settle_seconds=0)  # again: still one top-up, read from the snapshots
    with ledger.session() as session:
        (top_up,) = balances.top_ups_in(session, datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
        assert top_up.credits == 5000 and top_up.account == "acme"
        assert account_fingerprints(session) == {"acme": frozenset({day.fp})}


def test_calls_that_bypass_the_recorder_are_unrecorded_spend(day, ledger):
    day.poll()
    for i in range(6):
        day.calls(20)
        if i == 3:
            day.calls(4, recorded=False)
        day.poll()
    rec = reconcile(ledger, billing_settle_seconds=0)
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
    rec = reconcile(ledger, billing_settle_seconds=0)
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
    rec = reconcile(ledger, billing_settle_seconds=0)
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
    rec = reconcile(ledger, billing_settle_seconds=0)
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
    recent = reconcile(ledger, start, billing_settle_seconds=0)
    assert len(recent.accounts[0].windows) == 4 and not recent.has_unexplained_gap
    whole = reconcile(ledger, start, billing_settle_seconds=0, cumulative_from_first=True)
    assert len(whole.accounts[0].windows) == 4
    cumulative = whole.accounts[0].cumulative
    assert cumulative.start == points[0].taken_at and cumulative.ledger_calls == 80
    assert cumulative.unexplained and abs(cumulative.difference - day.unrecorded) < 1
