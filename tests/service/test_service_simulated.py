"""`credit-ledger run` as a process against the simulator on loopback, with calls
recorded meanwhile: it polls, reconciles, replays, logs a line a run, and stops
cleanly on SIGTERM; `credit-ledger reconcile` then finds the run clean."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from openai import OpenAI
from sqlalchemy import select

from factories import wait_for

from ledger.accounting.verdict import StoredVerdict
from ledger.store.job_runs import job_runs
from ledger.cli import main
from ledger.store.engine import Ledger
from ledger.store.models import BalanceSnapshot
from ledger.record.recorder import Recorder
from ledger.sim.values import AccountConfig as SimAccount
from ledger.sim.values import SimulatorConfig
from ledger.sim.server import SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-service-0000000000000001"


def acme_ok(detail: str | None) -> bool:
    """The verdict a reconcile run kept has account acme's cumulative line ok."""
    kept = StoredVerdict.from_detail(detail)
    return kept is not None and any(a.account == "acme" and a.status == "ok" for a in kept.accounts)


def test_the_service_polls_reconciles_and_stops_cleanly_against_the_simulator(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SimulatorServer(SimulatorConfig(seed=2, accounts={"acme": SimAccount(keys=(KEY,), balance=1_000)})) as sim:
        config = tmp_path / "credit-ledger.toml"
        config.write_text(
            f'journal = "{tmp_path / "journal"}"\n'
            f'[[accounts]]\nname = "acme"\nbase_url = "{sim.base_url}"\nkeys = [{{key = "{KEY}", label = "backend"}}]\n'
            "[schedule]\npoll_credits_seconds = 0.5\nreconcile_seconds = 1\nreplay_journal_seconds = 1\n"
            "reconcile_settle_seconds = 1\n"
            "[recorder]\nwriter_processes = 0\n"  # a writer thread: the processes are test_writer's subject
        )
        Ledger(database_url).close()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CREDIT_LEDGER_CONFIG": str(config), "PYTHONWARNINGS": "error"}
        service = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "--database-url", database_url, "run"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            monkeypatch.setenv("CREDIT_LEDGER_CONFIG", str(config))
            with Recorder(database_url) as rec:
                client = OpenAI(base_url=sim.base_url, api_key=KEY, http_client=rec.client(), max_retries=0)
                with client, rec.attribute(project="svc"):
                    for i in range(40):
                        messages = [{"role": "user", "content": "word " * (200 + i)}]
                        if i % 2:
                            client.chat.completions.create(model="gemini-3.1-pro", messages=messages, stream=False)
                        else:
                            for _ in client.chat.completions.create(model="gemini-3.1-pro", messages=messages, stream=True):
                                pass
                assert rec.flush(30)
            calls_done = datetime.now(timezone.utc)

            def reconciled_after_the_calls() -> bool:  # a poll after them, then a reconcile once it settled
                with Ledger(database_url) as ledger, ledger.session() as session:
                    return any(r.job == "reconcile" and r.outcome == "ok" and acme_ok(r.detail)
                               and r.started_at > calls_done + timedelta(seconds=1.5) for r in job_runs(session))

            wait_for(reconciled_after_the_calls, timeout=30, interval=0.2, what="a reconcile over the calls")
        finally:
            service.send_signal(signal.SIGTERM)
            _, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    assert "Traceback" not in stderr and "service stopped" in stderr
    for job in ("poll_credits", "reconcile", "replay_journal"):
        assert f"job {job} ok" in stderr, stderr
    with Ledger(database_url) as ledger, ledger.session() as session:
        runs = job_runs(session)
        assert {r.job for r in runs} == {"poll_credits", "reconcile", "replay_journal"}
        assert all(r.outcome == "ok" for r in runs if r.job != "reconcile"), [(r.job, r.outcome) for r in runs]
        last = [r for r in runs if r.job == "reconcile"][-1]
        assert last.outcome == "ok" and acme_ok(last.detail), (last.outcome, last.detail)
        assert len(session.scalars(select(BalanceSnapshot)).all()) >= 4

    out = io.StringIO()
    code = main(["--database-url", database_url, "reconcile"], out=out)
    assert code == 0, out.getvalue()
    text = out.getvalue()
    assert "cumulative" in text and "verdict: reconciled" in text
