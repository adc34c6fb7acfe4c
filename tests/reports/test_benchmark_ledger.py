"""The report benchmark's ledger builder on today's schema: it fills a migrated ledger and leaves its indexes as it found them."""

from __future__ import annotations

import io
import json
import sys
from decimal import Decimal
from pathlib import Path

from sqlalchemy import inspect, text

from ledger.cli import main
from ledger.store.engine import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import report_ledger  # noqa: E402


def _call_indexes(engine) -> dict[str, tuple]:
    return {i["name"]: (tuple(i["column_names"]), bool(i["unique"])) for i in inspect(engine).get_indexes("calls")}


def test_the_benchmark_ledger_is_built_on_the_migrated_schema_and_reports_its_sums(database_url):
    with Ledger(database_url) as ledger:
        before = _call_indexes(ledger.engine)
        report_ledger.build(ledger.engine, 2_000, days=30, log=lambda _: None)
        assert _call_indexes(ledger.engine) == before
        with ledger.engine.connect() as connection:
            calls, nano = connection.execute(text("SELECT count(*), sum(credits_charged) FROM calls")).one()
    assert calls == 2_000
    out = io.StringIO()
    code = main(["--database-url", database_url, "report", "--from", "2026-09-01T00:00:00Z", "--to", "2026-10-02T00:00:00Z",
                 "--format", "json", "--output", "-"], out=out)
    assert code == 0, out.getvalue()
    totals = json.loads(out.getvalue(), parse_float=Decimal)["totals"]
    assert totals["calls"] == 2_000 and Decimal(totals["credits_charged"]) == Decimal(nano) / 10**9
