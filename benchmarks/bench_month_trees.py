"""A tree's month 2026-10 (Asia/Kolkata) report by project and by user (build_report, figures), median of N, on one
ledger: two trees alternated on the same ledger (a copy of main, e.g. `git archive main | tar -x -C /tmp/base`):

    for T in /tmp/base $PWD /tmp/base $PWD; do .venv/bin/python benchmarks/bench_month_trees.py $T URL 5; done
"""
import statistics, sys, time
tree, url, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, tree)
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from ledger.accounting.periods import parse_period
from ledger.accounting.group_keys import parse_group_keys
from ledger.reports import spend as report_spend

engine = create_engine(url)
period = parse_period("2026-10", "Asia/Kolkata")
out = []
with Session(engine) as session:
    for by in ("project", "user"):
        keys = parse_group_keys(by)
        report_spend.build_report(session, period, keys, digest=False)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            report_spend.build_report(session, period, keys, digest=False)
            times.append((time.perf_counter() - t) * 1000)
        out.append(f"by {by} {statistics.median(times):.1f} ms (min {min(times):.1f})")
print(tree.split("/")[-1], url.split("/")[-1], "; ".join(out), flush=True)
