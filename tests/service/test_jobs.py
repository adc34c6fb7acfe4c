"""The service: jobs on a schedule, one instance at a time, survive failures, stop on a signal."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from factories import LoopbackServer, wait_for

from ledger.config import AccountConfig, KeyConfig, Settings
from ledger.service.credits import CreditsClient, RetryPolicy
from ledger.store.engine import Ledger
from ledger.service.jobs import Service, build_scheduler, job_lock, run_job, run_service
from ledger.keys import load_secret
from ledger.store.job_runs import job_runs
from ledger.store.models import BalanceSnapshot

ROOT = Path(__file__).resolve().parents[2]
GOOD = b'{"code": 200, "msg": "success", "data": {"balance": 9800, "total_purchased": 10000, "total_consumed": 200}}'


class Credits:
    def __init__(self) -> None:
        self.body, self.status = GOOD, 200

    async def credits(self, request) -> Response:
        return Response(self.body, status_code=self.status, media_type="application/json")


@pytest.fixture
def credits_api():
    api = Credits()
    with LoopbackServer(Starlette(routes=[Route("/v1/credits", api.credits)])) as server:
        api.base_url = server.root_url + "/v1"
        yield api


def settings_for(database_url: str, base_url: str = "http://127.0.0.1:9/v1") -> Settings:
    return Settings(database_url=database_url, accounts=(AccountConfig("acme", base_url, (KeyConfig("main", key="sk-acme-0001"),)),))


def runs(ledger, job=None):
    with ledger.session() as session:
        return [(r.job, r.outcome, r.started_at, r.ended_at, r.host, r.detail) for r in job_runs(session, job)]


def test_a_run_is_recorded_and_a_failing_run_does_not_raise(ledger, caplog):
    caplog.set_level(logging.INFO, logger="ledger.service.jobs")
    service = Service(settings_for(ledger.url), ledger, host="test-host")

    def boom(_service):
        raise RuntimeError("the report disk is full")

    assert run_job(service, "good", lambda s: ("ok", "did it")) == "ok"
    assert run_job(service, "bad", boom) == "failed"
    (good,), (bad,) = runs(ledger, "good"), runs(ledger, "bad")
    assert good[1] == "ok" and good[4] == "test-host" and good[2] <= good[3]
    assert bad[1] == "failed" and "the report disk is full" in bad[5]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job ")]
    assert len(lines) == 2 and "\n" not in "".join(lines)
    assert lines[1].startswith("job bad failed in ")


def test_a_job_held_elsewhere_is_skipped(ledger):
    service = Service(settings_for(ledger.url), ledger)
    with job_lock(ledger, "poll_credits") as held:
        assert held
        assert run_job(service, "poll_credits", lambda s: ("ok", "")) == "skipped"
    assert runs(ledger) == []
    assert run_job(service, "poll_credits", lambda s: ("ok", "")) == "ok"


def test_jobs_do_not_overlap_and_survive_failures(ledger):
    service = Service(settings_for(ledger.url), ledger)
    active, overlaps, calls = [0], [0], [0]

    def slow(_service):
        active[0] += 1
        overlaps[0] = max(overlaps[0], active[0])
        time.sleep(0.3)
        active[0] -= 1
        return "ok", ""

    def flaky(_service):
        calls[0] += 1
        if calls[0] % 2:
            raise ValueError("every other run fails")
        return "ok", ""

    scheduler = build_scheduler(service, {"slow": (slow, 0.05), "flaky": (flaky, 0.2)})
    started = time.monotonic()
    scheduler.start()
    wait_for(lambda: len(runs(ledger, "slow")) >= 3 and len(runs(ledger, "flaky")) >= 5, what="3 slow and 5 flaky runs")
    scheduler.shutdown(wait=True)
    elapsed = time.monotonic() - started
    assert overlaps[0] == 1
    slow_runs, flaky_runs = runs(ledger, "slow"), runs(ledger, "flaky")
    assert len(slow_runs) <= elapsed / 0.3 + 1  # coalesced: one run at a time, not one per 0.05 s
    assert {o for _, o, *_ in flaky_runs} == {"ok", "failed"}


def test_two_replicas_started_out_of_phase_each_get_turns_at_an_interval_job(ledger):
    """Replica B tries the lock 0.05 s after A each round, while A holds it for 0.1 s: on fixed times B would skip
    every round for ever (a PostgreSQL CI run waited 60 s for the second replica); each run's jitter gives it turns."""
    first, second = Service(settings_for(ledger.url), ledger), Service(settings_for(ledger.url), ledger)
    ran: list[str] = []

    def job(service):
        ran.append("first" if service is first else "second")
        time.sleep(0.1)
        return "ok", ""

    schedulers = []
    for service in (first, second):  # an interval's times count from when its job was added: 0.05 s apart
        schedulers.append(build_scheduler(service, {"shared": (job, 0.4)}, now=datetime.now(timezone.utc) + timedelta(seconds=0.4)))
        schedulers[-1].start()
        time.sleep(0.05)
    try:
        wait_for(lambda: "first" in ran and ran.count("second") >= 2, timeout=30, what="both replicas running the job")
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=True)


def test_a_failing_or_garbled_credits_api_loses_no_snapshot_and_the_service_goes_on(ledger, credits_api):
    settings = settings_for(ledger.url, credits_api.base_url)
    client = CreditsClient(load_secret(), RetryPolicy(attempts=2, base_seconds=0.01, read_timeout=0.5))
    service = Service(settings, ledger, client=client, reconcile_settle_seconds=0)
    from ledger.service.jobs import poll_credits_job, reconcile_job

    scheduler = build_scheduler(service, {"poll_credits": (poll_credits_job, 0.1), "reconcile": (reconcile_job, 0.25)})

    def polls_after(count: int) -> None:  # wait for two more polls (the first may have begun before the change)
        wait_for(lambda: len([r for r in runs(ledger, "poll_credits") if r[1] != "running"]) >= count + 2, what="two more polls")

    scheduler.start()
    try:
        polls_after(0)
        credits_api.status = 502
        polls_after(len(runs(ledger, "poll_credits")))
        credits_api.status, credits_api.body = 200, b'{"code": 200, "data": {"balance": "a lot"}}'
        polls_after(len(runs(ledger, "poll_credits")))
        credits_api.body = GOOD
        polls_after(len(runs(ledger, "poll_credits")))
        wait_for(lambda: len(runs(ledger, "reconcile")) >= 2, what="two reconcile runs")
    finally:
        scheduler.shutdown(wait=True)
        service.close()
    polls = runs(ledger, "poll_credits")
    outcomes = [o for _, o, *_ in polls]
    assert outcomes[0] == "ok" and outcomes[-1] == "ok" and "poll_failed" in outcomes
    with ledger.session() as session:
        statuses = list(session.scalars(select(BalanceSnapshot.status).order_by(BalanceSnapshot.id)))
    assert len(statuses) == len(polls)
    assert {"ok", "server_error", "non_integer_figure"} <= set(statuses)
    assert statuses[0] == "ok" and statuses[-1] == "ok"
    assert {o for _, o, *_ in runs(ledger, "reconcile")} == {"ok"}


def test_run_service_stops_when_asked(database_url, credits_api):
    stop = threading.Event()
    result = []
    settings = settings_for(database_url, credits_api.base_url)
    Ledger(database_url).close()  # the schema first: the test reads the ledger while the service starts
    thread = threading.Thread(target=lambda: result.append(run_service(settings, stop_event=stop)))
    thread.start()
    with Ledger(database_url) as ledger:
        wait_for(lambda: any(r[1] == "ok" for r in runs(ledger, "poll_credits")), what="a poll")
    stop.set()
    thread.join(10)
    assert result == [0]
    with Ledger(database_url) as ledger:
        assert runs(ledger, "poll_credits")[0][1] == "ok"
        assert runs(ledger, "replay_journal")[0][1] in ("ok", "skipped")


SERVICE = textwrap.dedent(
    """
    import logging, sys, time
    from dataclasses import replace
    from ledger.config import AccountConfig, KeyConfig, ScheduleConfig, Settings
    from ledger.service.jobs import default_jobs, run_service

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    url, base_url, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = Settings(
        database_url=url,
        accounts=(AccountConfig("acme", base_url, (KeyConfig("main", key="sk-acme-0001"),)),),
        schedule=ScheduleConfig(poll_credits_seconds=0.2, reconcile_seconds=0.5, replay_journal_seconds=0.5),
    )
    def slow(service):
        time.sleep(0.3)
        return "ok", "slept"
    jobs = default_jobs(settings) if mode == "default" else {"slow": (slow, 0.1)}
    print("ready", flush=True)
    sys.exit(run_service(settings, jobs=jobs))
    """
)


def start_service(url: str, base_url: str, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE, url, base_url, mode],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def test_the_service_stops_cleanly_on_sigterm_and_sigint(database_url, credits_api):
    Ledger(database_url).close()  # the schema first, so both start at once
    for signum in (signal.SIGTERM, signal.SIGINT):
        with Ledger(database_url) as ledger:
            before = len(runs(ledger, "poll_credits"))
            process = start_service(database_url, credits_api.base_url, "default")
            wait_for(lambda: len([r for r in runs(ledger, "poll_credits") if r[1] == "ok"]) > before, what="a poll")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert "service stopped" in stderr and "Traceback" not in stderr
        assert "job poll_credits ok" in stderr
    with Ledger(database_url) as ledger:
        assert all(o != "running" for _, o, *_ in runs(ledger))


def _two_replicas(url: str, base_url: str) -> tuple[list, str]:
    """Two services run the same slow job; then the one running it stops and the other takes over."""
    Ledger(url).close()
    processes = {}
    for _ in range(2):
        process = start_service(url, base_url, "slow")
        processes[process.pid] = process
    with Ledger(url) as ledger:
        # Both replicas have run it (so both were contending for the lock), three runs in all: one may
        # start its scheduler a second after the other on a loaded host.
        wait_for(lambda: len(ok := [r for r in runs(ledger, "slow") if r[1] == "ok"]) >= 3 and len({r[4] for r in ok}) == 2,
                 what="three slow runs, by both replicas")
        latest = max(runs(ledger, "slow"), key=lambda r: r[2])
        order = sorted(processes, key=lambda pid: latest[4].endswith(f":{pid}"), reverse=True)
        log = ""
        for pid in order:  # the replica that ran last stops first; the other takes over, then stops
            processes[pid].send_signal(signal.SIGTERM)
            _, stderr = processes[pid].communicate(timeout=15)
            assert processes[pid].returncode == 0, stderr
            log += stderr
            stopped_at = datetime.now(timezone.utc)
            if pid == order[0]:
                wait_for(lambda: sum(r[2] > stopped_at and r[1] == "ok" for r in runs(ledger, "slow")) >= 2, what="the other replica")
        return runs(ledger, "slow"), log


def _assert_one_at_a_time(slow_runs: list, log: str) -> None:
    slow_runs.sort(key=lambda r: r[2])
    assert len(slow_runs) >= 5
    for before, after in zip(slow_runs, slow_runs[1:]):
        assert after[2] >= before[3], f"{before} overlaps {after}"
    assert "job slow skipped: another replica is running it" in log
    assert len({r[4] for r in slow_runs}) == 2  # the other replica took over


@pytest.mark.postgres
def test_two_replicas_on_postgresql_run_each_job_one_at_a_time(postgres_url, credits_api):
    _assert_one_at_a_time(*_two_replicas(postgres_url, credits_api.base_url))


def test_two_processes_on_one_sqlite_file_run_each_job_one_at_a_time(tmp_path, credits_api):
    _assert_one_at_a_time(*_two_replicas(f"sqlite:///{tmp_path / 'ledger.db'}", credits_api.base_url))


def test_the_balance_and_reconcile_commands_print_and_gate(database_url, credits_api, tmp_path, capsys):
    import io

    from ledger.cli import EXIT_GAP, main

    config = tmp_path / "credit-ledger.toml"
    config.write_text(f"""
[[accounts]]
name = "acme"
base_url = "{credits_api.base_url}"
keys = [{{key = "sk-acme-0001", label = "main"}}]
""")
    args = ["--config", str(config), "--database-url", database_url]
    out = io.StringIO()
    assert main([*args, "balance"], out=out) == 0
    assert out.getvalue().startswith("acme: balance 9800  purchased 10000  consumed 200")
    credits_api.body = GOOD.replace(b"200}", b"203}").replace(b"9800", b"9797")  # 3 credits no call explains
    assert main([*args, "balance"], out=io.StringIO()) == 0
    out = io.StringIO()
    assert main([*args, "reconcile"], out=out) == EXIT_GAP
    assert "unrecorded_spend 3.00" in out.getvalue() and out.getvalue().endswith("verdict: UNEXPLAINED GAP\n")
    out = io.StringIO()
    assert main([*args, "reconcile", "--json"], out=out) == EXIT_GAP
    assert '"has_unexplained_gap": true' in out.getvalue()
    credits_api.status = 401
    out = io.StringIO()
    assert main([*args, "balance"], out=out) == 1
    assert out.getvalue().startswith("acme: no balance: unauthorized (HTTP 401;")
