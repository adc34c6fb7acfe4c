"""Small ledgers for the report tests: `calls` rows written as the writer writes them, with the times a test chooses.

A row goes in through the ledger's own batch insert (`store.calls.insert_rows`),
so `recorded_at` is whatever the test says (a call replayed late is one
recorded long after it started).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger.accounting.pricing import default_rate_book
from ledger.accounting.records import CallRecord
from ledger.store.calls import CALL_COLUMNS, insert_rows
from ledger.store.keys import register_keys
from ledger.store.rate_cards import sync_rate_cards

T0 = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)


def call_values(
    *,
    started_at: datetime = T0,
    recorded_at: datetime | None = None,
    call_id: str | None = None,
    project: str | None = "search",
    end_user: str | None = "u-1",
    tags: dict | None = None,
    charged: str | Decimal | None = "0.25",
    expected: str | Decimal | None = "0.25088",
    pricing_class: str = "rounding",
    status: str = "completed",
    model_requested: str | None = "gemini-3.1-pro",
    model_reported: str | None = "gemini-3.1-pro-preview",
    prompt_tokens: int | None = 194,
    completion_tokens: int | None = 229,
    reasoning_tokens: int | None = 457,
    key_fingerprint: str | None = "f" * 64,
    key_last4: str | None = "Zq9x",
    rate_card: str | None = "aivideoapi-2026-04",
    anomalies: str | None = None,
) -> tuple:
    """One `calls` row in CALL_COLUMNS order."""
    call_id = call_id or uuid.uuid4().hex
    values = {
        "call_id": call_id, "completion_id": f"chatcmpl-{call_id[:12]}", "model_requested": model_requested,
        "model_reported": model_reported, "stream": True, "reasoning_effort": "low", "include_thoughts": None,
        "tools": None, "attempt": 0, "started_at": started_at, "first_byte_at": started_at + timedelta(seconds=0.3),
        "ended_at": started_at + timedelta(seconds=0.7), "status": status, "http_status": 200 if status != "error" else 503,
        "error_code": None, "error_type": None, "finish_reason": "stop", "refunded": False,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "reasoning_tokens": reasoning_tokens,
        "audio_tokens": 0, "text_tokens": 0,
        "total_tokens": None if prompt_tokens is None else prompt_tokens + (completion_tokens or 0) + (reasoning_tokens or 0),
        "credits_charged": None if charged is None else Decimal(charged),
        "credits_expected": None if expected is None else Decimal(expected),
        "pricing_class": pricing_class, "rate_card": rate_card, "key_fingerprint": key_fingerprint, "key_last4": key_last4,
        "project": project, "end_user": end_user,
        "tags": json.dumps(dict(sorted(tags.items()))) if tags else None, "anomalies": anomalies,
        "record_digest": hashlib.sha256(call_id.encode()).hexdigest(),
        "recorded_at": recorded_at or started_at + timedelta(seconds=2),
    }
    return tuple(values[name] for name in CALL_COLUMNS)


def insert(ledger, rows: list[tuple]) -> None:
    """Insert rows (call_values) through the ledger's batch insert, after the rate cards (as the writer does)."""
    insert_batches(ledger, [rows])


def insert_batches(ledger, batches: list[list[tuple]]) -> None:
    """Insert batches of rows (each sharing one recorded_at, as the writer's do) as `insert` does each, in one
    transaction: a ledger of a thousand batches is made in a few seconds less than by a commit each."""
    with ledger.session() as session:
        sync_rate_cards(session, default_rate_book())
        for rows in batches:
            records = [CallRecord(row[0], row[CALL_COLUMNS.index("started_at")], row[CALL_COLUMNS.index("status")])
                       for row in rows]
            result = insert_rows(session, rows, records)
            assert result.inserted == len(rows), result


def register(ledger, fingerprint: str, last4: str, label: str, account: str) -> None:
    with ledger.session() as session:
        register_keys(session, [(fingerprint, last4, label, account)], T0)


def snapshot(ledger, account: str, taken_at: datetime, purchased: int, consumed: int) -> None:
    """A usable balance snapshot."""
    from ledger.accounting.snapshots import OK, BalanceSnapshotValue
    from ledger.store import balances

    value = BalanceSnapshotValue(account, taken_at, OK, Decimal(purchased - consumed), Decimal(purchased), Decimal(consumed))
    with ledger.session() as session:
        balances.insert_snapshot(session, value)


def empty(ledger) -> None:
    """Every call and rollup row deleted: a random ledger of a property test begins anew."""
    from sqlalchemy import delete

    from ledger.store.models import Call
    from ledger.store.rollup_tables import TABLES

    with ledger.session() as session:
        session.execute(delete(Call))
        for table in TABLES:
            session.execute(delete(table.model))
