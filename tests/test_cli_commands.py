"""The CLI's long-running and writing commands, run as a user runs them: their output, exit code and what they leave."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
from factories import make_capture, make_raw_capture, wait_for
from sqlalchemy import select

from ledger.cli import main
from ledger.sink.wire import encode
from ledger.store.engine import Ledger
from ledger.store.job_runs import job_runs
from ledger.store.models import Call

ROOT = Path(__file__).resolve().parents[1]


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m ledger.cli ARGS` in a process of its own, warnings as errors."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error", **(env or {})}
    full_env.pop("CREDIT_LEDGER_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "ledger.cli", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM, then what the process printed."""
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_replay_writes_the_journals_records_into_the_ledger_and_says_how_many(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "credit-ledger.journal"  # the config's default
    journal.mkdir()
    captures = [make_raw_capture(i) for i in range(4)] + [make_capture(i) for i in range(4, 6)]  # as a dead process left them
    (journal / "seg-00000000000000000001-1-00000000.seg").write_bytes(b"".join(map(encode, captures)) + b"\0" * 256)

    out = io.StringIO()
    assert main(["--database-url", database_url, "replay"], out=out) == 0
    assert out.getvalue() == (
        "replayed 1 journal segment(s), 6 entries: 6 new, 0 already in the ledger, 0 conflicting (kept aside), "
        "0 torn or unreadable line(s) kept aside; 0 live segment(s) left alone\n")
    with Ledger(database_url) as ledger, ledger.session() as session:
        stored = session.execute(select(Call.call_id, Call.project, Call.credits_charged)).all()
    assert sorted(call_id for call_id, _, _ in stored) == sorted(c.call_id for c in captures)
    assert {project for _, project, _ in stored} == {"project-0", "project-1", "project-2"}
    assert all(charged is not None for _, project, charged in stored if project != "project-2")  # the errors charge nothing known

    out = io.StringIO()  # the journal let them go: a second replay finds nothing
    assert main(["--database-url", database_url, "replay"], out=out) == 0
    assert out.getvalue().startswith("replayed 0 journal segment(s), 0 entries: 0 new")
    assert list(journal.iterdir()) == []


def test_replay_also_writes_what_the_proxys_workers_left_in_their_own_journals(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "credit-ledger.journal"
    for worker, first in ((0, 0), (1, 3)):  # `credit-ledger proxy --workers 2` killed: proxy-0 and proxy-1 left behind
        folder = journal / f"proxy-{worker}"
        folder.mkdir(parents=True)
        captures = [make_raw_capture(i) for i in range(first, first + 3)]
        (folder / "seg-00000000000000000001-1-00000000.seg").write_bytes(b"".join(map(encode, captures)) + b"\0" * 64)
    (journal / "proxy-notes").mkdir()  # not a worker's journal: left alone
    out = io.StringIO()
    assert main(["--database-url", database_url, "replay"], out=out) == 0
    assert out.getvalue().startswith("replayed 2 journal segment(s), 6 entries: 6 new, 0 already in the ledger")
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert len(session.execute(select(Call.call_id)).all()) == 6
    assert sorted(p.name for p in journal.rglob("*")) == ["proxy-0", "proxy-1", "proxy-notes"]


def test_simulate_serves_the_api_on_its_port_and_stops_on_sigterm_with_exit_0(tmp_path):
    port = free_port()
    process = start(["simulate", "--port", str(port)], tmp_path)
    try:
        assert process.stdout.readline() == f"simulator on http://127.0.0.1:{port}/v1 (Ctrl-C stops it)\n"
        base_url = f"http://127.0.0.1:{port}/v1"

        def answered():
            try:
                return httpx2.post(base_url + "/chat/completions", headers={"Authorization": "Bearer sk-cli-0001"},
                                   json={"model": "gemini-3.1-pro", "stream": False,
                                         "messages": [{"role": "user", "content": "hi"}]})
            except httpx2.TransportError:
                return None  # not listening yet

        response = wait_for(answered, timeout=15, what="the simulator to answer")
        assert response.status_code == 200
        assert response.json()["usage"]["prompt_tokens"] > 0
    finally:
        out, err = stop(process)
    assert process.returncode == 0, err
    assert "Traceback" not in err and out == ""


def test_run_polls_reconciles_and_replays_on_its_schedule_and_stops_on_sigterm_with_exit_0(database_url, tmp_path, simulator):
    config = tmp_path / "credit-ledger.toml"
    config.write_text(f"""\
journal = "{tmp_path / 'journal'}"

[schedule]
poll_credits_seconds = 0.2
reconcile_seconds = 0.5
replay_journal_seconds = 0.5

[[accounts]]
name = "acme"
base_url = "{simulator.base_url}"
keys = [{{env = "ACME_KEY", label = "main"}}]
""")
    Ledger(database_url).close()  # the schema first: the test reads the ledger while the service starts
    process = start(["--config", str(config), "--database-url", database_url, "run"], tmp_path,
                    env={"ACME_KEY": "sk-acme-cli-0001"})
    try:
        with Ledger(database_url) as ledger:
            def done():
                with ledger.session() as session:
                    runs = job_runs(session)
                ok = {run.job for run in runs if run.outcome == "ok"}
                return {"poll_credits", "reconcile"} <= ok and len([r for r in runs if r.job == "poll_credits"]) >= 2
            wait_for(done, timeout=30, what="two polls and a reconcile")
    finally:
        out, err = stop(process)
    assert process.returncode == 0, err
    assert "service stopped" in err and "Traceback" not in err and out == ""
    with Ledger(database_url) as ledger, ledger.session() as session:
        runs = job_runs(session)
    assert {run.job for run in runs} == {"poll_credits", "reconcile", "replay_journal"}
    assert all(run.outcome != "running" and run.ended_at is not None for run in runs)  # none left half done
    assert any(run.job == "poll_credits" and run.outcome == "ok" and run.detail.startswith("acme ") for run in runs)
