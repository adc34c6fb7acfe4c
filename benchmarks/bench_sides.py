"""Where a recorded call's added time goes: several sides interleaved in one run, each against the plain client.

`bench_recorder.py` gives the targets' ratios; this script takes the recorder
apart, between real loopback calls (the simulator in a subprocess, as there):

    pass-through   a transport wrapper that forwards and wraps the stream, nothing else
    recorder       the recorder with a sink that discards (its own cost)
    journal-pickle the recorder, each capture encoded as the journal did before (base64 of a pickle)
                   and copied into a mapped file: no writer
    journal        the same with today's encoding (a framed marshal): no writer
    sink           the recorder with a real LedgerSink (journal, writer processes, SQLite)
    sink-thread    the same with the writer in a thread (writer_processes=0)

Every round runs every side once, in a rotating order, each paired with a
block of plain calls of its own (alternately before and after it), so that a
host's drift touches all sides alike. Printed: the median of the paired
per-block ratios, their interquartile range, the median µs added, and the
median µs of CPU added on the calling thread (`time.thread_time`: the
recorder's own work there, which the server's and the writers' time does not
blur; two copies of one code read within 1 µs of each other this way).

    .venv/bin/python benchmarks/bench_sides.py [--rounds 40] [--calls 40] [--sdk] [--sides recorder,sink,...]
"""

from __future__ import annotations

import argparse
import binascii
import mmap
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx2  # noqa: E402
import openai  # noqa: E402

from bench_recorder import KEY, NullSink, host_speed, raw_call, sdk_call, start_simulator  # noqa: E402
from ledger.sink import journal as journal_module  # noqa: E402
from ledger.sink.wire import encode  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.record.recorder import Recorder  # noqa: E402
from ledger.sink.sink import LedgerSink  # noqa: E402

SIDES = ("pass-through", "recorder", "journal-pickle", "journal", "sink", "sink-thread")


class _PassStream(httpx2.SyncByteStream):
    def __init__(self, inner) -> None:
        self._inner = inner

    def __iter__(self):
        yield from self._inner

    def close(self) -> None:
        self._inner.close()


class _PassTransport(httpx2.BaseTransport):
    def __init__(self, inner) -> None:
        self._inner = inner

    def handle_request(self, request):
        response = self._inner.handle_request(request)
        response.stream = _PassStream(response.stream)
        return response


def _pass_through_client() -> httpx2.Client:
    class Client(openai.DefaultHttpxClient):
        def _init_transport(self, *args, **kwargs):
            return _PassTransport(super()._init_transport(*args, **kwargs))

    return Client()


def _pickled(capture) -> bytes:
    # The recorder's capture as it is (a raw one is a plain tuple's worth): pickled, then base64, as lines were.
    return b"P" + binascii.b2a_base64(pickle.dumps(tuple(capture), protocol=5))


class MappedCopySink:
    """Encode each capture and copy it into a mapped, pre-faulted file under a lock: the journal's
    part of an emit, without the writer."""

    def __init__(self, path: Path, encoder, size: int = 256 * 1024 * 1024) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.posix_fallocate(fd, 0, size)
        self._mm = mmap.mmap(fd, size)
        address = journal_module._address(self._mm)
        if address is not None:  # map every page now, as the writer thread does ahead of the appends
            journal_module._madvise(address, size, journal_module.MADV_POPULATE_WRITE)
        self._encoder, self._position, self._lock = encoder, 0, threading.Lock()

    def emit(self, capture) -> None:
        record = self._encoder(capture)
        with self._lock:
            end = self._position + len(record)
            if end > len(self._mm):
                end, self._position = len(record), 0
            self._mm[self._position : end] = record
            self._position = end

    def flush(self, timeout=None) -> bool:
        return True

    def close(self, timeout=5.0) -> None:
        self._mm.close()


def block(call, calls: int):
    """A block of `calls` calls: (median wall seconds, median seconds of this thread's CPU) a call."""
    def run() -> tuple[float, float]:
        walls, cpus = [], []
        for _ in range(calls):
            started, cpu = time.perf_counter(), time.thread_time()
            call()
            walls.append(time.perf_counter() - started)
            cpus.append(time.thread_time() - cpu)
        return statistics.median(walls), statistics.median(cpus)

    return run


def make_client(side: str, tmp: Path, settings: Settings) -> tuple[httpx2.Client, object]:
    """The side's client and what to close after the run."""
    if side == "pass-through":
        return _pass_through_client(), None
    sinks = {
        "recorder": lambda: NullSink(),
        "journal-pickle": lambda: MappedCopySink(tmp / "copy-pickle", _pickled),
        "journal": lambda: MappedCopySink(tmp / "copy-marshal", encode),
        "sink": lambda: LedgerSink(f"sqlite:///{tmp / 'sink.db'}", tmp / "journal"),
        "sink-thread": lambda: LedgerSink(f"sqlite:///{tmp / 'thread.db'}", tmp / "journal-thread", writer_processes=0),
    }
    recorder = Recorder(sink=sinks[side](), settings=settings)
    return recorder.client(), recorder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=40, help="calls per block")
    parser.add_argument("--sdk", action="store_true", help="calls through the openai SDK instead of raw httpx2")
    parser.add_argument("--sides", default=",".join(SIDES))
    args = parser.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        parser.error(f"unknown side(s): {', '.join(unknown)} (known: {', '.join(SIDES)})")

    process, base_url = start_simulator()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sides-"))
    settings = Settings(secret_path=str(tmp / "secret"))
    closers = []
    try:
        def call_of(http_client: httpx2.Client):
            if args.sdk:
                return sdk_call(openai.OpenAI(base_url=base_url, api_key=KEY, http_client=http_client, max_retries=0))
            return raw_call(http_client, base_url + "/chat/completions")

        plain = call_of(openai.DefaultHttpxClient())
        calls = {}
        for side in sides:
            client, closer = make_client(side, tmp, settings)
            calls[side] = call_of(client)
            closers.append(closer)
        for _ in range(300):  # warm up every side: connections, imports, the writers
            plain()
            for call in calls.values():
                call()
        ratios: dict[str, list[float]] = {side: [] for side in sides}
        added: dict[str, list[float]] = {side: [] for side in sides}
        cpu_added: dict[str, list[float]] = {side: [] for side in sides}
        for index in range(args.rounds):
            turn = index % len(sides)
            for side in sides[turn:] + sides[:turn]:
                pair = [("plain", plain), ("side", calls[side])]
                if index % 2:
                    pair.reverse()
                medians = {name: block(call, args.calls)() for name, call in pair}
                (wall, cpu), (plain_wall, plain_cpu) = medians["side"], medians["plain"]
                ratios[side].append(wall / plain_wall)
                added[side].append(wall - plain_wall)
                cpu_added[side].append(cpu - plain_cpu)
            if sys.stderr.isatty():
                print(f"\rround {index + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            print(file=sys.stderr)
    finally:
        for closer in closers:
            if closer is not None:
                closer.close()
        process.stdin.close()
        process.wait(10)

    path = "openai SDK" if args.sdk else "raw httpx2"
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {host_speed()};"
          f" {path} non-streaming, {args.rounds} rounds x {args.calls} calls a block")
    print(f"{'side':16} {'ratio':>7} {'IQR':>13} {'us added':>9} {'caller CPU us added':>20}")
    for side in sides:
        q1, _, q3 = statistics.quantiles(ratios[side], n=4)
        print(f"{side:16} {statistics.median(ratios[side]):7.3f} {q1:6.3f}-{q3:6.3f} {statistics.median(added[side]) * 1e6:9.1f}"
              f" {statistics.median(cpu_added[side]) * 1e6:20.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
