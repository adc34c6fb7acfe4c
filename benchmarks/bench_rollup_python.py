"""A/B in one process: another tree's rollup_tables.py (coarsen, dims_key, the upsert's sort and SQLite rows) beside
this tree's, on the 15-minute groups of five `spread` batches of 1,000 rows; min of repeats, alternating:

    git show main:ledger/store/rollup_tables.py > /tmp/old_rollup_tables.py
    .venv/bin/python benchmarks/bench_rollup_python.py /tmp/old_rollup_tables.py
"""
import importlib.util, random, sys, timeit
sys.path.insert(0, "tests")
from factories import make_raw_capture
from ledger.sink.writer import LedgerWriter
from ledger.store import rollup_tables as new
from ledger.store.calls import CALL_COLUMNS
from ledger.store.rollups import deltas
spec = importlib.util.spec_from_file_location("ledger.store.old_rollup_tables", sys.argv[1])
old = importlib.util.module_from_spec(spec); sys.modules[spec.name] = old; spec.loader.exec_module(old)
rng = random.Random(26)
caps = []
for i in range(5000):
    c = make_raw_capture(i); key = rng.randrange(50)
    caps.append(c._replace(key_fingerprint=f"{key:064x}", key_last4=f"{key:04d}",
                           context=(f"project-{rng.randrange(100)}", f"user-{rng.randrange(2000)}", {"team": f"team-{rng.randrange(10)}"})))
w = LedgerWriter("sqlite:///:memory:")
batches = []
for at in range(0, len(caps), 1000):
    _, rows, _ = w.prepare([(c, None, None) for c in caps[at:at + 1000]])
    batches.append(deltas(rows, CALL_COLUMNS, rows[0][CALL_COLUMNS.index("recorded_at")]))

def work(m):
    m.dims_key.cache_clear()
    if hasattr(m, "_PARTS"):
        m._PARTS.clear(); m._PARTS.update(m._FLAGS)
    if hasattr(m._text, "cache_clear"):
        m._text.cache_clear()
    for groups in batches:
        for table, found in m.coarsen(groups).items():
            ordered = sorted(((b, r, m.dims_key(d), d, s) for (b, r, d), s in found.items()), key=lambda g: g[:3])
            [(m._text(b), m._text(r), k, *d, *s) for b, r, k, d, s in ordered]

# the same tables' sums both ways
for groups in batches:
    a, b = old.coarsen(groups), new.coarsen(groups)
    assert {t.name: v for t, v in a.items()} == {t.name: v for t, v in b.items()}
    for (_, _, d) in b[new.DAILY_USERS]:
        assert old.dims_key(d) == new.dims_key(d)
times = {"main": [], "branch": []}
for _ in range(7):
    for name, m in (("main", old), ("branch", new)):
        times[name].append(min(timeit.repeat(lambda: work(m), number=1, repeat=3)))
unit = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000
n = len(caps)
for name, found in times.items():
    print(f"{name}: {min(found) / n * 1e6:.2f} us a record (coarsen, keys, sort, rows), {min(found) / n / unit:.3f} units")
print(f"unit {unit * 1e6:.1f} us; ratio {min(times['branch']) / min(times['main']):.3f}")
