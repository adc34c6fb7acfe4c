"""A simulated day against the simulator on loopback: a clean run reconciles, each fault is named and sized.

Calls go to the simulator over HTTP through the recorder (an httpx2 client on
its recording transport), which journals, prices and writes them into the
ledger; calls "bypassing the recorder" use a plain client with the same key.
Polls run between batches of calls, so a day takes seconds.
"""

from __future__ import annotations

from decimal import Decimal

import httpx2
import pytest

from ledger.config import AccountConfig, KeyConfig, Settings
from ledger.service.credits import CreditsClient, RetryPolicy
from ledger.service.polling import poll_balances
from ledger.keys import load_secret
from ledger.accounting.reconcile import GAP, OK
from ledger.reports.text import format_reconciliation
from ledger.store.reconciliation import reconcile
from ledger.record.recorder import Recorder
from ledger.sim.server import SimulatorServer
from ledger.sim.values import AccountConfig as SimAccount
from ledger.sim.values import SimulatorConfig

KEYS = ("sk-acme-recorded-0001", "sk-acme-second-0002")


class Day:
    def __init__(self, server: SimulatorServer, ledger, journal_dir) -> None:
        self.server, self.ledger = server, ledger
        self.settings = Settings(
            database_url=ledger.url,
            accounts=(AccountConfig("acme", server.base_url, tuple(KeyConfig(f"k{i}", key=k) for i, k in enumerate(KEYS))),),
            writer_processes=0,  # a writer thread: the processes are test_writer's subject, not reconciliation's
        )
        self.recorder = Recorder(settings=self.settings, journal_dir=journal_dir)
        self.recorded = httpx2.Client(base_url=server.base_url, timeout=10,
                                      transport=self.recorder.transport(httpx2.HTTPTransport()))
        self.bypass = httpx2.Client(base_url=server.base_url, timeout=10)  # a caller that skips the recorder
        self.n = 0

    def calls(self, count: int, *, recorded: bool = True, fault: str | None = None, key: str = KEYS[0], size: int = 0) -> None:
        http = self.recorded if recorded else self.bypass
        for _ in range(count):
            self.n += 1
            request = {
                "model": "gemini-3.1-pro", "stream": self.n % 4 == 0, "reasoning_effort": "low" if self.n % 3 else "high",
                "messages": [{"role": "user", "content": "x" * (size or 40 + self.n % 2000)}],
            }
            headers = {"Authorization": f"Bearer {key}", "X-Ledger-Project": "day"}
            if fault:
                headers["X-Sim-Fault"] = fault
            response = http.post("/chat/completions", json=request, headers=headers)
            assert response.status_code in (200, 503), response.text

    def poll(self) -> None:
        assert self.recorder.flush(30)  # what was recorded is in the ledger before the balance is read
        (value,) = poll_balances(self.settings, self.ledger)
        assert value.ok, value

    def reconcile(self):
        return reconcile(self.ledger, billing_settle_seconds=0)

    def close(self) -> None:
        self.recorded.close()
        self.bypass.close()
        self.recorder.close()


@pytest.fixture
def day(ledger, tmp_path):
    config = SimulatorConfig(seed=4, accounts={"acme": SimAccount(keys=KEYS, balance=5_000)})
    with SimulatorServer(config) as server:
        day = Day(server, ledger, tmp_path / "journal")
        yield day
        day.close()


def test_a_clean_simulated_day_reconciles_with_no_alarm(day):
    day.poll()
    for batch in range(40):  # 40 windows of 20 calls: both keys, streams, both efforts and 800 prompt sizes
        day.calls(20, key=KEYS[batch % 2])
        if batch == 25:
            day.server.platform.top_up(20_000, account="acme")
        day.poll()
    rec = day.reconcile()
    acme = rec.accounts[0]
    assert not rec.has_unexplained_gap, format_reconciliation(rec)
    assert [w.status for w in acme.windows] == [OK] * 40
    exact = day.server.platform.state()["acme"]["consumed_exact"]
    assert acme.cumulative.ledger_calls == 800 and acme.cumulative.ledger_charged == exact
    assert acme.cumulative.explanation("top_up").credits == 20_000
    assert abs(acme.cumulative.difference) < 1


def test_calls_that_bypass_the_recorder_are_found_and_sized(day):
    day.poll()
    for batch in range(8):
        day.calls(30)
        if batch == 4:
            day.calls(12, recorded=False, key=KEYS[1])
        day.poll()
    rec = day.reconcile()
    exact = day.server.platform.state()["acme"]["consumed_exact"]
    bypassed = exact - rec.accounts[0].cumulative.ledger_charged
    assert bypassed > 1
    assert rec.has_unexplained_gap
    window = rec.accounts[0].windows[4]
    assert window.status == GAP and abs(window.explanation("unrecorded_spend").credits - bypassed) < 1
    assert abs(rec.accounts[0].cumulative.explanation("unrecorded_spend").credits - bypassed) < 1


def test_a_systematic_two_percent_overcharge_is_sized(day):
    day.server.platform.set_knobs(faults={"overcharge": Decimal(1)}, overcharge_factor=Decimal("1.02"))
    day.poll()
    for _ in range(6):
        day.calls(50)
        day.poll()
    rec = day.reconcile()
    c = rec.accounts[0].cumulative
    assert not rec.has_unexplained_gap and rec.has_findings
    true_overcharge = c.ledger_charged - c.ledger_charged / Decimal("1.02")
    assert abs(c.above_rate_card - true_overcharge) < 1
    assert abs(c.above_rate_card / c.expected - Decimal("0.02")) < Decimal("0.002")
    assert "above the rate card" in format_reconciliation(rec)


@pytest.mark.parametrize("fault, name", [("bill_reasoning", "reasoning_billed"), ("charge_refund", "charged_on_refund")])
def test_reasoning_billed_and_a_charged_refund_are_named_and_sized(day, fault, name):
    day.poll()
    day.calls(40)
    day.calls(10, fault=fault, size=40_000)  # 10k prompt tokens: a refund charges the prompt only
    day.poll()
    rec = day.reconcile()
    (window,) = rec.accounts[0].windows
    calls = [c for c in day.server.platform.call_log if fault in c.faults]
    assert len(calls) == 10
    found = window.explanation(name)
    assert found is not None and found.calls == 10
    if name == "charged_on_refund":
        assert abs(found.credits - sum(c.credits_charged for c in calls)) < 1
    else:
        assert abs(found.credits - window.above_rate_card) < Decimal("0.1") and found.credits > 0
    assert not rec.has_unexplained_gap


def test_an_hour_of_failing_or_garbled_credits_loses_no_snapshot(day):
    day.poll()
    day.calls(20)
    day.poll()
    platform = day.server.platform
    # An hour of polls every five minutes, each failing its own way, with calls going on.
    faults = [{"credits_status": 503, "credits_retry_after": 0}, {"credits_status": 429, "credits_retry_after": 0},
              {"credits_garbled": "non_json"}, {"credits_garbled": "wrong_shape"}, {"credits_garbled": "non_integer"}]
    quick = CreditsClient(load_secret(), RetryPolicy(base_seconds=0.01))  # retries as in production, shorter waits
    for poll in range(12):
        platform.set_knobs(**faults[poll % len(faults)])
        day.calls(5)
        assert day.recorder.flush(30)
        (value,) = poll_balances(day.settings, day.ledger, client=quick)
        assert not value.ok
        platform.set_knobs(credits_status=None, credits_garbled=None)
    quick.close()
    day.calls(20)
    day.poll()
    rec = day.reconcile()
    acme = rec.accounts[0]
    assert sum(acme.failed_polls.values()) == 12 and len(acme.windows) == 2
    assert not rec.has_unexplained_gap and acme.windows[1].ledger_calls == 80
