"""One checkout's recorder-to-ledger path a record: N captures emitted into a LedgerSink whose writer is a thread
(writer_processes=0), SQLite file, flushed. Prints CPU a record; under callgrind, two values of N give the
instructions a record, which do not move with the host:

    for n in 500 2500; do PYTHONPATH=$T valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n $T/.venv/bin/python \
        benchmarks/bench_writer_count.py $T $n 2>&1 | grep Collected; done      # (I(2500) - I(500)) / 2000

A third argument `spread` attributes the captures as a large team's (bench_writer.py --spread).
"""

from __future__ import annotations

import sys
import tempfile
import time
import timeit
from pathlib import Path

tree = Path(sys.argv[1])
sys.path.insert(0, str(tree / "tests"))
try:
    from factories import make_raw_capture
except ImportError:
    from test_writer import make_raw_capture
try:
    from ledger.sink.sink import LedgerSink
except ImportError:
    try:
        from ledger.record.sink import LedgerSink  # before the sink had its package (issue 25)
    except ImportError:
        from ledger.writer import LedgerSink
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
caps = [make_raw_capture(i) for i in range(N)]
if sys.argv[3:] == ["spread"]:  # as bench_writer.py --spread: 100 projects, 2,000 users, 50 keys, 10 tags
    import random

    rng = random.Random(26)
    spread_out = []
    for c in caps:
        key = rng.randrange(50)
        context = (f"project-{rng.randrange(100)}", f"user-{rng.randrange(2000)}", {"team": f"team-{rng.randrange(10)}"})
        spread_out.append(c._replace(key_fingerprint=f"{key:064x}", key_last4=f"{key:04d}", context=context))
    caps = spread_out
tmp = Path(tempfile.mkdtemp())
unit = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000
sink = LedgerSink(f"sqlite:///{tmp/'l.db'}", tmp / "journal", writer_processes=0)
sink.emit(make_raw_capture(N + 1)); sink.flush(60)
c0 = time.process_time(); w0 = time.perf_counter()
for c in caps:
    sink.emit(c)
assert sink.flush(600)
cpu = time.process_time() - c0; wall = time.perf_counter() - w0
sink.close()
print(f"{tree.name}: {cpu / N * 1e6:.1f} us CPU a record ({cpu / N / unit:.2f} sum(range(1000))s), wall {N / wall:,.0f}/s, unit {unit*1e6:.1f} us")
