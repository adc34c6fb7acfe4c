"""One checkout's writer on fixed batches: N `spread` captures (bench_writer_count.py's) prepared and written
with `insert_rows` in batches of 1,000, a transaction each, SQLite file, no thread: the same batches in every run,
so that under callgrind two values of N give the instructions a record of the writer's own work (pricing, the
row, the insert, the rollups, the commit), whatever the host's load or the threads' timing:

    for n in 1000 3000; do PYTHONPATH=$T valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n $T/.venv/bin/python \
        benchmarks/bench_writer_batches.py $T $n 2>&1 | grep Collected; done      # (I(3000) - I(1000)) / 2000
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

tree = Path(sys.argv[1])
sys.path.insert(0, str(tree / "tests"))
from factories import make_raw_capture  # noqa: E402

try:
    from ledger.sink.writer import LedgerWriter
except ImportError:
    from ledger.record.writer import LedgerWriter  # before the sink had its package (issue 25)
from ledger.store.calls import insert_rows  # noqa: E402

N = int(sys.argv[2])
rng = random.Random(26)
captures = []
for i in range(N + 1000):  # the first 1,000: a warm-up batch in every run
    c = make_raw_capture(i)
    key = rng.randrange(50)
    context = (f"project-{rng.randrange(100)}", f"user-{rng.randrange(2000)}", {"team": f"team-{rng.randrange(10)}"})
    captures.append(c._replace(key_fingerprint=f"{key:064x}", key_last4=f"{key:04d}", context=context))
writer = LedgerWriter(f"sqlite:///{Path(tempfile.mkdtemp()) / 'l.db'}")
writer.connect()
for at in range(0, len(captures), 1000):
    records, rows, _ = writer.prepare([(c, None, None) for c in captures[at:at + 1000]])
    with writer.ledger.session() as session:
        assert insert_rows(session, rows, records).inserted == len(rows)
print(f"{tree.name}: {N} records written in batches of 1,000")
