"""Retention at scale: bench_scale's ledger (N calls over 90 days from 2026-09-01), September and October closed,
then `retention.delete_old_calls` with calls_days = 30 on 2027-01-01: how long the delete takes, and whether
October's report (figures from the rollups) is the same after it.

    .venv/bin/python benchmarks/bench_retention.py [--calls 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqlalchemy import func, select  # noqa: E402

from bench_scale import TAGS, USERS, load  # noqa: E402
from bench_writer import postgres_database  # noqa: E402
from ledger.accounting.periods import parse_period  # noqa: E402
from ledger.reports.spend import build_report  # noqa: E402
from ledger.store import retention  # noqa: E402
from ledger.store.closes import insert_close  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.models import Call  # noqa: E402

CLOSES = (("2026-09", datetime(2026, 10, 3, 10, 7, tzinfo=timezone.utc)),
          ("2026-10", datetime(2026, 11, 3, 10, 7, tzinfo=timezone.utc)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (a database is made and dropped)")
    arguments = parser.parse_args()
    url, drop = (postgres_database(arguments.postgres) if arguments.postgres
                 else (f"sqlite:///{Path(tempfile.mkdtemp()) / 'retention.db'}", lambda: None))
    try:
        with Ledger(url) as ledger:
            load(ledger, arguments.calls, USERS, TAGS)
            with ledger.session() as session:  # closes as rows (no reconciliation to run here)
                for label, cutoff in CLOSES:
                    insert_close(session, parse_period(label, "UTC"), cutoff, cutoff, calls=0, credits_charged=Decimal(0),
                                 credits_expected=Decimal(0), totals_json="{}", calls_digest="-",
                                 reconciliation="no_snapshots", reconciliation_json=None, reason=None, host=None)
            october = parse_period("2026-10", "UTC")
            with ledger.session() as session:
                before = build_report(session, october, digest=False).total
            started = time.perf_counter()
            result = retention.delete_old_calls(ledger, 30, datetime(2027, 1, 1, tzinfo=timezone.utc))
            took = time.perf_counter() - started
            with ledger.session() as session:
                left = session.scalar(select(func.count()).select_from(Call))
                after = build_report(session, october, digest=False).total
            print(f"== {ledger.dialect}: deleted {result.calls_deleted:,} of {arguments.calls:,} calls in {took:.2f} s "
                  f"({result.calls_deleted / took:,.0f} calls/s, batches of {retention.BATCH:,}), {left:,} left; "
                  f"October's totals the same after: {before == after}")
    finally:
        drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
