"""The dashboard served as a person runs it: `credit-ledger dashboard`, and inside `credit-ledger run` when enabled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
from factories import wait_for

from ledger.store.engine import Ledger

ROOT = Path(__file__).resolve().parents[2]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    env.pop("CREDIT_LEDGER_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "ledger.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer(url: str):
    try:
        return httpx2.get(url, timeout=2)
    except httpx2.TransportError:
        return None


def stopped(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=30)


def test_the_dashboard_command_serves_the_sign_in_page_on_loopback_with_bounded_heads(database_url, tmp_path):
    Ledger(database_url).close()
    port = free_port()
    process = start(["--database-url", database_url, "dashboard", "--port", str(port)], tmp_path)
    try:
        page = wait_for(lambda: answer(f"http://127.0.0.1:{port}/login"), timeout=20, what="the dashboard")
        assert page.status_code == 200 and 'name="username"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        huge = answer(f"http://127.0.0.1:{port}/login?{'x' * 40_000}")
        assert huge is None or huge.status_code in (414, 431)
    finally:
        out, err = stopped(process)
    assert process.returncode == 0, err
    assert out == f"credit-ledger dashboard on http://127.0.0.1:{port}/ (Ctrl-C stops it)\n"


def test_run_serves_the_dashboard_beside_the_service_when_enabled(database_url, tmp_path):
    Ledger(database_url).close()
    port = free_port()
    config = tmp_path / "credit-ledger.toml"
    config.write_text(f'journal = "{tmp_path / "journal"}"\n\n[dashboard]\nenabled = true\nport = {port}\n')
    process = start(["--config", str(config), "--database-url", database_url, "run"], tmp_path)
    try:
        page = wait_for(lambda: answer(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="the dashboard in run")
        assert page.text == "ok\n"
    finally:
        out, err = stopped(process)
    assert process.returncode == 0, err
    assert out == f"credit-ledger dashboard on http://127.0.0.1:{port}/\n"
    assert "service stopped" in err and "Traceback" not in err
    assert answer(f"http://127.0.0.1:{port}/healthz") is None  # stopped with the service
