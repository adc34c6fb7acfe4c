"""Recorder overhead: the same calls with and without the recorder, side by side in one run.

The simulator runs in a subprocess (its own GIL) on loopback. The two sides
alternate in short runs (A B B A ...): a run is one call that is not counted,
then `--run` calls that are, so each counted call follows a call of its own
side, as in an application whose every call is recorded (or none), and the
sides are never more than a few milliseconds apart, so the host's drift (it
moves by several per cent within tens of milliseconds here) touches both
alike. Each figure is the median of a side's counted calls, the ratio the one
of the medians; the range beside it is the ratio in each fifth of the
measure, in order, as a measure of its spread. The recorder writes for real: a
LedgerSink journals every capture on the caller's path and its writer
processes insert them into a SQLite ledger (their CPU a record is printed;
they run on this 2-core machine beside both sides); for comparison, the same
with the writer in a thread of the caller's process (writer_processes=0) and
with a sink that discards.

Why the uncounted call: what a call leaves behind is paid by the next one.
Until 2026-12-01 each recorded call left a garbage cycle for the collector,
and a plain call after a recorded one took 3% longer than after a plain one;
strict alternation (runs of one) then charged that to the plain side and
read 1.015 - 1.027 where runs of twenty read 1.068 - 1.078.

`--method blocks` measures as this script did until 2026-12-01: blocks of
`--calls` calls, alternating (ABBA), the ratio the median of the paired
per-block ratios of per-block medians, the range the lowest and highest of
those (on a noisy host, 0.6 - 2.0).

    .venv/bin/python benchmarks/bench_recorder.py [--pairs 300] [--run 10] [--stream-mb 100] [--method runs|blocks] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import openai  # noqa: E402

from ledger.config import Settings  # noqa: E402
from ledger.record.recorder import Recorder  # noqa: E402
from ledger.sink.sink import LedgerSink  # noqa: E402
from memory_call import CHAT_ANSWER, NullSink, memory_transport, per_call_us  # noqa: E402,F401 (bench_sides and bench_budgets import them from here)

KEY = "sk-bench-0000000000000001"
BODY = {"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Say hello"}], "stream": False}
STREAM_BODY = {**BODY, "stream": True, "include_thoughts": False}
HEADERS = {"Authorization": f"Bearer {KEY}"}
BYTES_PER_TOKEN = 58.6  # a streamed content chunk (4 tokens) is ~234 bytes


def start_simulator() -> tuple[subprocess.Popen, str]:
    code = (
        "import sys, time\n"
        "from ledger.sim.server import SimulatorServer\n"
        "server = SimulatorServer().start()\n"
        "print(server.base_url, flush=True)\n"
        "sys.stdin.read()\n"  # until the parent closes our stdin
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def paired(run_a, run_b, blocks: int) -> tuple[float, float, float, float, float]:
    """(median a, median b, median of a/b, lowest, highest): per-block medians, blocks alternating a, b (ABBA)."""
    a_times, b_times, ratios = [], [], []
    for index in range(blocks):
        first, second = (run_a, run_b) if index % 2 == 0 else (run_b, run_a)  # ABBA: no side always goes first
        x, y = first(), second()
        a, b = (x, y) if index % 2 == 0 else (y, x)
        a_times.append(a)
        b_times.append(b)
        ratios.append(a / b)
    return statistics.median(a_times), statistics.median(b_times), statistics.median(ratios), min(ratios), max(ratios)


def alternating_runs(call_a, call_b, pairs: int, run: int, parts: int = 5) -> tuple[float, float, float, float, float]:
    """(median a, median b, their ratio, lowest and highest ratio of the run's fifths).

    Runs of `run` + 1 calls of one side alternate with the other's (A B B A ...);
    the first call of each run, which follows the other side's, is not counted.
    Each call returns its own time in seconds.
    """
    times: dict[str, list[float]] = {"a": [], "b": []}
    for index in range(pairs):
        for side in ("ab" if index % 2 == 0 else "ba"):
            call, kept = (call_a, times["a"]) if side == "a" else (call_b, times["b"])
            call()  # after the other side's call: what that left behind is not this side's doing
            for _ in range(run):
                kept.append(call())
    a_times, b_times = times["a"], times["b"]
    size = len(a_times) // parts
    fifths = [statistics.median(a_times[i : i + size]) / statistics.median(b_times[i : i + size])
              for i in range(0, size * parts, size)]
    a, b = statistics.median(a_times), statistics.median(b_times)
    return a, b, a / b, min(fifths), max(fifths)


def timed(call):
    def run() -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    return run


def block(call, calls: int):
    def run() -> float:
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return run


def raw_call(client: httpx2.Client, url: str):
    def call():
        client.post(url, json=BODY, headers=HEADERS).read()

    return call


def sdk_call(client: openai.OpenAI):
    def call():
        client.chat.completions.create(**BODY)

    return call


def ttfb_call(client: httpx2.Client, url: str):
    def call() -> float:
        started = time.perf_counter()
        with client.stream("POST", url, json=STREAM_BODY, headers=HEADERS) as response:
            chunks = response.iter_raw()
            next(chunks)
            first = time.perf_counter() - started
            for _ in chunks:
                pass
        return first

    return call


def block_of(call, calls: int):
    """A block of `calls` of a call that returns its own time: their median."""
    return lambda: statistics.median(call() for _ in range(calls))


# ---------------------------------------------------------------- memory: a child process per side


def memory_child(base_url: str, tokens: int, recorded: bool) -> None:
    """Print the RSS growth (peak) while one big stream passes, and the bytes read."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    client = httpx2.Client(timeout=600)
    rec = None
    if recorded:
        rec = Recorder(f"sqlite:///{tmp / 'ledger.db'}", settings=Settings(secret_path=str(tmp / "secret")), journal_dir=tmp / "journal")
        client = httpx2.Client(timeout=600, transport=rec.transport(httpx2.HTTPTransport()))
    headers = {**HEADERS, "X-Sim-Completion-Tokens": str(tokens)}
    client.post(base_url + "/chat/completions", json=BODY, headers=HEADERS).read()  # warm: imports, pools
    if rec is not None:
        rec.flush(30)  # the writer's start (schema check, connection) is not the stream's doing
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page

    before = peak = rss()
    total = chunks = 0
    with client.stream("POST", base_url + "/chat/completions", json=STREAM_BODY, headers=headers) as response:
        for chunk in response.iter_raw():
            total += len(chunk)
            chunks += 1
            if chunks % 16 == 0:  # every MB or so
                peak = max(peak, rss())
    peak = max(peak, rss())
    client.close()
    kept = None
    if rec is not None:
        rec.flush(30)
        kept = rec.sink.stats.committed
        rec.close()
    print(json.dumps({"bytes": total, "rss_growth_kb": (peak - before) // 1024, "committed": kept}))


def memory(base_url: str, megabytes: int) -> dict:
    tokens = int(megabytes * 1024 * 1024 / BYTES_PER_TOKEN)
    results = {}
    for side in ("without", "with"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", base_url, str(tokens), side],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
    return results


# ---------------------------------------------------------------- in-process: the wrapper alone


def in_process(calls: int) -> dict:
    """Per call µs of a chat call through a transport that answers from memory, with and without."""
    Memory = memory_transport(CHAT_ANSWER)
    tmp = Path(tempfile.mkdtemp(prefix="bench-inproc-"))
    rec = Recorder(f"sqlite:///{tmp / 'ledger.db'}", settings=Settings(secret_path=str(tmp / "secret")), journal_dir=tmp / "journal")
    null_rec = Recorder(sink=NullSink(), settings=Settings(secret_path=str(tmp / "secret")))
    plain, recorded, recorded_null = Memory(), rec.transport(Memory()), null_rec.transport(Memory())
    request = httpx2.Request("POST", "http://sim/v1/chat/completions", json=BODY,
                             headers={**HEADERS, "x-stainless-retry-count": "0", "user-agent": "OpenAI/Python 3.54.0"})

    def through(transport) -> float:
        return per_call_us(transport, request, calls)

    through(recorded), through(recorded_null), through(plain)
    samples = [(through(recorded), through(recorded_null), through(plain)) for _ in range(5)]
    rec.flush(60)
    rec.close()
    # The recorder's own part (a sink that discards) and the journal's (the real sink's emit), by difference.
    return {
        "with_us": statistics.median(s[0] for s in samples),
        "null_us": statistics.median(s[1] for s in samples),
        "without_us": statistics.median(s[2] for s in samples),
    }


def host_speed() -> str:
    """How fast this host runs plain Python now: hosts of one kind differ by 2x from day to day."""
    best = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000
    return f"sum(range(1000)) in {best * 1e6:.1f} us"


def writer_cpu(sink) -> float:
    """Seconds of CPU its writer processes have used so far (those alive now)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in getattr(sink._writer, "pids", ()):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("runs", "blocks"), default="runs")
    parser.add_argument("--pairs", type=int, default=300, help="pairs of runs per measure (--method runs)")
    parser.add_argument("--run", type=int, default=10, help="calls counted per run (--method runs)")
    parser.add_argument("--blocks", type=int, default=30, help="pairs of blocks per measure (--method blocks)")
    parser.add_argument("--calls", type=int, default=40, help="calls per block (--method blocks)")
    parser.add_argument("--stream-mb", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="profile the recorded raw calls")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        url, tokens, side = args.memory_child
        memory_child(url, int(tokens), side == "with")
        return 0

    if args.method == "runs":
        def measure(with_, without, returns_time=False):
            a, b = (with_, without) if returns_time else (timed(with_), timed(without))
            return alternating_runs(a, b, args.pairs, args.run)
    else:
        def measure(with_, without, returns_time=False):
            if returns_time:
                return paired(block_of(with_, args.calls // 2), block_of(without, args.calls // 2), args.blocks)
            return paired(block(with_, args.calls), block(without, args.calls), args.blocks)

    process, base_url = start_simulator()
    url = base_url + "/chat/completions"
    tmp = Path(tempfile.mkdtemp(prefix="bench-recorder-"))
    rec = Recorder(f"sqlite:///{tmp / 'ledger.db'}", settings=Settings(secret_path=str(tmp / "secret")), journal_dir=tmp / "journal")
    try:
        null_rec = Recorder(sink=NullSink(), settings=Settings(secret_path=str(tmp / "secret")))
        thread_sink = LedgerSink(f"sqlite:///{tmp / 'ledger-thread.db'}", tmp / "journal-thread", writer_processes=0)
        thread_rec = Recorder(sink=thread_sink, settings=Settings(secret_path=str(tmp / "secret")))
        plain, recorded, recorded_null = openai.DefaultHttpxClient(), rec.client(), null_rec.client()
        recorded_thread = thread_rec.client()
        sdk_plain = openai.OpenAI(base_url=base_url, api_key=KEY, http_client=openai.DefaultHttpxClient(), max_retries=0)
        sdk_recorded = openai.OpenAI(base_url=base_url, api_key=KEY, http_client=rec.client(), max_retries=0)
        for _ in range(200):  # warm up both sides: connections, imports, the writer
            raw_call(plain, url)(), raw_call(recorded, url)(), sdk_call(sdk_plain)(), sdk_call(sdk_recorded)()
            raw_call(recorded_thread, url)()
        rec.flush(60)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            block(raw_call(recorded, url), 2000)()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        cpu_before, emitted_before, clock_before = writer_cpu(rec.sink), rec.sink.stats.emitted, time.perf_counter()
        raw = measure(raw_call(recorded, url), raw_call(plain, url))
        sdk = measure(sdk_call(sdk_recorded), sdk_call(sdk_plain))
        ttfb = measure(ttfb_call(recorded, url), ttfb_call(plain, url), returns_time=True)
        flushed = rec.flush(60)
        cpu_used, records = writer_cpu(rec.sink) - cpu_before, rec.sink.stats.emitted - emitted_before
        wall = time.perf_counter() - clock_before
        raw_null = measure(raw_call(recorded_null, url), raw_call(plain, url))
        ttfb_null = measure(ttfb_call(recorded_null, url), ttfb_call(plain, url), returns_time=True)
        raw_thread = measure(raw_call(recorded_thread, url), raw_call(plain, url))
        for client in (plain, recorded, recorded_null, recorded_thread, sdk_plain, sdk_recorded):
            client.close()
        thread_sink.close()
        flushed = rec.flush(60) and flushed
        stats = rec.sink.stats
        inproc = in_process(20000)
        mem = memory(base_url, args.stream_mb)
    finally:
        rec.close()
        process.stdin.close()
        process.wait(10)

    how = (f"runs of 1 + {args.run} calls alternating, {args.pairs} pairs a measure (ratio of medians; range: each fifth's)"
           if args.method == "runs" else f"{args.blocks} blocks x {args.calls} calls, ABBA (median of paired block ratios; range: all blocks)")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {host_speed()}; {how}")
    print(f"{'measure':52} {'with':>10} {'without':>10} {'ratio':>7} {'range':>13} {'target':>7}")
    rows = [
        ("per call, raw httpx2 non-streaming (ms)", raw, 1.05),
        ("per call, openai SDK non-streaming (ms)", sdk, 1.02),
        ("streaming time to first byte, httpx2 (ms)", ttfb, 1.02),
        ("  the same, sink that discards: per call raw (ms)", raw_null, 1.05),
        ("  the same, sink that discards: first byte (ms)", ttfb_null, 1.02),
        ("  the same, writer in a thread: per call raw (ms)", raw_thread, 1.05),
    ]
    for name, (with_, without, ratio, low, high), target in rows:
        verdict = "met" if ratio <= target else "MISSED"
        print(f"{name:52} {with_ * 1e3:10.3f} {without * 1e3:10.3f} {ratio:7.3f} {low:6.3f}-{high:6.3f} {'<= ' + str(target):>7} {verdict}")
    added, own = inproc["with_us"] - inproc["without_us"], inproc["null_us"] - inproc["without_us"]
    print(f"{'recorder in-process, per call (us)':52} {inproc['with_us']:10.1f} {inproc['without_us']:10.1f}"
          f"  added {added:.1f} us: the recorder {own:.1f}, the journal's emit {added - own:.1f}")
    if records:
        print(f"{'writer processes, CPU per record (us)':52} {cpu_used / records * 1e6:10.1f}"
              f"   ({records} records; {cpu_used / wall:.0%} of a core while the three measures ran)")
    for side in ("with", "without"):
        m = mem[side]
        print(f"{'100 MB stream, peak RSS growth (MB), ' + side + ' recorder':52} {m['rss_growth_kb'] / 1024:10.1f}"
              f"   ({m['bytes'] / 1e6:.1f} MB passed{', ledger rows: ' + str(m['committed']) if m['committed'] is not None else ''})")
    print(f"ledger: {stats.emitted} captures emitted, {stats.committed} committed, all flushed: {flushed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
