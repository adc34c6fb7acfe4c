"""The dashboard's pages at scale: each rendered in-process (Starlette's TestClient) beside the CLI's time for the same
figures, in the same run, on bench_scale.py's ledger (N calls over 90 days at issue 26's spread).

Printed: p50 and p95 of --runs requests after a warm-up, for the Spend page and the API's spend route of the month
2026-10 in Asia/Kolkata by project, by user and by project,day; beside them `build_report` (what `credit-ledger
report` computes: its figures) and `write_report` as JSON (the whole `report --format json --output -`).

    .venv/bin/python benchmarks/bench_dashboard.py [--calls 100000] [--postgres URL | --sqlite PATH] [--runs 20]
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from starlette.testclient import TestClient  # noqa: E402

from bench_web import OneViewer, percentiles  # noqa: E402
from bench_scale import TAGS, USERS, bench_ledger, ledger_arguments, load  # noqa: E402
from ledger.accounting.group_keys import parse_group_keys  # noqa: E402
from ledger.accounting.periods import parse_period  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.reports.run import STDOUT, ReportRequest, write_report  # noqa: E402
from ledger.reports.spend import build_report  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.reading import one_snapshot  # noqa: E402
from ledger.web.app import create_app  # noqa: E402
from ledger.web.viewer import Viewer  # noqa: E402

PERIOD, ZONE = "2026-10", "Asia/Kolkata"
GROUPINGS = ("project", "user", "project,day")


def measure(ledger: Ledger, runs: int) -> None:
    settings = Settings(database_url=ledger.url, timezone="UTC")
    app = create_app(settings, OneViewer(Viewer("bench", "finance")), ledger=ledger)
    period = parse_period(PERIOD, ZONE)
    print(f"| {ledger.dialect}, {PERIOD} in {ZONE} | page p50 | page p95 | API p50 | API p95 | build_report p50 | "
          f"build_report p95 | report json p50 | report json p95 |")
    print("|---|---|---|---|---|---|---|---|---|")
    with TestClient(app, raise_server_exceptions=True) as client:
        for by in GROUPINGS:
            query = {"period": PERIOD, "tz": ZONE, "by": by}
            keys = parse_group_keys(by)

            def page():
                answer = client.get("/spend", params=query)
                assert answer.status_code == 200, answer.text[:500]

            def api():
                answer = client.get("/api/v1/spend", params=query)
                assert answer.status_code == 200, answer.text[:500]

            def figures():
                with one_snapshot(ledger) as session:
                    build_report(session, period, keys)

            def report_json():
                write_report(settings, ledger, ReportRequest(period, keys, None, "json", STDOUT), io.StringIO())

            cells = [percentiles(action, runs) for action in (page, api, figures, report_json)]
            print(f"| by {by} | " + " | ".join(f"{p50:,.1f} ms | {p95:,.1f} ms" for p50, p95 in cells) + " |")


def main() -> int:
    arguments = ledger_arguments(__doc__.splitlines()[0], calls=100_000, runs=20).parse_args()
    with bench_ledger(arguments, "dashboard.db") as (ledger, fresh):
        print(f"== {ledger.dialect}: {arguments.calls:,} calls over 90 days, {USERS:,} users, {TAGS} tag values")
        if fresh:
            load(ledger, arguments.calls, USERS, TAGS)
        measure(ledger, arguments.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
