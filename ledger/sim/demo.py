"""`credit-ledger demo`: the whole product in one run, against the simulator on loopback.

A mixed workload goes through the recorder with the real openai SDK (sync and
async, streaming and not, both reasoning efforts, attributed to a few
projects), with a few errors of the error table and one call for each billing
fault the simulator can inject. Then the demo prints what finance would look
at: totals per project, the pricing findings, each injected fault against the
class the check found for it, a reconciliation of the run's balance, and the
alerts of one budget and one balance alert declared for the run (delivered
to the log).

Each run uses fresh keys and its own account name (`demo-<run>`), so runs
never mix in a ledger that several demos wrote to. Exit 0 when every injected
fault was found as its class, no clean call was flagged, every call is in the
ledger once, the balance reconciles, and the balance alert fired and was
delivered; 1 otherwise (the reason on one line). It ends by writing the run's
Excel report (its account's calls, by project and model) into the reports
folder and printing its path.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, TextIO

from ..accounting.pricing import CLEAN_CLASSES
from ..config import AccountConfig, KeyConfig, Settings
from .values import BILLING_FAULTS

MODEL = "gemini-3.1-pro"
PROJECTS = ("search", "support", "reports")
TOP_UP = 1_000

# Each injected billing fault and the class the pricing check must give the call.
EXPECTED_CLASS: dict[str, str] = dict(BILLING_FAULTS)
# Calls that must come out clean although something odd happened to them.
CLEAN_ODDITIES = ("slow_chunks", "upstream_error", "rate_limit_exceeded", "model_not_found")


@dataclass(frozen=True)
class Spec:
    """One chat call of the workload."""

    n: int
    asynchronous: bool
    stream: bool
    effort: str
    project: str
    user: str
    fault: str | None = None  # X-Sim-Fault
    error: str | None = None  # X-Sim-Error, or model_not_found (a model served elsewhere)
    by_header: bool = False  # attribution by X-Ledger-* headers instead of rec.attribute()

    @property
    def injected(self) -> str | None:
        return self.fault or self.error

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.fault:
            headers["X-Sim-Fault"] = self.fault
        if self.error and self.error != "model_not_found":
            headers["X-Sim-Error"] = self.error
        if self.by_header:
            headers["X-Ledger-Project"] = self.project
            headers["X-Ledger-User"] = self.user
            headers["X-Ledger-Tags"] = f"feature=batch,injected={self.injected}" if self.injected else "feature=batch"
        return headers

    def request(self) -> dict[str, Any]:
        repeat = 1 + self.n % 7
        if self.fault == "charge_refund":  # the prompt's charge is what a refunded call keeps: make it show
            repeat = 200
        content = f"Call {self.n}: summarise the quarter's usage for {self.project}. " * repeat
        return {
            "model": "gpt-5-4" if self.error == "model_not_found" else MODEL,
            "messages": [{"role": "user", "content": content}],
            "reasoning_effort": self.effort,
            "stream": self.stream,
            "max_tokens": 400,
        }


def workload(calls: int, seed: int) -> list[Spec]:
    """`calls` specs: the injected faults and errors spread among clean calls, deterministic under `seed`."""
    rng = random.Random(seed)
    special: list[tuple[str | None, str | None, bool | None]] = [
        (fault, None, True if fault == "cut_stream" else False if fault == "malformed_body" else None)
        for fault in EXPECTED_CLASS
    ]
    special += [("slow_chunks", None, True)] + [(None, error, None) for error in CLEAN_ODDITIES[1:]]
    special = special[:calls]
    slots = sorted(rng.sample(range(calls), len(special)))
    by_slot = dict(zip(slots, special))
    specs = []
    for n in range(calls):
        fault, error, stream = by_slot.get(n, (None, None, None))
        specs.append(Spec(
            n=n,
            asynchronous=n % 3 == 2,
            stream=rng.random() < 0.5 if stream is None else stream,
            effort="high" if rng.random() < 0.3 else "low",
            project=PROJECTS[rng.randrange(len(PROJECTS))],
            user=f"u-{rng.randint(1, 6)}",
            fault=fault,
            error=error,
            by_header=n % 5 == 4,
        ))
    return specs


# ---------------------------------------------------------------- sending


def _tags(spec: Spec) -> dict[str, str]:
    return {"feature": "chat", **({"injected": spec.injected} if spec.injected else {})}


def _send(client: Any, spec: Spec) -> str:
    """One call as an application makes it; returns how it ended for the caller."""
    try:
        if spec.stream:
            with client.chat.completions.create(**spec.request(), extra_headers=spec.headers()) as stream:
                for _ in stream:
                    pass
        else:
            client.chat.completions.create(**spec.request(), extra_headers=spec.headers())
    except Exception as exc:  # the caller's own error, exactly as without the recorder
        return type(exc).__name__
    return "ok"


async def _send_async(client: Any, spec: Spec) -> str:
    try:
        if spec.stream:
            stream = await client.chat.completions.create(**spec.request(), extra_headers=spec.headers())
            async with stream:
                async for _ in stream:
                    pass
        else:
            await client.chat.completions.create(**spec.request(), extra_headers=spec.headers())
    except Exception as exc:
        return type(exc).__name__
    return "ok"


def _run_sync(rec: Any, client: Any, specs: list[Spec], progress: Any) -> Counter:
    outcomes: Counter = Counter()
    for spec in specs:
        if spec.by_header:
            outcomes[_send(client, spec)] += 1
        else:
            with rec.attribute(project=spec.project, user=spec.user, tags=_tags(spec)):
                outcomes[_send(client, spec)] += 1
        progress.advance()
    return outcomes


async def _run_async(rec: Any, client: Any, specs: list[Spec], progress: Any, concurrency: int = 4) -> Counter:
    outcomes: Counter = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: Spec) -> None:
        async with gate:
            if spec.by_header:
                outcomes[await _send_async(client, spec)] += 1
            else:
                with rec.attribute(project=spec.project, user=spec.user, tags=_tags(spec)):
                    outcomes[await _send_async(client, spec)] += 1
            progress.advance()

    await asyncio.gather(*(one(spec) for spec in specs))
    await client.close()
    return outcomes


# ---------------------------------------------------------------- the run


def run_demo(settings: Settings, calls: int = 120, seed: int = 7, out: TextIO | None = None) -> int:
    import sys

    from openai import AsyncOpenAI, OpenAI

    from ..accounting.pricing import load_rate_book
    from ..record.recorder import Recorder
    from ..reports.text import format_balances, format_reconciliation
    from ..service.polling import poll_balances
    from ..store.engine import Ledger
    from ..store.reconciliation import reconcile
    from ..terminal import Progress
    from .values import AccountConfig as SimAccount
    from .values import SimulatorConfig
    from .server import SimulatorServer

    out = out or sys.stdout
    book = load_rate_book(settings.rate_cards_path)  # a bad rate card stops the demo before anything is written
    run = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    account = f"demo-{run}"
    keys = (f"sk-demo-{secrets.token_hex(12)}", f"sk-demo-{secrets.token_hex(12)}")
    specs = workload(calls, seed)

    config = SimulatorConfig(seed=seed, accounts={account: SimAccount(keys=keys, balance=5_000)}, chunk_latency=0.002)
    # The ledger first: it creates or upgrades the schema before anything else starts.
    with Ledger(settings.database_url) as ledger, SimulatorServer(config) as server:
        polled = replace(settings, accounts=(AccountConfig(
            account, server.base_url, tuple(KeyConfig(f"demo-key-{i + 1}", key=key) for i, key in enumerate(keys))
        ),))
        print(f"credit-ledger demo: {calls} calls to the simulator at {server.base_url}, account {account}", file=out)
        print(f"ledger: {ledger.url}", file=out)
        print(file=out)
        first = poll_balances(polled, ledger)
        started_at = datetime.now(timezone.utc)
        clock = time.perf_counter()

        rec = Recorder(settings=settings, rate_book=book)
        progress = Progress(len(specs), "calls")
        outcomes: Counter = Counter()
        try:
            half = len(specs) // 2
            for i, part in enumerate((specs[:half], specs[half:])):
                sync = [s for s in part if not s.asynchronous]
                asynchronous = [s for s in part if s.asynchronous]
                # Each key is its own client, as two services sharing one balance would be.
                with OpenAI(base_url=server.base_url, api_key=keys[i], http_client=rec.client(), max_retries=0) as client:
                    outcomes += _run_sync(rec, client, sync, progress)
                aclient = AsyncOpenAI(base_url=server.base_url, api_key=keys[i], http_client=rec.async_client(), max_retries=0)
                outcomes += asyncio.run(_run_async(rec, aclient, asynchronous, progress))
                if i == 0:  # a top-up mid-run, between two polls
                    rec.flush(30)
                    poll_balances(polled, ledger)
                    server.platform.top_up(TOP_UP, account=account)
            progress.finish()
            elapsed = time.perf_counter() - clock
            flushed = rec.flush(60)
        finally:
            rec.close()
        last = poll_balances(polled, ledger)

        failures = []
        print(f"sent {len(specs)} calls in {elapsed:.1f} s: {_outcomes(outcomes)}", file=out)
        if not flushed:
            failures.append("the recorder did not write every record within 60 s (they wait in the journal)")
        failures += _report(ledger, specs, keys, settings, started_at, out)

        print("\nbalance (GET /v1/credits)", file=out)
        out.write("before: " + format_balances(first) + "after:  " + format_balances(last))
        result = reconcile(ledger, accounts=[account], billing_settle_seconds=0)
        print("\nreconciliation of this run", file=out)
        out.write(format_reconciliation(result))
        if result.has_unexplained_gap:
            failures.append("the balance's movement is not explained by the ledger")
        failures += _alerts(ledger, polled, account, out)
        workbook = _workbook(polled, ledger, account, started_at)

    print(file=out)
    if failures:
        for failure in failures:
            print(f"demo: FAILED: {failure}", file=out)
        return 1
    print("demo: every injected fault found as its class, nothing else flagged, the balance reconciles", file=out)
    print(f"Excel report of this run: {workbook}", file=out)
    return 0


def _workbook(settings: Settings, ledger: Any, account: str, started_at: datetime) -> str:
    """The run's spend report as a workbook in the reports folder (its account's calls, every one of them)."""
    import io
    from datetime import timedelta

    from ..accounting.periods import range_period
    from ..accounting.group_keys import parse_group_keys
    from ..reports.run import ReportRequest, write_report

    period = range_period(started_at - timedelta(seconds=1), datetime.now(timezone.utc) + timedelta(seconds=1),
                          settings.timezone)
    request = ReportRequest(period, parse_group_keys("project,model"), account, "xlsx", with_calls=True, name=account)
    (path,) = write_report(settings, ledger, request, io.StringIO())
    return str(path)


def _alerts(ledger: Any, settings: Settings, account: str, out: TextIO) -> list[str]:
    """One budget and one balance alert for the run's account, evaluated and delivered to the log; what fired."""
    from ..accounting.budgets import BalanceAlert, Budget, Scope
    from ..config.alerts import AlertSettings, ChannelConfig
    from ..reports.budgets import format_budgets, format_fired
    from ..service.alerting import notify
    from ..service.channels import LogSender

    # The budget: the run's search calls, 2 credits a month (a few calls pass half of it); the balance:
    # below all it was bought (5,000, and the top-up), which it is once a credit is spent.
    budget = Budget(f"{account}-search", Scope(account=account, project="search"), "month", settings.timezone,
                    Decimal(2), thresholds=(50, 80, 100), forecast=True, channels=("demo-log",))
    balance = BalanceAlert(account, below=Decimal(5_000 + TOP_UP), runway_days=7, channels=("demo-log",))
    declared = replace(settings, alerting=AlertSettings((budget,), (balance,), (ChannelConfig("demo-log", "log"),)))
    evaluation, report = notify(ledger, declared, host="credit-ledger-demo", senders={"demo-log": LogSender("demo-log")})
    print("\nbudgets and alerts (credit-ledger budgets --notify)", file=out)
    out.write(format_budgets(evaluation.budgets, evaluation.balances))
    out.write(format_fired(evaluation.raised, evaluation.resolved, report.sent))
    failures = []
    if f"balance:{account}:below:1" not in evaluation.raised:
        failures.append("the balance alert did not fire")
    undelivered = len(evaluation.raised) - report.delivered
    if undelivered:
        failures.append(f"{undelivered} alert(s) not delivered to the log channel")
    return failures


def _outcomes(outcomes: Counter) -> str:
    return ", ".join(f"{count} {name}" for name, count in outcomes.most_common())


def _bar(value: Decimal, largest: Decimal, width: int = 24) -> str:
    if largest <= 0:
        return ""
    return "█" * int(Decimal(width) * value / largest) or ("▏" if value > 0 else "")


def spend_per_project(session: Any, since: datetime) -> str:
    """The summary's table of each project's calls, tokens and credits since `since`; a call without a project
    is `(none)`, one with "" is `(empty)`, as every report labels them."""
    from ..reports.cells import group_label
    from ..store.calls import totals_by_project
    from ..terminal import table

    totals = totals_by_project(session, since)
    largest = max((t.credits_charged for t in totals), default=Decimal(0))
    cols = ["project", "calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "credits_charged", "credits_expected", ""]
    body = [[group_label(t.project), *t[1:], _bar(t.credits_charged, largest)] for t in totals]
    return table(cols, body, right=cols[1:7])


def _report(ledger: Any, specs: list[Spec], keys: tuple[str, ...], settings: Settings, since: datetime, out: TextIO) -> list[str]:
    """Print totals, findings and the fault check; return what went wrong."""
    from sqlalchemy import select

    from ..keys import fingerprint, load_secret
    from ..reports.text import print_findings
    from ..store.models import Call
    from ..terminal import table

    secret = load_secret(settings.secret_path)
    ours = [fingerprint(key, secret) for key in keys]
    with ledger.session() as session:
        rows = list(session.scalars(select(Call).where(Call.key_fingerprint.in_(ours)).order_by(Call.started_at)))
        failures = []
        if len(rows) != len(specs):
            failures.append(f"{len(specs)} calls sent, {len(rows)} in the ledger")

        print("\nspend per project", file=out)
        print(spend_per_project(session, since), file=out)

        print("\npricing check (credit-ledger check)", file=out)
        print_findings(session, since, None, out)

        found: dict[str, list[str]] = {}
        flagged_clean = []
        for call in rows:
            injected = json.loads(call.tags).get("injected") if call.tags else None
            if injected in EXPECTED_CLASS:
                found.setdefault(injected, []).append(call.pricing_class)
            elif call.pricing_class not in CLEAN_CLASSES:
                flagged_clean.append(call)

    print("\ninjected faults", file=out)
    cols = ["fault", "expected class", "found", "result"]
    body = []
    for fault in (s.fault for s in specs if s.fault in EXPECTED_CLASS):
        classes = found.get(fault, [])
        good = classes == [EXPECTED_CLASS[fault]]
        body.append([fault, EXPECTED_CLASS[fault], ", ".join(classes) or "(no record)", "found" if good else "MISSED"])
        if not good:
            failures.append(f"injected {fault} was not found as {EXPECTED_CLASS[fault]}")
    print(table(cols, body), file=out)
    clean = len(rows) - sum(len(v) for v in found.values())
    print(f"clean calls flagged: {len(flagged_clean)} of {clean} "
          f"(slow chunks, refunded 503s, 429s and 404s included, none charged)", file=out)
    for call in flagged_clean:
        failures.append(f"clean call {call.call_id} flagged {call.pricing_class}")
    return failures
