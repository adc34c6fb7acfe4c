"""`credit-ledger closes`: every close and reopen, oldest first, which closes are in force, and each pair of them
that overlaps (a ledger closed before the one-calendar rule) with how to resolve it."""

from __future__ import annotations

from typing import TextIO

from ..accounting.closes import CLOSE, active_closes, overlapping_closes
from ..exactjson import dumps, loads
from ..store.closes import close_events, close_rows
from ..terminal import table
from .spend_out import utc_text


def _brackets(detail: str | None) -> dict:
    """Each account's bracket, as the close stored it: the snapshots its reconciliation ran between."""
    if not detail:
        return {}
    return {a["account"]: a["bracket"] for a in loads(detail).get("accounts", ()) if a.get("bracket") is not None}


def close_entries(session) -> tuple[list[dict], list]:
    """Every close and reopen as `closes --json` gives it, oldest first, and the pairs of closes that overlap."""
    rows = close_rows(session)
    events = close_events(session)
    in_force = {e.id for e in active_closes(events)}
    overlaps = overlapping_closes(events)
    overlapping: dict[int, list[dict]] = {}
    for overlap in overlaps:
        for event in (overlap.first, overlap.second):
            overlapping.setdefault(event.id, []).append(overlap.as_dict())
    entries = [
        {
            "id": r.id, "action": r.action, "period": r.period_label, "kind": r.period_kind, "zone": r.zone,
            "start": utc_text(r.period_start), "end": utc_text(r.period_end), "at": utc_text(r.cutoff_at),
            "in_force": r.id in in_force, "calls": r.calls, "credits_charged": r.credits_charged,
            "credits_expected": r.credits_expected, "digest": r.calls_digest, "reconciliation": r.reconciliation,
            "reason": r.reason, "host": r.host, "brackets": _brackets(r.reconciliation_detail),
            **({"overlaps": overlapping[r.id]} if r.id in overlapping else {}),
        }
        for r in rows
    ]
    return entries, overlaps


def print_closes(session, out: TextIO, as_json: bool = False) -> int:
    entries, overlaps = close_entries(session)
    if as_json:
        out.write(dumps(entries, indent=2, ensure_ascii=False) + "\n")
        return len(entries)
    if not entries:
        print("no period has been closed", file=out)
        return 0
    columns = ["period", "zone", "action", "at", "calls", "credits_charged", "reconciliation", "digest", "reason"]
    body = []
    for e in entries:
        state = e["action"] if e["action"] != CLOSE else ("close (in force)" if e["in_force"] else "close (reopened since)")
        body.append([e["period"], e["zone"], state, e["at"], e["calls"], e["credits_charged"], e["reconciliation"],
                     (e["digest"] or "")[:16], e["reason"]])
    print(table(columns, body, right=["calls", "credits_charged"]), file=out)
    for overlap in overlaps:
        print(f"OVERLAP: {overlap.describe()}", file=out)
    return len(entries)
