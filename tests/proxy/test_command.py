"""`credit-ledger proxy` as a process: SIGTERM drains and exits 0, a killed worker loses no answered call, bad input is one line."""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx2
import pytest

from proxy_parts import ledger_rows
from factories import wait_for
from ledger.cli import main
from ledger.keys import fingerprint, load_secret

KEY = "sk-test-proxy-command-01"
BODY = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Say hello"}], "stream": False}
AUTH = {"Authorization": f"Bearer {KEY}"}


def config_file(tmp_path: Path, database_url: str, extra: str = "", shutdown_seconds: int = 20) -> Path:
    path = tmp_path / "credit-ledger.toml"
    path.write_text(f'database_url = "{database_url}"\njournal = "{tmp_path / "journal"}"\nsecret = "{tmp_path / "secret"}"\n'
                    f"[proxy]\nshutdown_seconds = {shutdown_seconds}\n{extra}")
    return path


def start(tmp_path: Path, database_url: str, *flags: str, open_files: tuple[int, int] | None = None,
          shutdown_seconds: int = 20) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "CREDIT_LEDGER_CONFIG": str(config_file(tmp_path, database_url, shutdown_seconds=shutdown_seconds))}
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files)) if open_files else None
    process = subprocess.Popen([sys.executable, "-m", "ledger.cli", "proxy", "--port", "0", *flags], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    line = process.stdout.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)/v1 ", line)
    assert found, (line, process.stderr.read() if process.poll() is not None else "")
    root = found[1]

    def healthy() -> bool:
        try:
            return httpx2.get(root + "/healthz").status_code == 200
        except httpx2.TransportError:
            return False

    wait_for(healthy, what="the proxy to answer /healthz")
    return process, root


def stopped(process: subprocess.Popen, signalled: bool = False) -> tuple[int, str]:
    """SIGTERM (unless sent already), then the exit code and what it said on stderr."""
    if not signalled:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def workers_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_sigterm_finishes_the_call_in_flight_flushes_the_ledger_and_exits_0(sim, database_url, tmp_path):
    sim.platform.reset()
    process, root = start(tmp_path, database_url, "--upstream", sim.base_url)
    headers = {**AUTH, "X-Sim-Fault": "slow_chunks", "X-Sim-Completion-Tokens": "12"}  # six events, 0.2 s apart
    with httpx2.Client(timeout=30) as client:
        with client.stream("POST", root + "/v1/chat/completions", json={**BODY, "stream": True, "include_thoughts": False},
                           headers=headers) as answer:
            pieces = answer.iter_raw()
            first = next(pieces)
            process.send_signal(signal.SIGTERM)
            body = first + b"".join(pieces)
    code, err = stopped(process, signalled=True)
    assert code == 0 and err == "", err
    assert body.endswith(b"data: [DONE]\n\n")
    [row] = ledger_rows(database_url)
    call = sim.platform.call_log[-1]
    assert (row.status, row.completion_id, row.completion_tokens, row.credits_charged) == (
        "completed", call.id, 12, call.credits_charged)
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(root + "/healthz")


def test_a_stream_outliving_shutdown_seconds_is_cut_recorded_and_leaves_no_traceback(sim, database_url, tmp_path):
    sim.platform.reset()
    process, root = start(tmp_path, database_url, "--upstream", sim.base_url, shutdown_seconds=3)
    headers = {**AUTH, "X-Sim-Fault": "slow_chunks", "X-Sim-Completion-Tokens": "400"}  # 200 events, 0.2 s apart: 40 s
    with httpx2.Client(timeout=30) as client:
        with client.stream("POST", root + "/v1/chat/completions", json={**BODY, "stream": True}, headers=headers) as answer:
            pieces = answer.iter_raw()
            next(pieces)
            process.send_signal(signal.SIGTERM)
            with pytest.raises(httpx2.RemoteProtocolError):
                for _ in pieces:
                    pass
    code, err = stopped(process, signalled=True)
    assert code == 0 and "Traceback" not in err and "Exception in ASGI application" not in err, err
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in err
    [row] = ledger_rows(database_url)
    assert row.status == "failed" and row.completion_id == sim.platform.call_log[-1].id


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_as_soon_as_the_port_is_open_stops_the_proxy_cleanly(sim, database_url, tmp_path, workers):
    env = {**os.environ, "CREDIT_LEDGER_CONFIG": str(config_file(tmp_path, database_url))}
    process = subprocess.Popen([sys.executable, "-m", "ledger.cli", "proxy", "--port", "0", "--workers", workers,
                                "--upstream", sim.base_url], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("credit-ledger proxy on http://127.0.0.1:")  # the port is open
    code, err = stopped(process)
    assert (code, err) == (0, "")


def test_a_worker_killed_under_load_loses_no_answered_call_and_counts_none_twice(sim, database_url, tmp_path):
    process, root = start(tmp_path, database_url, "--upstream", sim.base_url, "--workers", "2")
    first = wait_for(lambda: workers_of(process.pid) if len(workers_of(process.pid)) == 2 else None, what="two workers")
    answered: list[str] = []
    broken: list[str] = []

    def load(calls: int) -> None:
        with httpx2.Client(timeout=30) as client:
            for _ in range(calls):
                try:
                    answer = client.post(root + "/v1/chat/completions", json=BODY, headers=AUTH)
                except httpx2.TransportError as error:  # a call in flight on the killed worker: never answered
                    broken.append(type(error).__name__)
                    continue
                assert answer.status_code == 200, answer.text
                answered.append(answer.json()["id"])

    threads = [threading.Thread(target=load, args=(60,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered) >= 60, what="calls answered before the kill")
    os.kill(first[0], signal.SIGKILL)
    for thread in threads:
        thread.join(120)
    wait_for(lambda: len(workers_of(process.pid)) == 2 and first[0] not in workers_of(process.pid), what="a new worker")
    load(20)  # served by both again
    code, err = stopped(process)
    assert code == 0 and f"(pid {first[0]}) ended (signal 9); starting it again" in err, err
    counted = Counter(row.completion_id for row in ledger_rows(database_url))
    assert len(answered) + len(broken) == 380 and len(answered) >= 300
    assert [completion for completion in answered if counted[completion] != 1] == []


def open_files_of(pid: int) -> tuple[int, int]:
    [line] = [line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_the_soft_open_files_limit_is_raised_to_the_hard_one_and_a_low_one_caps_the_connections(sim, database_url, tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard < 1024:
        pytest.skip("needs a finite hard open-files limit of at least 1024")
    process, _ = start(tmp_path, database_url, "--upstream", sim.base_url, "--workers", "2", open_files=(256, hard))
    worker = wait_for(lambda: workers_of(process.pid), what="a worker")[0]
    assert open_files_of(process.pid) == open_files_of(worker) == (hard, hard)
    code, err = stopped(process)
    assert code == 0 and err == "", err
    process, _ = start(tmp_path, database_url, "--upstream", sim.base_url, open_files=(500, 500))
    code, err = stopped(process)
    assert code == 0 and err == ("credit-ledger proxy: 200 client connections per worker, not 1000 "
                                 "([proxy] max_client_connections): the open-files limit is 500\n"), err


def test_a_flood_of_silent_connections_past_the_open_files_limit_locks_no_client_out(sim, database_url, tmp_path):
    process, root = start(tmp_path, database_url, "--upstream", sim.base_url, open_files=(256, 256))
    port = int(root.rpartition(":")[2])
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(600)]  # more than the proxy has descriptors
    try:
        with httpx2.Client(timeout=30) as client:
            answer = client.post(root + "/v1/chat/completions", json=BODY, headers=AUTH)
    finally:
        for connection in flood:
            connection.close()
    code, err = stopped(process)
    assert answer.status_code == 200 and code == 0
    assert err == ("credit-ledger proxy: 78 client connections per worker, not 1000 ([proxy] max_client_connections): "
                   "the open-files limit is 256\n"), err
    assert [row.completion_id for row in ledger_rows(database_url)] == [answer.json()["id"]]


def one_line_error(capsys, argv: list[str], stdin: str | None = None, code: int = 1) -> str:
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        assert main(argv) == code
    finally:
        sys.stdin = sys.__stdin__
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_and_exit_1(capsys, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CREDIT_LEDGER_CONFIG", str(config_file(tmp_path, database_url)))
    assert "--upstream: must start with http:// or https://" in one_line_error(capsys, ["proxy", "--upstream", "ftp://x/v1"])
    assert "no query, fragment or credentials" in one_line_error(capsys, ["proxy", "--upstream", "http://u:sk-secret-123456@h/v1"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert "cannot listen on 127.0.0.1:" in one_line_error(capsys, ["proxy", "--port", port, "--upstream", "http://127.0.0.1:9/v1"])
    monkeypatch.setenv("CREDIT_LEDGER_CONFIG", str(config_file(tmp_path, database_url, '[[proxy.keys]]\nname = "search"\n'
                                                              'key_env = "TEAM_KEY"\nupstream_key_env = "NOT_SET_HERE"\n')))
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    assert "NOT_SET_HERE (its upstream API key) is not set" in one_line_error(capsys, ["proxy"])
    with pytest.raises(SystemExit) as usage:
        main(["proxy", "--workers", "0"])
    assert usage.value.code == 2


def test_fingerprint_prints_what_a_proxy_key_entry_holds(capsys, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CREDIT_LEDGER_CONFIG", str(config_file(tmp_path, database_url)))
    sys.stdin = io.StringIO("sk-team-search-00000000042\n")
    try:
        assert main(["proxy", "--fingerprint"]) == 0
    finally:
        sys.stdin = sys.__stdin__
    out = capsys.readouterr().out
    assert out == fingerprint("sk-team-search-00000000042", load_secret(tmp_path / "secret")) + "\n"
    assert "not-a-key" not in one_line_error(capsys, ["proxy", "--fingerprint"], stdin="not-a-key\n")
