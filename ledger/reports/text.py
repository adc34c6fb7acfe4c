"""Plain-text renderings for the terminal: a reconciliation, balance polls, the pricing findings."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence, TextIO

from ..accounting.reconcile import ROUNDING_RULES, Explanation
from ..accounting.verdict import GAP_VERDICT, NOTHING_VERDICT, PARTIAL_VERDICT, Reconciliation
from ..accounting.snapshots import BalanceSnapshotValue
from ..exactjson import dumps
from ..money import fmt
from ..terminal import printable, table

# ---------------------------------------------------------------- reconciliation

_COLUMNS = ("account", "from", "to", "top-up", "consumed", "ledger", "difference", "tolerance", "status", "explained by")


def explanations_text(parts: Sequence[Explanation], limit: int = 4) -> str:
    named = [p for p in parts if p.name != "top_up"]
    text = ", ".join(
        f"{p.name} {'?' if p.credits is None else fmt(p.credits, 2)}" + (f" ({p.calls} calls)" if p.calls else "")
        for p in named[:limit]
    )
    return text + (f", +{len(named) - limit} more" if len(named) > limit else "")


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_reconciliation(rec: Reconciliation) -> str:
    """A plain table: one row per window, a cumulative line per account, a verdict."""
    table = [_COLUMNS]
    for w in rec.rows():
        table.append(
            (
                w.account,
                "cumulative" if w.cumulative else _time(w.start),
                _time(w.end),
                fmt(w.purchased) if w.purchased else "",
                fmt(w.consumed),
                fmt(w.ledger_charged, 2),
                fmt(w.difference, 2),
                f"-{fmt(w.tolerance_below, 2)}/+{fmt(w.tolerance_above, 2)}",
                w.status,
                explanations_text(w.explanations),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    numeric = {3, 4, 5, 6, 7}
    lines = [
        "  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in table
    ]
    for account in rec.accounts:
        if account.failed_polls:
            failed = ", ".join(f"{n} {s}" for s, n in sorted(account.failed_polls.items()))
            lines.append(f"{account.account}: polls without figures (skipped): {failed}")
        if account.cumulative is None:
            lines.append(f"{account.account}: fewer than two usable snapshots, nothing to reconcile")
        elif account.cumulative.expected:
            c = account.cumulative
            share = c.above_rate_card / c.expected * 100
            lines.append(
                f"{account.account}: charged {fmt(c.above_rate_card, 2)} credits above the rate card "
                f"({fmt(share, 2)}% of {fmt(c.expected, 2)} expected)"
            )
    if not rec.accounts:
        lines.append("no balance snapshots: run `credit-ledger balance` (or the service) first")
    rule = ROUNDING_RULES[rec.rounding]
    lines.append(
        f"tolerance: snapshot rounding '{rec.rounding}' (exact figure within -{fmt(rule[0])}/+{fmt(rule[1])} of the integer), "
        f"below: the window's calls that overlap a poll (booked on its other side), above: the others that do "
        f"(a call overlaps a poll when it started before the answer and ended within {rec.billing_settle_seconds:g}s "
        f"of the request)"
    )
    lines.append({GAP_VERDICT: "verdict: UNEXPLAINED GAP", NOTHING_VERDICT: "verdict: NOTHING TO RECONCILE",
                  PARTIAL_VERDICT: "verdict: PARTLY RECONCILED"}.get(
        rec.verdict, "verdict: reconciled"))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- balances


def format_balances(values: list[BalanceSnapshotValue]) -> str:
    lines = []
    for v in values:
        when = v.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if v.ok:
            lines.append(
                f"{printable(v.account)}: balance {fmt(v.balance)}  purchased {fmt(v.total_purchased)}  "
                f"consumed {fmt(v.total_consumed)}  ({when}, key {printable(v.key_label or '')})"
            )
        else:
            lines.append(f"{printable(v.account)}: no balance: {v.status} ({printable(v.detail or 'no detail')}; {when})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pricing findings


def finding_rows(session, since: datetime | None, until: datetime | None, projects: frozenset[str] | None = None,
                 limit: int | None = None) -> list[dict]:
    """The calls whose charge differs from the rate card's price, oldest first (of `projects` only, the first
    `limit`, given)."""
    from ..store.calls import findings_query

    query = findings_query(since, until, projects)
    rows = []
    for call in session.scalars(query if limit is None else query.limit(limit)):
        difference = None
        if call.credits_charged is not None and call.credits_expected is not None:
            difference = call.credits_charged - call.credits_expected
        rows.append(
            {
                "call_id": call.call_id,
                "started_at": call.started_at,
                "completion_id": call.completion_id,
                "model": call.model_requested,
                "status": call.status,
                "pricing_class": call.pricing_class,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
                "reasoning_tokens": call.reasoning_tokens,
                "credits_expected": call.credits_expected,
                "credits_charged": call.credits_charged,
                "difference": difference,
                "project": call.project,
                "anomalies": call.anomalies,
            }
        )
    return rows


def class_totals(session, since: datetime | None, until: datetime | None,
                 projects: frozenset[str] | None = None) -> list[dict]:
    from ..store.calls import totals_by_class

    totals = []
    for t in totals_by_class(session, since, until, projects):
        charged, expected = t.credits_charged, t.credits_expected
        difference = None if charged is None or expected is None else charged - expected
        totals.append(
            {"pricing_class": t.pricing_class, "calls": t.calls, "credits_expected": expected, "credits_charged": charged,
             "difference": difference}
        )
    return totals


def print_findings(session, since: datetime | None, until: datetime | None, out: TextIO, as_json: bool = False,
                   rollups: dict | None = None, overlapping_closes: list[dict] | None = None) -> int:
    """Print the pricing findings (and, given, the rollups' check: `rollups_finding`, and the closes in force
    that overlap: `Overlap.as_dict` each); returns how many calls were flagged."""
    rows = finding_rows(session, since, until)
    totals = class_totals(session, since, until)
    if as_json:
        extra = {**({"rollups": {k: v for k, v in rollups.items() if k != "lines"}} if rollups else {}),
                 **({"overlapping_closes": overlapping_closes} if overlapping_closes is not None else {})}
        out.write(dumps({"findings": rows, "totals": totals, **extra}, indent=2) + "\n")
        return len(rows)
    if rollups is not None:
        for line in rollups["lines"]:
            print(line, file=out)
    for overlap in overlapping_closes or ():
        print(f"closes overlap: {overlap['resolve']}", file=out)
    if not rows:
        print("pricing check: every call was charged as the rate card says (ok or within rounding)", file=out)
        return 0
    cols = ["call_id", "started_at", "pricing_class", "prompt_tokens", "completion_tokens", "reasoning_tokens",
            "credits_expected", "credits_charged", "difference", "anomalies"]
    print(table(cols, ([r[c] for c in cols] for r in rows), right=cols[3:9]), file=out)
    print(file=out)
    tcols = ["pricing_class", "calls", "credits_expected", "credits_charged", "difference"]
    print(table(tcols, ([t[c] for c in tcols] for t in totals), right=tcols[1:]), file=out)
    return len(rows)
