"""`credit-ledger calls`: the recorded calls, with the API's field names, as a table, JSON or CSV.

CSV cells are neutralised against formula injection (a spreadsheet never
takes a cell that came from a caller or the upstream for a formula).
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from typing import Any, TextIO

from ..exactjson import dumps
from ..terminal import cell, table

CALL_FIELDS = (
    "call_id", "started_at", "status", "http_status", "error_code", "completion_id", "model", "model_reported",
    "stream", "attempt", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
    "credits_charged", "credits_expected", "pricing_class", "project", "user", "tags", "key_last4", "anomalies",
)
TABLE_FIELDS = ("started_at", "status", "model", "prompt_tokens", "completion_tokens", "reasoning_tokens",
                "credits_charged", "credits_expected", "pricing_class", "project", "user")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def call_dict(call) -> dict:
    return {
        "call_id": call.call_id, "started_at": call.started_at, "status": call.status,
        "http_status": call.http_status, "error_code": call.error_code, "completion_id": call.completion_id,
        "model": call.model_requested, "model_reported": call.model_reported, "stream": call.stream,
        "attempt": call.attempt, "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
        "reasoning_tokens": call.reasoning_tokens, "total_tokens": call.total_tokens,
        "credits_charged": call.credits_charged, "credits_expected": call.credits_expected,
        "pricing_class": call.pricing_class, "project": call.project, "user": call.end_user,
        "tags": json.loads(call.tags) if call.tags else {}, "key_last4": call.key_last4,
        "anomalies": call.anomalies.split(",") if call.anomalies else [],
    }


def list_calls(session, since: datetime | None, until: datetime | None, project: str | None, limit: int | None,
               output: str, out: TextIO) -> int:
    """Write the calls in `output` format (table, json or csv); returns how many."""
    from ..store.calls import calls_query
    from ..store.models import Call

    query = calls_query(since, until, project)
    if limit:
        query = query.order_by(None).order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)
    calls = [call_dict(c) for c in session.scalars(query)]
    if limit:
        calls.reverse()
    if output == "json":
        out.write(dumps(calls, indent=2) + "\n")
    elif output == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CALL_FIELDS)
        for call in calls:
            writer.writerow(csv_cell(call[f]) for f in CALL_FIELDS)
    else:
        print(table(TABLE_FIELDS, ([c[k] for k in TABLE_FIELDS] for c in calls), right=TABLE_FIELDS[3:9]), file=out)
        print(f"{len(calls)} calls", file=out)
    return len(calls)


def csv_cell(value: Any) -> str:
    """A value as CSV text that no spreadsheet runs: text starting like a formula gets a leading quote."""
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True) if value else ""
    elif isinstance(value, list):
        value = ",".join(value)
    text = cell(value)
    return "'" + text if text[:1] in FORMULA_STARTS and not _is_number(text) else text


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None
