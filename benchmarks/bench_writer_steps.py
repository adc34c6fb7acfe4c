"""bench_writer_batches.py's fixed batches, each step of the writer's transaction marked for callgrind: the
instructions of prepare, the calls' insert, the retired-ids check, the rollups' grouping (deltas), coarsen, each
rollup table's upsert (its Python and its SQLite executemany apart), the keys and the commit, a record.

A marker is a call of `binascii.crc_hqx`, which nothing else on the writer's way calls; callgrind dumps its counts
before each (--dump-before), so each dump holds one step's instructions. Run with valgrind, then sum the dumps:

    PYTHONPATH=$T valgrind --tool=callgrind --dump-before=binascii_crc_hqx --callgrind-out-file=/tmp/steps/cg \\
        $T/.venv/bin/python benchmarks/bench_writer_steps.py $T 3000 /tmp/steps/labels
    .venv/bin/python benchmarks/bench_writer_steps.py --sum /tmp/steps/cg /tmp/steps/labels 3000

Works on trees before the rollups (5d24cd1: their steps are absent) and after.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def summed(out: str, labels_file: str, records: int) -> None:
    """Instructions a record of each step, from the dumps (out.1, out.2, ...) and the labels written beside."""
    labels = Path(labels_file).read_text().split("\n")[:-1]
    steps: dict[str, int] = defaultdict(int)
    executemany: dict[str, int] = defaultdict(int)
    for n, label in enumerate(labels, start=2):  # dump n holds what ran after the (n-1)th marker
        dump = Path(f"{out}.{n}")
        if not dump.exists() or label == "-":
            continue
        total = int(re.search(r"^summary: (\d+)", dump.read_text(), re.M).group(1))
        steps[label] += total
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
                                   capture_output=True, text=True).stdout
        found = re.search(r"^\s*([\d,]+) .*pysqlite_cursor_executemany\b", annotated, re.M)
        if found:
            executemany[label] += int(found.group(1).replace(",", ""))
    print("| step | instructions a record | of which SQLite's executemany |")
    print("|---|---:|---:|")
    for label, total in steps.items():
        print(f"| {label} | {total / records:,.0f} | {executemany.get(label, 0) / records:,.0f} |")
    print(f"| all | {sum(steps.values()) / records:,.0f} | {sum(executemany.values()) / records:,.0f} |")


if sys.argv[1] == "--sum":
    summed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    raise SystemExit(0)

import binascii  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402

tree = Path(sys.argv[1])
sys.path.insert(0, str(tree / "tests"))
from factories import make_raw_capture  # noqa: E402

try:
    from ledger.sink.writer import LedgerWriter
except ImportError:
    from ledger.record.writer import LedgerWriter
from ledger.store import calls  # noqa: E402

N = int(sys.argv[2])
labels = open(sys.argv[3], "w")
measuring = False


def mark(next_step: str) -> None:
    """Ends the step running (callgrind dumps it) and names the next."""
    if measuring:
        binascii.crc_hqx(b"", 0)
        labels.write(f"{next_step}\n")


def wrapped(module, name: str, label):
    inner = getattr(module, name, None)
    if inner is None:
        return

    def step(*args, **kwargs):
        mark(label(*args) if callable(label) else label)
        try:
            return inner(*args, **kwargs)
        finally:
            mark("insert_rows, the rest")

    setattr(module, name, step)


wrapped(calls, "_insert_new_calls", "insert: calls rows")
wrapped(calls, "retired", "insert: retired-ids check")
wrapped(calls, "remember_keys", "insert: keys")
try:
    from ledger.store import rollups
except ImportError:
    rollups = None
if rollups is not None:
    wrapped(rollups, "deltas", "rollups: deltas (group the batch)")
    wrapped(rollups, "coarsen", "rollups: coarsen")
    wrapped(rollups, "upsert_table", lambda session, table, *_: f"rollups: upsert {table.name}")

rng = random.Random(26)
captures = []
for i in range(N + 1000):  # the first 1,000: a warm-up batch, not counted
    c = make_raw_capture(i)
    key = rng.randrange(50)
    context = (f"project-{rng.randrange(100)}", f"user-{rng.randrange(2000)}", {"team": f"team-{rng.randrange(10)}"})
    captures.append(c._replace(key_fingerprint=f"{key:064x}", key_last4=f"{key:04d}", context=context))
writer = LedgerWriter(f"sqlite:///{Path(tempfile.mkdtemp()) / 'l.db'}")
writer.connect()
binascii.crc_hqx(b"", 0)  # the dump of the start-up and the captures
labels.write("-\n")
for at in range(0, len(captures), 1000):
    measuring = at > 0
    mark("prepare")
    records, rows, _ = writer.prepare([(c, None, None) for c in captures[at:at + 1000]])
    mark("session")
    with writer.ledger.session() as session:
        mark("insert_rows, the rest")
        assert calls.insert_rows(session, rows, records).inserted == len(rows)
        mark("commit")
    mark("-")
labels.close()
print(f"{tree.name}: {N} records written in batches of 1,000, steps marked")
