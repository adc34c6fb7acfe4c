"""The recording proxy's cost: the same calls straight to the simulator and through `credit-ledger proxy`, side by side in one run.

The simulator and the proxy run in processes of their own (the proxy as the
command line starts it, recording into a SQLite ledger, or the one given with
--database-url). The load comes from a light asyncio client of this script's
own: requests encoded once, sent on keep-alive connections, each answer read
to its end by its framing (Content-Length or chunks), so that the client costs
both sides little and the same. Sides alternate in short runs (direct, proxy,
proxy, direct, ...) so the host's drift touches both alike.

For each kind of call (non-streaming, streaming) and each number of
concurrent clients (1, 16, 64): each side's latency per call at p50 and p99,
the difference (what the proxy adds), and calls per second. Then the proxy
with `--workers 2` under 64 clients: calls answered per second, and calls per
second into the ledger (from the first call to the moment the ledger holds
every one of them, counted in the database).

    .venv/bin/python benchmarks/bench_proxy.py [--calls 3000] [--rounds 6] [--workers 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "sk-bench-proxy-0000000001"
BODY = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Say hello"}], "stream": False}
STREAM_BODY = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Say hello"}], "include_thoughts": False}
CLI = [sys.executable, "-m", "ledger.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} ended: {process.stderr.read() if process.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start on port {port}")


def start_simulator(env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(CLI + ["simulate", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_listening(port, process, "the simulator")
    import httpx2

    # Enough credits for every call of the run (the simulator answers 402 once an account has none).
    httpx2.post(f"http://127.0.0.1:{port}/sim/topup", json={"credits": 10**9, "api_key": KEY}).raise_for_status()
    return process, port


def start_proxy(workdir: Path, env: dict, upstream_port: int, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(CLI + ["proxy", "--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}/v1",
                                      "--workers", str(workers)],
                               cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_listening(port, process, "the proxy")
    return process, port


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its children that ended (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """A process and its descendants (the proxy's workers and their writer processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.extend(tree(int(child)))
    return found


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


# ---------------------------------------------------------------- a light client


def encoded(port: int, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def call(self, request: bytes) -> int:
        """Send one request; read its answer to the end; its status."""
        self.writer.write(request)
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"content-length:")
        if at >= 0:
            await reader.readexactly(int(lowered[at + 15 : lowered.index(b"\r\n", at)]))
        else:
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        if status != 200:
            raise SystemExit(f"a call answered {status}: {head[:200]!r}")
        return status

    def close(self) -> None:
        self.writer.close()


async def run_side(port: int, request: bytes, clients: int, calls_each: int, connections: list) -> tuple[list[float], float]:
    """`clients` connections each making `calls_each` calls in turn: (each call's seconds, the run's wall seconds)."""
    while len(connections) < clients:
        connections.append(await Connection.open(port))
    latencies: list[float] = []
    clock = time.perf_counter

    async def client(connection: Connection) -> None:
        for _ in range(calls_each):
            began = clock()
            await connection.call(request)
            latencies.append(clock() - began)

    began = clock()
    await asyncio.gather(*(client(c) for c in connections[:clients]))
    return latencies, clock() - began


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def side_by_side(direct_port: int, proxy_port: int, body: dict, clients: int, calls: int, rounds: int,
                       pids: dict[str, list[int]]) -> dict:
    """Runs alternate direct/proxy (ABBA) until each side made about `calls` calls; the figures of each side."""
    requests = {"direct": encoded(direct_port, body), "proxy": encoded(proxy_port, body)}
    ports = {"direct": direct_port, "proxy": proxy_port}
    connections: dict[str, list] = {"direct": [], "proxy": []}
    latencies: dict[str, list[float]] = {"direct": [], "proxy": []}
    walls = {"direct": 0.0, "proxy": 0.0}
    cpu = {"sim": 0.0, "proxy": 0.0}
    calls_each = max(1, calls // (clients * rounds * 2))
    for side in ("direct", "proxy"):  # warm: connections made, first calls paid
        await run_side(ports[side], requests[side], clients, 2, connections[side])
    for index in range(rounds * 2):
        order = ("direct", "proxy") if index % 2 == 0 else ("proxy", "direct")
        for side in order:
            before = {name: sum(cpu_seconds(pid) for pid in found) for name, found in pids.items()}
            measured, wall = await run_side(ports[side], requests[side], clients, calls_each, connections[side])
            if side == "proxy":
                for name, found in pids.items():
                    cpu[name] += sum(cpu_seconds(pid) for pid in found) - before[name]
            latencies[side].extend(measured)
            walls[side] += wall
    for side in connections:
        for connection in connections[side]:
            connection.close()
    figures = {}
    for side in ("direct", "proxy"):
        figures[side] = {"p50_ms": percentile(latencies[side], 0.5) * 1e3, "p99_ms": percentile(latencies[side], 0.99) * 1e3,
                         "calls_per_s": len(latencies[side]) / walls[side], "calls": len(latencies[side])}
    figures["added_p50_ms"] = figures["proxy"]["p50_ms"] - figures["direct"]["p50_ms"]
    figures["added_p99_ms"] = figures["proxy"]["p99_ms"] - figures["direct"]["p99_ms"]
    figures["cpu_us"] = {name: seconds / len(latencies["proxy"]) * 1e6 for name, seconds in cpu.items()}
    return figures


async def throughput(port: int, body: dict, clients: int, calls: int) -> tuple[int, float]:
    connections: list = []
    await run_side(port, encoded(port, body), clients, 2, connections)  # warm
    latencies, wall = await run_side(port, encoded(port, body), clients, max(1, calls // clients), connections)
    for connection in connections:
        connection.close()
    return len(latencies), wall


def ledger_count(database_url: str) -> int:
    from sqlalchemy import text

    from ledger.store.engine import Ledger

    with Ledger(database_url, upgrade_schema=False) as ledger, ledger.session() as session:
        return session.execute(text("SELECT count(*) FROM calls")).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per side for each kind and concurrency")
    parser.add_argument("--rounds", type=int, default=6, help="ABBA rounds each figure is spread over")
    parser.add_argument("--workers", type=int, default=2, help="workers of the throughput run")
    parser.add_argument("--throughput-calls", type=int, default=20000)
    parser.add_argument("--database-url", help="the ledger (default: a SQLite file in a temporary folder)")
    parser.add_argument("--writer-processes", type=int, default=None, help="[recorder] writer_processes of the proxy")
    parser.add_argument("--only", choices=("latency", "throughput"), help="run one part")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        database_url = args.database_url or f"sqlite:///{workdir / 'ledger.db'}"
        config = f'database_url = "{database_url}"\njournal = "{workdir / "journal"}"\nsecret = "{workdir / "secret"}"\n'
        if args.writer_processes is not None:
            config += f"[recorder]\nwriter_processes = {args.writer_processes}\n"
        (workdir / "credit-ledger.toml").write_text(config)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CREDIT_LEDGER_FINGERPRINT_SECRET": "bench-secret-0123456789"}
        env.pop("CREDIT_LEDGER_CONFIG", None)
        env.pop("CREDIT_LEDGER_DATABASE_URL", None)
        sim, sim_port = start_simulator(env)
        try:
            subprocess.run(CLI + ["--database-url", database_url, "db", "upgrade"], cwd=workdir, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            before = ledger_count(database_url)
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; ledger {database_url.split(':')[0]}; "
                  f"proxy http: {'httptools' if _has('httptools') else 'h11'}, loop: {'uvloop' if _has('uvloop') else 'asyncio'}")
            if args.only != "throughput":
                proxy, proxy_port = start_proxy(workdir, env, sim_port, 1)
                try:
                    pids = {"proxy": tree(proxy.pid), "sim": [sim.pid]}
                    print("\nkind        clients | direct p50   p99    calls/s | proxy p50   p99    calls/s | added p50  p99"
                          "       | CPU a proxied call: proxy  simulator")
                    for kind, body in (("non-stream", BODY), ("stream", STREAM_BODY)):
                        for clients in (1, 16, 64):
                            f = asyncio.run(side_by_side(sim_port, proxy_port, body, clients, args.calls, args.rounds, pids))
                            d, p = f["direct"], f["proxy"]
                            print(f"{kind:<11} {clients:>7} | {d['p50_ms']:7.3f} {d['p99_ms']:7.3f} {d['calls_per_s']:8.0f} | "
                                  f"{p['p50_ms']:7.3f} {p['p99_ms']:7.3f} {p['calls_per_s']:8.0f} | "
                                  f"{f['added_p50_ms']:+7.3f} {f['added_p99_ms']:+7.3f} ms | "
                                  f"{f['cpu_us']['proxy']:6.0f} us {f['cpu_us']['sim']:6.0f} us", flush=True)
                finally:
                    code = stop(proxy)
                    if code != 0:
                        print(f"the proxy exited {code}: {proxy.stderr.read()}")
            if args.only != "latency":
                proxy, proxy_port = start_proxy(workdir, env, sim_port, args.workers)
                start_count = ledger_count(database_url)
                try:
                    began = time.perf_counter()
                    calls, wall = asyncio.run(throughput(proxy_port, BODY, 64, args.throughput_calls))
                    calls += 2 * 64  # the warm-up's calls are recorded too
                    while ledger_count(database_url) - start_count < calls and time.perf_counter() - began < wall + 60:
                        time.sleep(0.01)
                    into_ledger = time.perf_counter() - began
                finally:
                    code = stop(proxy)
                recorded = ledger_count(database_url) - start_count
                print(f"\n--workers {args.workers}, 64 clients, non-stream: {calls - 128} calls answered in {wall:.2f} s = "
                      f"{(calls - 128) / wall:,.0f} calls/s; all {calls} in the ledger {into_ledger:.2f} s after the first "
                      f"= {calls / into_ledger:,.0f} recorded calls/s; ledger rows {recorded} (exit {code})")
            print(f"\nledger rows in all: {ledger_count(database_url) - before}")
        finally:
            sim.terminate()
            sim.wait()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
