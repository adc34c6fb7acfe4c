"""The writer's check of the ids retention removed (`retention.retired`, one query a batch) beside `insert_rows` of
the same batch of 1,000, in one process; a horizon from the 11th batch on (the rows newer: no id lookup):

    .venv/bin/python benchmarks/bench_retired_check.py [a PostgreSQL URL of an empty database; default a SQLite file]
"""
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "tests")
from datetime import datetime, timezone
from factories import make_raw_capture
from ledger.sink.writer import LedgerWriter
from ledger.store.calls import CALL_COLUMNS, insert_rows
from ledger.store.models import RetentionRun
from ledger.store.retention import retired
tmp = Path(tempfile.mkdtemp())
url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tmp / 'l.db'}"
w = LedgerWriter(url); w.connect()
caps = [make_raw_capture(i) for i in range(20000)]
batches = [w.prepare([(c, None, None) for c in caps[at:at + 1000]])[1:3] for at in range(0, len(caps), 1000)]
started = CALL_COLUMNS.index("started_at")
ins = chk = 0.0
for k, (rows, _) in enumerate(batches):
    if k == 10:  # a horizon from here on: the check reads it, and the rows (newer) are not looked up
        with w.ledger.session() as s:
            s.add(RetentionRun(ran_at=datetime(2026, 3, 1, tzinfo=timezone.utc), deleted_before=datetime(2026, 2, 1, tzinfo=timezone.utc), calls_days=30, calls_deleted=1))
    records = [None] * len(rows)
    with w.ledger.session() as s:
        c0 = time.process_time()
        insert_rows(s, rows, [__import__("ledger.accounting.records", fromlist=["CallRecord"]).CallRecord(r[0], r[started], r[12]) for r in rows])
        c1 = time.process_time()
        for _ in range(20):
            retired(s, rows, started)
        c2 = time.process_time()
    ins += c1 - c0; chk += (c2 - c1) / 20
print(f"insert_rows {ins / 20000 * 1e6:.1f} us a record; retired {chk / 20000 * 1e6:.3f} us a record ({chk / ins * 100:.2f} % of insert_rows, which includes it)")
