"""The dashboard's Calls page at depth: /calls rendered at the first page and at a deep cursor, beside the CLI.

On bench_scale's generated ledger (its builder: N calls over 90 days from 2026-09-01, 100 projects, 2,000 users,
50 keys), the dashboard app in process (Starlette's TestClient, every request as one viewer) renders
/calls for the whole 90 days: the first page, and the page after a cursor 90 % deep (keyset: the same cost),
unfiltered, filtered by a project, and for a viewer limited to 3 projects; and GET /api/v1/calls likewise.
Beside each, `credit-ledger calls --limit 100 --format json` (main() in process) for the same filters
(the deep page: --until the cursor's instant). p50 and p95 of --runs runs after a warm-up; then the query
plan of the deep page's query on this database (EXPLAIN), which must seek an index, not sort the table.

    .venv/bin/python benchmarks/bench_calls_page.py [--calls 1000000] [--postgres URL | --sqlite PATH] [--runs 30]
"""

from __future__ import annotations

import io
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sqlalchemy import select, text  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import bench_scale  # noqa: E402
from bench_web import OneViewer, percentiles  # noqa: E402
from bench_scale import BASE, DAYS, bench_ledger, ledger_arguments, load  # noqa: E402
from ledger.cli import main as cli_main  # noqa: E402
from ledger.config import Settings  # noqa: E402
from ledger.reports.calls import STORE_NAMES, calls_selection  # noqa: E402
from ledger.store.call_filters import CallFilter  # noqa: E402
from ledger.store.call_rows import Position, page_query  # noqa: E402
from ledger.store.engine import Ledger  # noqa: E402
from ledger.store.models import Call  # noqa: E402
from ledger.web.app import create_app  # noqa: E402
from ledger.web.calls import PAGE_SIZE, cursor_of  # noqa: E402
from ledger.web.viewer import Viewer  # noqa: E402

END = BASE + timedelta(days=DAYS)
WINDOW = {"from": BASE.strftime("%Y-%m-%dT%H:%MZ"), "to": END.strftime("%Y-%m-%dT%H:%MZ"), "tz": "UTC"}
CLI_WINDOW = ["--since", BASE.isoformat(), "--until", END.isoformat()]


def deep_position(ledger: Ledger, calls: int, project: str | None = None) -> Position:
    """The position 90 % down the newest-first list (found once with OFFSET, for the benchmark only)."""
    query = select(Call.started_at, Call.id).order_by(Call.started_at.desc(), Call.id.desc())
    if project is not None:
        query = query.where(Call.project == project)
        calls = calls // 100
    with ledger.session() as session:
        row = session.execute(query.offset(calls * 9 // 10).limit(1)).one()
    return Position(row[0], row[1])


def explain(ledger: Ledger, position: Position, filters: CallFilter | None, projects=None) -> list[str]:
    with ledger.session() as session:
        query = page_query(session, calls_selection(BASE, END, None, projects), STORE_NAMES, PAGE_SIZE, filters, position)
        compiled = query.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if ledger.dialect == "sqlite" else "EXPLAIN "
        return [" | ".join(str(v) for v in row) for row in session.execute(text(prefix + str(compiled)))]


def measure(ledger: Ledger, calls: int, runs: int) -> None:
    settings = Settings(database_url=ledger.url, timezone="UTC")
    everyone = TestClient(create_app(settings, OneViewer(Viewer("bench", "finance")), ledger=ledger))
    limited = TestClient(create_app(settings, OneViewer(
        Viewer("bench", "viewer", projects=frozenset({"project-07", "project-42", "project-93"}))), ledger=ledger))
    deep, deep_project = deep_position(ledger, calls), deep_position(ledger, calls, "project-42")
    until = lambda p: ["--until", (p.started_at + timedelta(microseconds=1)).isoformat()]  # noqa: E731
    cases = [
        ("first page", everyone, {}, [], CLI_WINDOW),
        ("90 % deep", everyone, {"after": cursor_of(deep)}, [], ["--since", BASE.isoformat(), *until(deep)]),
        ("project, first page", everyone, {"project": "project-42"}, ["--project", "project-42"], CLI_WINDOW),
        ("project, 90 % deep", everyone, {"project": "project-42", "after": cursor_of(deep_project)},
         ["--project", "project-42"], ["--since", BASE.isoformat(), *until(deep_project)]),
        ("3-project viewer, first page", limited, {}, None, CLI_WINDOW),
        ("3-project viewer, 90 % deep", limited, {"after": cursor_of(deep)}, None, []),
    ]
    print(f"   {'view':30} {'/calls p50/p95 ms':>20} {'/api/v1/calls p50/p95':>22} {'CLI --limit 100 p50/p95':>24}")
    for name, client, extra, cli_filters, cli_window in cases:
        page = lambda: check(client.get("/calls", params={**WINDOW, **extra}))  # noqa: E731
        api = lambda: check(client.get("/api/v1/calls", params={**WINDOW, **extra}))  # noqa: E731
        figures = [percentiles(page, runs), percentiles(api, runs)]
        if cli_filters is not None:
            argv = ["--database-url", ledger.url, "calls", *cli_window, *cli_filters, "--limit", "100", "--format", "json"]
            figures.append(percentiles(lambda: cli_main(argv, out=io.StringIO()), runs))
        print(f"   {name:30} " + " ".join(f"{p50:>9.1f}/{p95:<9.1f}  " for p50, p95 in figures))
    for title, position, filters, projects in (
        ("deep page", deep, None, None),
        ("deep page of a project", deep_project, CallFilter(project="project-42"), None),
        ("deep page, 3-project viewer", deep, None, frozenset({"project-07", "project-42", "project-93"})),
    ):
        print(f"   plan of the {title}:")
        for line in explain(ledger, position, filters, projects):
            print(f"      {line}")


def check(response):
    if response.status_code != 200:
        raise SystemExit(f"{response.status_code}: {response.text[:300]}")
    return response


def main() -> int:
    arguments = ledger_arguments(__doc__.splitlines()[0], calls=1_000_000, runs=30).parse_args()
    with bench_ledger(arguments, "calls.db") as (ledger, fresh):
        print(f"== {ledger.dialect}: {arguments.calls:,} calls over {DAYS} days")
        if fresh:
            bench_scale.rebuild_rollups = lambda engine, say: None  # the Calls pages read no rollup
            load(ledger, arguments.calls, 2000, 10)
        measure(ledger, arguments.calls, arguments.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
