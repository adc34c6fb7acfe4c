"""The analyst's DataFrames agree with `report --format json` and `calls --format json` to the nano-credit."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
import pytest
from ledger_rows import call_values, insert, register

from ledger.cli import main
from ledger.reports import frames
from ledger.store.engine import Ledger

NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)
HUGE = "123456789.123456789"  # 1.2e17 nano-credits: a float would lose its last digits


@pytest.fixture
def ledger_url(database_url):
    with Ledger(database_url) as ledger:
        register(ledger, "a" * 64, "Ab12", "backend", "prod")
        rows = [call_values(started_at=NOV + timedelta(hours=7 * i, microseconds=i), project=["search", "support"][i % 2],
                            key_fingerprint="a" * 64, key_last4="Ab12", charged=["1.25", "0.000000001", None, HUGE][i % 4],
                            tags={"feature": "chat"} if i % 3 else None)
                for i in range(24)]
        rows.append(call_values(started_at=datetime(2026, 12, 2, tzinfo=timezone.utc), charged="7"))
        insert(ledger, rows)
    return database_url


def cli_json(*argv):
    out = io.StringIO()
    assert main(["--database-url", *argv], out=out) == 0, out.getvalue()
    return json.loads(out.getvalue(), parse_float=Decimal)


def test_spend_by_project_is_the_reports_groups_exactly(ledger_url):
    frame = frames.spend(ledger_url, "2026-11", by="project,model", tz="Europe/Berlin")
    doc = cli_json(ledger_url, "report", "--period", "2026-11", "--tz", "Europe/Berlin", "--by", "project,model",
                   "--format", "json", "--output", "-")
    assert len(frame) == len(doc["groups"]) == 2
    for row, group in zip(frame.to_dict("records"), doc["groups"]):
        assert {"project": row["project"], "model": row["model"]} == group["key"]
        assert row["calls"] == group["calls"]
        for name in ("credits_charged", "credits_expected", "usd"):
            assert isinstance(row[name], Decimal) and row[name] == Decimal(group[name]), name
    assert frame["credits_charged"].sum() == Decimal(doc["totals"]["credits_charged"]) == 6 * (Decimal("1.250000001") + Decimal(HUGE))
    assert frame.attrs["period"] == "2026-11" and frame.attrs["zone"] == "Europe/Berlin"


def test_spend_without_groups_is_one_row_the_total_and_none_for_an_empty_period(ledger_url):
    (row,) = frames.spend(ledger_url, "2026-11").to_dict("records")
    doc = cli_json(ledger_url, "report", "--period", "2026-11", "--format", "json", "--output", "-")
    assert row["calls"] == doc["totals"]["calls"] == 24 and row["credits_charged"] == Decimal(doc["totals"]["credits_charged"])
    assert frames.spend(ledger_url, "2026-10").empty


def test_calls_are_the_listings_rows_with_exact_amounts(ledger_url):
    frame = frames.calls(ledger_url)
    listed = cli_json(ledger_url, "calls", "--format", "json")
    assert list(frame.columns) == list(listed[0]) and len(frame) == len(listed) == 25
    for row, call in zip(frame.to_dict("records"), listed):
        assert row["call_id"] == call["call_id"] and row["started_at"] == pd.Timestamp(call["started_at"])
        for name in ("credits_charged", "credits_expected"):
            assert row[name] == (None if call[name] is None else Decimal(call[name])), name
            assert row[name] is None or isinstance(row[name], Decimal)
        assert (row["tags"], row["anomalies"], row["stream"], row["prompt_tokens"]) == (
            call["tags"], call["anomalies"], call["stream"], call["prompt_tokens"])
    assert frame["credits_charged"].dropna().sum() == sum(Decimal(c["credits_charged"]) for c in listed if c["credits_charged"])
    november = frames.calls(ledger_url, since=NOV, until=datetime(2026, 12, 1, tzinfo=timezone.utc), project="search")
    assert len(november) == 12 and set(november["project"]) == {"search"}
    nobody = frames.calls(ledger_url, project="nobody")
    assert nobody.empty and list(nobody.columns) == list(frame.columns)


def test_a_ledger_that_is_not_there_is_an_error_not_a_new_file(tmp_path):
    from ledger.errors import DatabaseError

    with pytest.raises(DatabaseError):
        frames.calls(f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()
