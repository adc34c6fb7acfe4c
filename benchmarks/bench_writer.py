"""Writer throughput: records per second through emit -> journal -> batch writer -> ledger.

Captures are made in-process beforehand (no HTTP), as the recorder emits
them (RawCapture: a response's bytes as they came, settled by the writer); the clock runs from the
first emit to the flush that sees the last one committed, after a warm-up
(the sink's writer processes are running when the clock starts).
The batched sink is a Recorder's (batches of 1000, two writer processes).
Two naive writers, one commit per record, run beside it: the same sink with
batch_size=1 and its writer a thread of the emitting process (journal and
all), and the plain way to write a ledger: build and price each record with
the same code, add it to an ORM session and commit, in the emitting thread. Both run side by side in one run, on a SQLite file and on PostgreSQL (a
database made for the run and dropped after).

    .venv/bin/python benchmarks/bench_writer.py [--records 30000] [--naive-records 2000]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--no-postgres] [--profile]
        [--writer-processes 2] [--spread]

--spread attributes the captures as a large team's calls are (100 projects,
2,000 users, 50 keys, 10 tag values, at random): nearly every record of a
batch is then a rollup row of its own, the rollups' dearest case.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from datetime import datetime, timezone  # noqa: E402

from ledger.sink.capture import build_record  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.models import Call  # noqa: E402
from ledger.accounting.pricing import default_rate_book, price  # noqa: E402
from ledger.store.calls import CALL_COLUMNS, call_row  # noqa: E402
from ledger.accounting.records import record_digest  # noqa: E402
from ledger.sink.sink import LedgerSink  # noqa: E402
from factories import make_raw_capture  # noqa: E402  (the tests' realistic captures, as the recorder emits them)


def run(url: str, captures, journal: Path, batch_size: int, processes: int, profile: bool = False) -> float:
    """Records per second for `captures` through a fresh sink."""
    Ledger(url).close()  # schema made before the clock starts
    sink = LedgerSink(url, journal, batch_size=batch_size, replay_on_start=False, handle_sigterm=False,
                      writer_processes=processes)
    # A backlog of full batches first: every writer process is started before the clock.
    warm_up = []
    for _ in range(5):
        more = [make_raw_capture(len(warm_up) + i, call_id=f"warm-up-{len(warm_up) + i}") for i in range(batch_size * 6)]
        for capture in more:
            sink.emit(capture)
        warm_up += more
        if not sink.flush(60):
            raise SystemExit("the ledger did not come up")
        if len(getattr(sink._writer, "pids", ())) >= processes:
            break
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    for capture in captures:
        sink.emit(capture)
    emitted = time.perf_counter()
    if not sink.flush(600):
        raise SystemExit("flush timed out")
    elapsed = time.perf_counter() - started
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    stats = sink.stats
    sink.close()
    assert stats.committed == len(warm_up) + len(captures) and stats.pending == 0, stats
    with Ledger(url) as ledger, ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == len(warm_up) + len(captures)
    print(f"    {len(captures)} records, batch {batch_size}: {elapsed:.2f} s "
          f"(emit loop {1e6 * (emitted - started) / len(captures):.1f} us/record)", flush=True)
    return len(captures) / elapsed


def run_plain(url: str, captures) -> float:
    """Records per second written the plain way: build and price each record (the same code),
    add it to an ORM session and commit, one record at a time, in the emitting thread; no journal."""
    with Ledger(url) as ledger:
        book = default_rate_book()
        started = time.perf_counter()
        for capture in captures:
            record = build_record(capture)
            values = call_row(record, price(record, book), record_digest(record), datetime.now(timezone.utc))
            with ledger.session() as session:  # commits on leaving
                session.add(Call(**dict(zip(CALL_COLUMNS, values))))
        elapsed = time.perf_counter() - started
        with ledger.session() as session:
            assert session.scalar(select(func.count()).select_from(Call)) == len(captures)
    print(f"    {len(captures)} records, the plain way: {elapsed:.2f} s", flush=True)
    return len(captures) / elapsed


def postgres_database(server: str):
    admin_url = make_url(server).set(drivername="postgresql+psycopg")
    name = f"bench_writer_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.set(database=name).render_as_string(hide_password=False), drop


def host_speed() -> str:
    """How fast this host runs plain Python now: hosts of one kind differ by 2x from day to day."""
    best = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000
    return f"sum(range(1000)) in {best * 1e6:.1f} us"


def spread(captures: list) -> list:
    """The captures with a large team's attribution (--spread), the same in every run (seeded)."""
    import random

    rng = random.Random(26)
    spread_out = []
    for capture in captures:
        key = rng.randrange(50)
        context = (f"project-{rng.randrange(100)}", f"user-{rng.randrange(2000)}", {"team": f"team-{rng.randrange(10)}"})
        spread_out.append(capture._replace(key_fingerprint=f"{key:064x}", key_last4=f"{key:04d}", context=context))
    return spread_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--naive-records", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the batched run")
    parser.add_argument("--writer-processes", type=int, default=2,
                        help="the batched sink's writer processes (a Recorder's default: 2; 0: a thread)")
    parser.add_argument("--spread", action="store_true", help="100 projects, 2,000 users, 50 keys, 10 tags")
    args = parser.parse_args()

    captures = [make_raw_capture(i) for i in range(args.records)]
    naive_captures = [make_raw_capture(i) for i in range(args.naive_records)]
    if args.spread:
        captures, naive_captures = spread(captures), spread(naive_captures)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = [("SQLite (file, WAL)", lambda n: (f"sqlite:///{tmp}/{n}.db", lambda: None))]
        if not args.no_postgres:
            backends.append(("PostgreSQL (127.0.0.1)", lambda n: postgres_database(args.postgres)))
        for label, make in backends:
            print(label, flush=True)
            url, drop = make("batched")
            try:
                batched = run(url, captures, Path(tmp) / "j-batched", args.batch_size, args.writer_processes, args.profile)
            finally:
                drop()
            url, drop = make("naive")
            try:
                naive = run(url, naive_captures, Path(tmp) / "j-naive", 1, 0)  # in-process, a commit per record
            finally:
                drop()
            url, drop = make("plain")
            try:
                plain = run_plain(url, naive_captures)
            finally:
                drop()
            shutil.rmtree(Path(tmp) / "j-batched", ignore_errors=True)
            rows.append((label, batched, naive, plain))

    print()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {host_speed()}")
    print("| ledger | batched writer (records/s) | the sink, batch 1 (records/s) | ratio | "
          "the plain way: ORM add + commit per record (records/s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, batched, naive, plain in rows:
        print(f"| {label} | {batched:,.0f} | {naive:,.0f} | {batched / naive:.1f}x | {plain:,.0f} | {batched / plain:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
