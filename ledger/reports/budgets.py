"""Budgets, balance runways and the alert history for the terminal and as JSON (values in, text out)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Sequence

from ..accounting.budgets import BalanceAlert, BudgetStatus, Runway, series_bar
from ..exactjson import dumps
from ..money import fmt
from ..terminal import table

BAR = 12


def percent_bar(percent: Decimal, width: int = BAR) -> str:
    """[██████····] for the share of the limit spent; a budget past its limit overflows with ▶."""
    filled = min(width, int(percent * width / 100))
    return "[" + "█" * filled + "·" * (width - filled) + "]" + ("▶" if percent > 100 else "")


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _period(status: BudgetStatus) -> str:
    period = status.period
    return period.label if period.kind == "rolling" else f"{period.label} {period.zone}"


def format_budgets(statuses: Sequence[BudgetStatus], balances: Sequence[tuple[BalanceAlert, Runway]]) -> str:
    lines = []
    if statuses:
        columns = ["budget", "scope", "period", "spent", "limit", "percent", "", "projected", "state"]
        rows = [[s.budget.name + (" (enforced)" if s.budget.enforce else ""), s.budget.scope.describe(), _period(s),
                 fmt(s.spent, 2), fmt(s.limit, 2), fmt(s.percent, 1) + "%", percent_bar(s.percent),
                 "" if s.projection is None else fmt(s.projection, 2), s.state] for s in statuses]
        lines += [table(columns, rows, right=("spent", "limit", "percent", "projected")), ""]
    if balances:
        columns = ["account", "balance", "burn/day", "runway (days)", "wanted", "top-up to cover", "last 7 days", "snapshot"]
        rows = []
        for alert, found in balances:
            rows.append([
                alert.account, fmt(found.balance, 2) if found.balance is not None else "no snapshot",
                "" if found.burn_per_day is None else fmt(found.burn_per_day, 2),
                "lasts" if found.days_left is None and found.balance is not None else
                ("" if found.days_left is None else fmt(found.days_left, 1)),
                "" if alert.runway_days is None else str(alert.runway_days),
                "" if alert.runway_days is None or found.top_up_for(alert.runway_days) is None
                else fmt(found.top_up_for(alert.runway_days), 2),
                series_bar(found.daily), _when(found.at),
            ])
        lines += [table(columns, rows, right=("balance", "burn/day", "runway (days)", "wanted", "top-up to cover")), ""]
        lines.append("burn/day: the last 7 days of snapshots' total_consumed, weighted 7..1 to the newest day")
    if not lines:
        lines.append("no [[budgets]] or [[balance_alerts]] in the config")
    return "\n".join(lines).rstrip() + "\n"


def _budget_json(s: BudgetStatus) -> dict[str, Any]:
    period = s.period
    return {
        "name": s.budget.name, "scope": s.budget.scope.describe(), "enforce": s.budget.enforce,
        "period": {"label": period.label, "kind": period.kind, "zone": period.zone, "start": period.start, "end": period.end},
        "spent": s.spent, "calls": s.calls, "limit": s.limit, "percent": s.percent.quantize(Decimal("0.01")),
        "projection": s.projection, "crossed": list(s.crossed), "forecast_over": s.forecast_over, "state": s.state,
    }


def _balance_json(alert: BalanceAlert, found: Runway) -> dict[str, Any]:
    return {
        "account": alert.account, "balance": found.balance, "snapshot_at": found.at, "below": alert.below,
        "burn_per_day": found.burn_per_day, "runway_days": found.days_left, "wanted_days": alert.runway_days,
        "top_up": None if alert.runway_days is None else found.top_up_for(alert.runway_days),
        "daily_consumption": list(found.daily),
    }


def budgets_json(at: datetime, statuses: Sequence[BudgetStatus], balances: Sequence[tuple[BalanceAlert, Runway]]) -> str:
    return dumps({"at": at, "budgets": [_budget_json(s) for s in statuses],
                  "balances": [_balance_json(a, r) for a, r in balances]}, indent=2) + "\n"


def format_fired(raised: Iterable[str], resolved: Iterable[str], sent: Iterable[Any]) -> str:
    """What one `budgets --notify` (or the demo) raised, resolved and sent."""
    lines = [f"raised: {key}" for key in raised] + [f"resolved: {key}" for key in resolved]
    for attempt in sent:
        verdict = ("sent, unconfirmed (not sent again)" if attempt.unconfirmed
                   else "delivered" if attempt.delivered else "FAILED (retried later)")
        lines.append(f"sent {attempt.kind} {attempt.alert_key} to {attempt.channel} (attempt {attempt.attempt}): "
                     f"{verdict}, {attempt.detail}")
    return "\n".join(lines or ["nothing to raise, resolve or send"]) + "\n"


# ---------------------------------------------------------------- the alert history


def _deliveries_text(deliveries) -> str:
    parts = []
    for delivery, attempts in deliveries:
        if delivery.status != "delivered":
            state = f"pending ({delivery.last_error or 'not tried yet'})"
        else:  # the last attempt says whether the receiver confirmed it
            state = "sent, unconfirmed" if attempts and attempts[-1].outcome == "unconfirmed" else "delivered"
        parts.append(f"{delivery.kind} to {delivery.channel}: {state}, {len(attempts)} attempt(s)")
    return "; ".join(parts) or "no channel"


def format_alerts(history) -> str:
    if not history:
        return "no alerts\n"
    columns = ["raised", "alert", "resolved", "message", "deliveries"]
    rows = [[_when(h.alert.raised_at), h.alert.alert_key, _when(h.alert.resolved_at), h.alert.message,
             _deliveries_text(h.deliveries)] for h in history]
    return table(columns, rows) + "\n"


def alerts_json(history) -> str:
    items = []
    for h in history:
        a = h.alert
        items.append({
            "alert": a.alert_key, "subject": a.subject, "name": a.name, "condition": a.kind, "threshold": a.threshold,
            "period": a.period_label, "raised_at": a.raised_at, "raised_by": a.raised_by, "message": a.message,
            "resolved_at": a.resolved_at, "resolved_message": a.resolved_message,
            "deliveries": [{
                "kind": d.kind, "channel": d.channel, "message_id": d.message_id, "status": d.status,
                "delivered_at": d.delivered_at, "next_attempt_at": None if d.status == "delivered" else d.next_attempt_at,
                "attempts": [{"attempt": t.attempt, "started_at": t.started_at, "ended_at": t.ended_at,
                              "outcome": t.outcome, "detail": t.detail, "host": t.host} for t in attempts],
            } for d, attempts in h.deliveries],
        })
    return dumps({"alerts": items}, indent=2) + "\n"
