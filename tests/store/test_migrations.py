"""The schema is made only by the migrations, on SQLite and PostgreSQL alike."""

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from ledger.store.engine import Ledger, current_revision, downgrade, head_revision, upgrade

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"calls", "rejected_records", "rate_cards", "api_keys", "balance_snapshots", "job_runs",
          "period_closes", "alerts", "alert_deliveries", "delivery_attempts", "limit_holds", "call_rollups", "retention_runs",
          "call_rollups_quarter_models", "call_rollups_hourly", "call_rollups_daily", "call_rollups_daily_users",
           "call_rollups_monthly_users", "call_rollups_hourly_tags", "call_rollups_hourly_projects",
           "dashboard_users", "web_sessions", "sign_in_links", "api_tokens", "sign_in_attempts", "audit_log", "retired_calls"}


def test_upgrade_then_downgrade_to_base_then_upgrade_again(database_url):
    ledger = Ledger(database_url)
    try:
        assert current_revision(ledger.engine) == head_revision()
        assert set(inspect(ledger.engine).get_table_names()) == TABLES | {"alembic_version"}
        downgrade(ledger.engine, "base")
        assert set(inspect(ledger.engine).get_table_names()) <= {"alembic_version"}
        upgrade(ledger.engine)
        assert TABLES <= set(inspect(ledger.engine).get_table_names())
    finally:
        ledger.close()


def test_alembic_check_finds_no_drift(database_url):
    Ledger(database_url).close()
    env = {"CREDIT_LEDGER_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_the_call_id_is_unique_and_the_completion_id_indexed(ledger):
    inspector = inspect(ledger.engine)
    uniques = [c["column_names"] for c in inspector.get_unique_constraints("calls")]
    uniques += [i["column_names"] for i in inspector.get_indexes("calls") if i["unique"]]
    assert ["call_id"] in uniques
    assert ["completion_id"] in [i["column_names"] for i in inspector.get_indexes("calls")]
