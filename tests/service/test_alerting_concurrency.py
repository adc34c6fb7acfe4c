"""Exactly once across processes: two `budgets --notify` at once, and two replicas of the service, deliver each alert once."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from factories import insert_records, make_call
from factories import wait_for
from receivers import Receiver
from standardwebhooks import Webhook

from ledger.store.alerts import alert_history
from ledger.store.engine import Ledger

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"twenty-four secret bytes").decode()
THRESHOLDS = list(range(10, 101, 10))


def write_config(tmp_path, schedule: str = "") -> str:
    path = tmp_path / "credit-ledger.toml"
    path.write_text(f"""
secret = "{tmp_path / 'secret'}"
journal = "{tmp_path / 'journal'}"
{schedule}
[[budgets]]
name = "search-daily"
scope = {{project = "search"}}
period = "day"
limit = "100"
thresholds = {THRESHOLDS}
channels = ["oncall"]

[[channels]]
name = "oncall"
kind = "webhook"
url_env = "ONCALL_URL"
secret_env = "ONCALL_SECRET"
""")
    return str(path)


def environment(receiver: Receiver) -> dict[str, str]:
    return {**os.environ, "ONCALL_URL": receiver.url, "ONCALL_SECRET": SECRET, "PYTHONPATH": str(ROOT)}


def spend(ledger: Ledger, credits: int) -> None:
    insert_records(ledger, [make_call(datetime.now(timezone.utc) - timedelta(seconds=1), credits, project="search")])


def delivered_once(receiver: Receiver, expected: int) -> list[str]:
    keys = [Webhook(SECRET).verify(body, headers)["data"]["alert"] for headers, body in receiver.accepted]
    assert len(keys) == expected and len(set(keys)) == expected, Counter(keys).most_common(3)
    assert len({h["webhook-id"] for h, _ in receiver.accepted}) == expected
    return keys


def test_two_notify_commands_at_once_deliver_each_alert_once(database_url, tmp_path):
    config = write_config(tmp_path)
    with Ledger(database_url) as ledger, Receiver(delay=0.15) as receiver:
        spend(ledger, 100)  # every threshold at once: ten alerts for the two commands to race over
        command = [sys.executable, "-m", "ledger.cli", "--config", config, "--database-url", database_url, "budgets", "--notify"]
        runs = [subprocess.Popen(command, env=environment(receiver), cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        keys = delivered_once(receiver, len(THRESHOLDS))
        assert sorted(keys) == sorted(f"budget:search-daily:{t}:{keys[0].rsplit(':', 1)[1]}" for t in THRESHOLDS)
        with ledger.session() as session:
            history = alert_history(session)
        assert len(history) == len(THRESHOLDS)
        for item in history:
            ((delivery, attempts),) = item.deliveries
            assert delivery.status == "delivered" and [a.outcome for a in attempts] == ["delivered"]
        sent = "".join(out for out, _ in outputs)
        assert sent.count(" delivered, HTTP 200") == len(THRESHOLDS)  # between them, each sent once


@pytest.mark.postgres
def test_two_replicas_of_the_service_on_postgresql_deliver_each_alert_once(postgres_url, tmp_path):
    schedule = "[schedule]\nbudgets_seconds = 0.3\npoll_credits_seconds = 3600\nreconcile_seconds = 3600\nreplay_journal_seconds = 3600"
    config = write_config(tmp_path, schedule)
    with Ledger(postgres_url) as ledger, Receiver(delay=0.05) as receiver:
        command = [sys.executable, "-m", "ledger.cli", "--config", config, "--database-url", postgres_url, "run"]
        replicas = [subprocess.Popen(command, env=environment(receiver), cwd=tmp_path, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(2)]
        waited = None
        try:
            for step in range(1, 5):  # 25, 50, 75, 100: each step crosses more thresholds while both replicas run
                spend(ledger, 25)
                wait_for(lambda: len(receiver.accepted) >= 25 * step // 10, timeout=60, what=f"the alerts of step {step}")
            wait_for(lambda: _job_runs_by(ledger) >= 2, timeout=60, what="both replicas running the budgets job")
        except AssertionError as failed:
            waited = failed
        finally:
            for replica in replicas:
                replica.send_signal(signal.SIGTERM)
            outputs = [replica.communicate(timeout=60) for replica in replicas]
        assert waited is None, (str(waited), [err[-3000:] for _, err in outputs])  # what each replica logged
        assert [r.returncode for r in replicas] == [0, 0], outputs
        delivered_once(receiver, len(THRESHOLDS))


def _job_runs_by(ledger: Ledger) -> int:
    from sqlalchemy import func, select

    from ledger.store.models import JobRun

    with ledger.session() as session:
        return session.scalar(select(func.count(func.distinct(JobRun.host))).where(JobRun.job == "budgets")) or 0


def test_the_budgets_json_lists_spent_limit_projection_and_state(database_url, tmp_path):
    from ledger.cli import main
    import io

    config = write_config(tmp_path)
    with Ledger(database_url) as ledger:
        spend(ledger, 42)
    out = io.StringIO()
    assert main(["--config", config, "--database-url", database_url, "budgets", "--json"], out=out) == 0
    (budget,) = json.loads(out.getvalue())["budgets"]
    assert (budget["name"], budget["spent"], budget["limit"], budget["percent"], budget["state"]) == (
        "search-daily", "42", "100", "42", "warning")
    assert budget["crossed"] == [10, 20, 30, 40] and budget["period"]["kind"] == "day" and budget["projection"]
    out = io.StringIO()
    assert main(["--config", config, "--database-url", database_url, "budgets"], out=out) == 0
    assert "search-daily" in out.getvalue() and "42.00" in out.getvalue() and "[█████·······]" in out.getvalue()
