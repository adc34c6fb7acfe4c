"""A report reads the ledger and never writes it: top-ups are read from the balance snapshots, whatever ran before.

Top-ups are what a rise of `total_purchased` between two usable snapshots
shows: a report finds them itself, so the same ledger gives the same
Purchase rows and Summary before and after a `reconcile` or a poll has run,
and a report runs on a read-only ledger (SQLite's `mode=ro`: the tests run as
root, whom file permissions do not stop) in every format.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from ledger_rows import call_values, insert, register

from ledger.accounting.snapshots import OK, BalanceSnapshotValue
from ledger.cli import main
from ledger.store import balances
from ledger.store.engine import Ledger

OCT = datetime(2026, 10, 1, tzinfo=timezone.utc)
NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)


def polled(ledger: Ledger, account: str, taken_at: datetime, purchased: int, consumed: int, status: str = OK) -> None:
    """A snapshot as it lands in the ledger, and nothing else (no top-up recorded beside it)."""
    value = BalanceSnapshotValue(account, taken_at, status, Decimal(purchased - consumed), Decimal(purchased),
                                 Decimal(consumed))
    with ledger.session() as session:
        balances.insert_snapshot(session, value)


def october(url: str) -> None:
    """October with three top-ups of prod (one seen by the first poll of October, after September's last) and one of
    staging; a failed poll between; a top-up seen in November that is not October's."""
    with Ledger(url) as ledger:
        register(ledger, "a" * 64, "Ab12", "backend", "prod")
        register(ledger, "b" * 64, "Cd34", "batch", "staging")
        insert(ledger, [call_values(started_at=OCT + timedelta(days=i), key_fingerprint="a" * 64) for i in range(5)])
        polled(ledger, "prod", OCT - timedelta(hours=2), 1_000, 10)
        polled(ledger, "prod", OCT + timedelta(hours=1), 1_500, 12)  # +500, seen in October
        polled(ledger, "prod", OCT + timedelta(days=3), 1_500, 20)
        polled(ledger, "prod", OCT + timedelta(days=4), 0, 0, status="http_error")  # no figures: not a fall and a rise
        polled(ledger, "prod", OCT + timedelta(days=9), 3_500, 30)  # +2,000
        polled(ledger, "prod", OCT + timedelta(days=30, hours=23), 3_500, 31)
        polled(ledger, "prod", NOV + timedelta(hours=1), 4_000, 32)  # +500, November's
        polled(ledger, "staging", OCT + timedelta(days=2), 100, 0)  # staging's first snapshot: nothing before it
        polled(ledger, "staging", OCT + timedelta(days=5), 350, 1)  # +250


def purchases(url: str, *more: str) -> list[tuple[str, str, str]]:
    out = io.StringIO()
    assert main(["--database-url", url, "report", "--period", "2026-10", "--format", "focus", "--output", "-", *more],
                out=out) == 0, out.getvalue()
    rows = csv.DictReader(io.StringIO(out.getvalue()))
    return [(r["BillingAccountId"], r["ChargePeriodStart"], r["PricingQuantity"]) for r in rows
            if r["ChargeCategory"] == "Purchase"]


EXPECTED = [("prod", "2026-10-01T00:00:00Z", "500.0"), ("staging", "2026-10-06T00:00:00Z", "250.0"),
            ("prod", "2026-10-10T00:00:00Z", "2000.0")]


def test_purchase_rows_are_the_snapshots_top_ups_whatever_ran_before(database_url, tmp_path):
    october(database_url)
    assert purchases(database_url) == EXPECTED
    code = main(["--database-url", database_url, "reconcile", "--from", "2026-09-01", "--to", "2026-12-01"],
                out=io.StringIO())
    assert code in (0, 3, 4)
    assert purchases(database_url) == EXPECTED
    assert purchases(database_url, "--account", "staging") == [EXPECTED[1]]
    book = tmp_path / "oct.xlsx"
    assert main(["--database-url", database_url, "report", "--period", "2026-10", "--format", "xlsx", "--output",
                 str(book)], out=io.StringIO()) == 0
    summary = openpyxl.load_workbook(book)["Summary"]
    header = next(r for r in summary.iter_rows(values_only=True) if r[0] == "account" and "top-ups" in r)
    tops = {r[0]: r[header.index("top-ups")] for r in summary.iter_rows(values_only=True)
            if r and r[0] in ("prod", "staging")}
    assert tops == {"prod": 2500, "staging": 250}


def dump(path: Path) -> str:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
    finally:
        connection.close()


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "xlsx", "focus"])
def test_a_report_runs_on_a_read_only_ledger_and_writes_nothing_to_it(tmp_path, fmt):
    path = tmp_path / "ledger.db"
    october(f"sqlite:///{path}")
    before = dump(path)
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    out = io.StringIO()
    target = tmp_path / f"report.{fmt}"
    code = main(["--database-url", read_only, "report", "--period", "2026-10", "--format", fmt, "--by", "project",
                 "--output", "-" if fmt in ("table", "csv", "json", "focus") else str(target)], out=out)
    assert code == 0, out.getvalue()
    assert dump(path) == before
    if fmt == "focus":
        assert [r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["ChargeCategory"] == "Purchase"]


@pytest.mark.postgres
def test_a_report_runs_as_a_postgresql_role_that_may_only_select(postgres_url, tmp_path):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    october(postgres_url)
    url = make_url(postgres_url)
    role = f"{url.database}_reader"
    owner = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with owner.connect() as connection:
            connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            connection.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
        reader = url.set(username=role, password=None).render_as_string(hide_password=False)
        for fmt in ("table", "csv", "json", "xlsx", "focus"):
            out = io.StringIO()
            code = main(["--database-url", reader, "report", "--period", "2026-10", "--format", fmt, "--output",
                         str(tmp_path / "report.xlsx") if fmt == "xlsx" else "-"], out=out)
            assert code == 0, (fmt, out.getvalue())
    finally:
        with owner.connect() as connection:
            connection.execute(text(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER'))
            connection.execute(text(f'DROP OWNED BY "{role}"'))
        owner.dispose()
        # The role goes once the database that grants to it is dropped (by the fixture): drop it from the server.
        server = create_engine(url.set(database="postgres").render_as_string(hide_password=False),
                               isolation_level="AUTOCOMMIT")
        try:
            with server.connect() as connection:
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        finally:
            server.dispose()
