"""The 100 budgets of bench_scale.py kind by kind: each kind's `spends` alone, then all 100, on a ledger bench_scale made.

Each figure is the median of --runs runs after a warm-up, in one session;
each kind's answer is asserted equal to the raw calls' (`spend(raw_only=True)`);
then a hard limit's refresh reads of a project's month, as bench_scale.py times them.
With --explain, PostgreSQL's EXPLAIN (ANALYZE, BUFFERS) of each kind's statement
is printed (planning time, JIT, the plan's nodes).

    .venv/bin/python benchmarks/bench_budget_kinds.py (--postgres URL --keep NAME | --sqlite PATH) [--runs 5] [--explain]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


from sqlalchemy.sql.elements import TextClause  # noqa: E402

from bench_scale import NOW, ZONE, bench_ledger, budget_queries, ledger_arguments, median_ms  # noqa: E402
from ledger.accounting.budgets import Scope  # noqa: E402
from ledger.accounting.periods import calendar_period  # noqa: E402
from ledger.store import budgets as store_budgets  # noqa: E402
from ledger.store import limit_reads  # noqa: E402

KINDS = (("projects (month, Kolkata and UTC)", 0, 40), ("users (month)", 40, 65), ("project and user (week)", 65, 70),
         ("keys (day, Kolkata)", 70, 80), ("accounts (month)", 80, 85), ("tags (rolling 7 d, 24 h)", 85, 93),
         ("models (month)", 93, 95), ("whole ledger (five periods)", 95, 100), ("all 100", 0, 100))


def main() -> int:
    parser = ledger_arguments(__doc__.splitlines()[0], calls=1_000_000, runs=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--work", action="store_true", help="also the work, which the host's load does not move: "
                        "PostgreSQL's buffers (shared hit + read) and plan cost, SQLite's virtual machine steps")
    arguments = parser.parse_args()
    queries = budget_queries()
    with bench_ledger(arguments, "scale.db") as (ledger, fresh):
        assert not fresh, "load the ledger with bench_scale.py first"
        with ledger.session() as session:
            raw = [store_budgets.spend(session, *q, raw_only=True) for q in queries]
            print(f"   {'kind':40s} {'spends':>10s}")
            for label, low, high in KINDS:
                part = queries[low:high]
                took, found = median_ms(lambda: store_budgets.spends(session, part), arguments.runs)
                assert [tuple(s) for s in found] == [tuple(s) for s in raw[low:high]], label
                print(f"   {label:40s} {took:8.1f} ms" + (f"  {work(session, part)}" if arguments.work else ""), flush=True)
                if arguments.explain and ledger.dialect == "postgresql" and high - low < 100:
                    explain(session, part)
            refresh(session, arguments.runs)
    return 0


def caught(session, action) -> list:
    """The statements `action` sends through the session."""
    statements = []
    execute = session.execute

    def catching(statement, *args, **kwargs):
        statements.append(statement)
        return execute(statement, *args, **kwargs)

    session.execute = catching
    try:
        action()
    finally:
        del session.execute
    return [s for s in statements if hasattr(s, "compile") and not isinstance(s, TextClause)]


def work(session, part) -> str:
    """What `spends(part)` reads: PostgreSQL's buffers and estimated cost of its statements, or SQLite's steps."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        steps = [0]

        def step():
            steps[0] += 1
            return 0

        raw = connection.connection.driver_connection
        raw.set_progress_handler(step, 1000)
        try:
            store_budgets.spends(session, part)
        finally:
            raw.set_progress_handler(None, 1000)
        return f"{steps[0]:,} thousand VM steps"
    buffers = cost = 0
    plain = getattr(store_budgets, "plain_plans", None)  # (this tree's settings for the statement, where it has them)
    with plain(session) if plain is not None else contextlib.nullcontext():  # the EXPLAINs under them too
        for statement in caught(session, lambda: store_budgets.spends(session, part)):
            compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
            plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(compiled),
                                              compiled.params).scalar()
            top = plan[0]["Plan"]
            buffers += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
            cost += top["Total Cost"]
    return f"{buffers:,} buffers, cost {cost:,.0f}"


def refresh(session, runs: int) -> None:
    """A hard limit's refresh reads of a project's month, as bench_scale.py times them."""
    scope, month = Scope(project="project-07"), calendar_period("month", NOW, ZONE)
    kept = limit_reads.DayCharges()

    def steady():
        days = kept.of(scope, None)
        days.pop(max(days, default=None), None)
        return limit_reads.limit_reads(session, scope, month.start, month.end, seen=kept)

    def raw():
        return (store_budgets.spend(session, scope, month.start, month.end, raw_only=True),
                store_budgets.largest_charge(session, scope, month.start, month.end))

    for label, action in (("refresh (a day's largest charge read)", steady), ("refresh, the first",
                          lambda: limit_reads.limit_reads(session, scope, month.start, month.end)), ("refresh, raw", raw)):
        took, found = median_ms(action, runs)
        print(f"   {label:40s} {took:8.1f} ms  {found[1]}", flush=True)


def explain(session, part) -> None:
    """EXPLAIN ANALYZE of each statement `spends` sends for `part` (caught on its way to the database)."""
    statements = caught(session, lambda: store_budgets.spends(session, part))
    connection = session.connection()
    for statement in statements:
        compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        lines = [row[0] for row in connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params)]
        keep = [line for line in lines if not line.lstrip().startswith(("Buffers", "Filter", "Rows Removed", "Index Cond",
                                                                         "Heap Fetches", "Recheck", "Sort Key", "Group Key"))]
        print("\n".join("      " + line for line in keep[:14] + ["..."] + keep[-6:]))


if __name__ == "__main__":
    raise SystemExit(main())
