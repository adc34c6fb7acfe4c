"""Alert conditions, their unique keys, and what to raise and resolve now (no I/O).

A condition is one thing an alert can say: a budget past a threshold or
projected past its limit, a balance below its floor or running out within
its runway. A calendar budget's alert belongs to its period (key
`budget:NAME:80:2026-11`) and resolves when the period is over; any other
alert is an episode (key `balance:prod:below:3`) that resolves when its
condition stops holding, and the next episode is a new alert. The keys are
unique in the ledger, which is what makes an alert raised once whichever
replica evaluates it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, NamedTuple, Sequence

from .budgets import BalanceAlert, BudgetStatus, Runway, balance_low, runway_short
from .periods import zone_named

THRESHOLD, FORECAST, BELOW, RUNWAY, WRITTEN = "threshold", "forecast", "below", "runway", "written"
BUDGET, BALANCE, REPORT = "budget", "balance", "report"
ALERT, RESOLVED = "alert", "resolved"  # what a delivery carries


class Condition(NamedTuple):
    """One condition as it stands now, with what an alert raised on it would say."""

    condition_id: str  # the key without its period or episode
    holds: bool
    subject: str  # budget | balance | report
    name: str  # the budget's name, the account, or the [[reports]] entry
    kind: str  # threshold | forecast | below | runway | written
    threshold: int | None
    period_label: str | None  # a calendar budget's period; None: an episode
    period_end: datetime | None
    facts: dict[str, Any]  # exact values (Decimals, datetimes) for the message and the webhook
    message: str
    channels: tuple[str, ...]

    @property
    def severity(self) -> int:
        return self.threshold or 0


class OpenAlert(NamedTuple):
    """An alert in the ledger that is not resolved."""

    id: int
    alert_key: str
    condition_id: str
    subject: str
    name: str
    kind: str
    threshold: int | None
    period_label: str | None
    period_end: datetime | None
    facts: dict[str, Any]

    @property
    def severity(self) -> int:
        return self.threshold or 0


class Raise(NamedTuple):
    alert_key: str
    condition: Condition


class Resolve(NamedTuple):
    """Alerts that resolve together, with the one notice about them (carried by `alerts[0]`, the most severe)."""

    alerts: tuple[OpenAlert, ...]
    message: str
    channels: tuple[str, ...]


class Plan(NamedTuple):
    raised: tuple[Raise, ...]
    resolved: tuple[Resolve, ...]


# ---------------------------------------------------------------- words


def credits_text(amount: Decimal | None) -> str:
    return "?" if amount is None else f"{amount:,.2f}"


def _local(when: datetime, zone: str) -> str:
    return when.astimezone(zone_named(zone)).strftime("%Y-%m-%d %H:%M %Z")


def _period_words(status: BudgetStatus) -> str:
    period = status.period
    if period.kind == "rolling":
        return f"in the {period.label}"
    return f"in {period.label} ({period.zone}, until {_local(period.end, period.zone)})"


def budget_facts(status: BudgetStatus) -> dict[str, Any]:
    period = status.period
    return {
        "budget": status.budget.name, "scope": status.budget.scope.describe(), "spent": status.spent,
        "limit": status.limit, "percent": status.percent.quantize(Decimal("0.01")), "projection": status.projection,
        "calls": status.calls, "enforced": status.budget.enforce,
        "period": {"label": period.label, "kind": period.kind, "start": period.start, "end": period.end, "zone": period.zone},
    }


def budget_conditions(status: BudgetStatus) -> list[Condition]:
    """A condition for each threshold of the budget, and its forecast where asked for."""
    budget, period = status.budget, status.period
    label = None if budget.rolling else period.label
    end = None if budget.rolling else period.end
    facts = budget_facts(status)
    head = f"Budget {budget.name} ({budget.scope.describe()})"
    spent = f"{credits_text(status.spent)} of {credits_text(status.limit)} credits spent {_period_words(status)}"
    projected = (f"; projected {credits_text(status.projection)} by the period's end"
                 if status.projection is not None else "")
    found = []
    for threshold in budget.thresholds:
        what = "has reached its limit" if threshold >= 100 else f"has reached {threshold}% of its limit"
        refusing = "; calls in its scope are refused" if budget.enforce and threshold >= 100 else ""
        found.append(Condition(
            f"budget:{budget.name}:{threshold}", threshold in status.crossed, BUDGET, budget.name, THRESHOLD, threshold,
            label, end, {**facts, "threshold": threshold}, f"{head} {what}: {spent}{projected}{refusing}.",
            budget.channels,
        ))
    if budget.forecast:
        found.append(Condition(
            f"budget:{budget.name}:forecast", status.forecast_over, BUDGET, budget.name, FORECAST, None, label, end,
            facts, f"{head} is projected to pass its limit: {credits_text(status.projection)} of "
                   f"{credits_text(status.limit)} credits by the period's end at the rate so far "
                   f"({credits_text(status.spent)} spent {_period_words(status)}).",
            budget.channels,
        ))
    return found


def _days(value: Decimal | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def balance_facts(alert: BalanceAlert, found: Runway) -> dict[str, Any]:
    return {
        "account": alert.account, "balance": found.balance, "below": alert.below, "burn_per_day": found.burn_per_day,
        "runway_days": found.days_left, "wanted_days": alert.runway_days, "snapshot_at": found.at,
        "top_up": found.top_up_for(alert.runway_days) if alert.runway_days is not None else None,
    }


def balance_conditions(alert: BalanceAlert, found: Runway) -> list[Condition]:
    facts = balance_facts(alert, found)
    burn = (f"at {credits_text(found.burn_per_day)} credits a day (the last days, weighted to the recent)"
            if found.burn_per_day is not None else "with no burn rate yet")
    lasts = (f"it runs out in {_days(found.days_left)} days" if found.days_left is not None else "it lasts")
    found_conditions = []
    if alert.below is not None:
        found_conditions.append(Condition(
            f"balance:{alert.account}:below", balance_low(alert, found), BALANCE, alert.account, BELOW, None, None, None,
            facts, f"Balance of account {alert.account} is {credits_text(found.balance)} credits, below "
                   f"{credits_text(alert.below)}: {burn}, {lasts}.",
            alert.channels,
        ))
    if alert.runway_days is not None:
        top_up = facts["top_up"]
        cover = (f"; a top-up of {credits_text(top_up)} credits covers {alert.runway_days} days"
                 if top_up is not None else "")
        found_conditions.append(Condition(
            f"balance:{alert.account}:runway", runway_short(alert, found), BALANCE, alert.account, RUNWAY, None, None,
            None, facts, f"Balance of account {alert.account} runs out in {_days(found.days_left)} days (under "
                         f"{alert.runway_days}): {credits_text(found.balance)} credits {burn}{cover}.",
            alert.channels,
        ))
    return found_conditions


def report_condition(name: str, period: Any, totals: dict[str, Any], files: Sequence[str], closed: str,
                     channels: tuple[str, ...]) -> Condition:
    """A scheduled report written: a notice for its channels, once per entry and period (it never resolves).

    `period` is the report's Period, `totals` its figures (calls, credits charged
    and expected, findings, USD), `closed` what became of the period's close.
    """
    facts = {"report": name, "period": {"label": period.label, "kind": period.kind, "start": period.start,
                                        "end": period.end, "zone": period.zone},
             **totals, "files": list(files), "close": closed}
    usd = f" (${totals['usd']:,.2f})" if totals.get("usd") is not None else ""
    lines = [f"Report {name} for {period.label} ({period.zone}): {totals['calls']:,} calls, "
             f"{credits_text(totals['credits_charged'])} credits charged{usd}, "
             f"{credits_text(totals['credits_expected'])} expected by the rate card, {totals['findings']:,} pricing finding(s); "
             f"period {closed}."]
    lines += [f"File: {path}" for path in files]
    return Condition(f"report:{name}", True, REPORT, name, WRITTEN, None, period.label, None, facts, "\n".join(lines),
                     channels)


def _resolved_message(group: Sequence[OpenAlert], condition: Condition) -> str:
    first = group[0]
    if first.period_label is not None:
        last = first.facts
        what = "its limit" if (first.threshold or 0) >= 100 else (
            f"{first.threshold}%" if first.kind == THRESHOLD else "a projection past its limit")
        now = condition.facts.get("period", {}).get("label")
        return (f"Resolved: budget {first.name}: period {first.period_label} is over (it had reached {what}: "
                f"{credits_text(last.get('spent'))} of {credits_text(last.get('limit'))} credits when alerted); "
                f"{now} starts at {credits_text(condition.facts.get('spent'))}.")
    facts = condition.facts
    if first.subject == BALANCE and first.kind == BELOW:
        return (f"Resolved: balance of account {first.name} is {credits_text(facts.get('balance'))} credits, "
                f"no longer below {credits_text(facts.get('below'))}.")
    if first.subject == BALANCE:
        return (f"Resolved: balance of account {first.name} lasts "
                f"{_days(facts.get('runway_days')) + ' days' if facts.get('runway_days') is not None else 'at no burn'}"
                f", beyond {facts.get('wanted_days')} days.")
    return (f"Resolved: budget {first.name} is back under {first.threshold}% of its limit "
            f"({credits_text(facts.get('spent'))} of {credits_text(facts.get('limit'))} credits {facts.get('period', {}).get('label')}).")


def alert_title(subject: str, kind: str, name: str, threshold: int | None, facts: dict[str, Any]) -> str:
    """A short line for a subject or a heading: what the alert is about."""
    if subject == REPORT:
        return f"Report {name} for {facts.get('period', {}).get('label')}"
    if subject == BUDGET and kind == THRESHOLD:
        return f"Budget {name} reached its limit" if (threshold or 0) >= 100 else f"Budget {name} at {threshold}%"
    if subject == BUDGET:
        return f"Budget {name} projected past its limit"
    if kind == BELOW:
        return f"Balance of {name} below {credits_text(facts.get('below'))} credits"
    return f"Balance of {name} runs out in {_days(facts.get('runway_days'))} days"


# ---------------------------------------------------------------- the plan


def plan_alerts(conditions: Iterable[Condition], open_alerts: Iterable[OpenAlert], episodes: dict[str, int],
                now: datetime) -> Plan:
    """What to raise and resolve now.

    `episodes` counts the alerts ever raised on each condition (the next
    episode's number follows it). A calendar period's alert resolves when
    its period is over, all of one budget's together, with one notice.
    """
    conditions = list(conditions)
    by_id = {c.condition_id: c for c in conditions}
    open_by_id: dict[str, list[OpenAlert]] = {}
    for alert in open_alerts:
        if alert.condition_id in by_id:
            open_by_id.setdefault(alert.condition_id, []).append(alert)
    raised: list[Raise] = []
    ended: dict[tuple[str, str, str], list[OpenAlert]] = {}
    lapsed: list[tuple[OpenAlert, Condition]] = []
    for condition in conditions:
        existing = open_by_id.get(condition.condition_id, [])
        if condition.period_label is not None:
            key = f"{condition.condition_id}:{condition.period_label}"
            if condition.holds and all(a.alert_key != key for a in existing):
                raised.append(Raise(key, condition))
            for alert in existing:
                if alert.period_end is not None and alert.period_end <= now:
                    ended.setdefault((alert.subject, alert.name, alert.period_label or ""), []).append(alert)
        elif condition.holds and not existing:
            raised.append(Raise(f"{condition.condition_id}:{episodes.get(condition.condition_id, 0) + 1}", condition))
        elif not condition.holds:
            lapsed.extend((alert, condition) for alert in existing)
    resolved = []
    for (_, _, _), group in ended.items():
        group.sort(key=lambda a: -a.severity)
        condition = by_id[group[0].condition_id]
        resolved.append(Resolve(tuple(group), _resolved_message(group, condition), condition.channels))
    for alert, condition in lapsed:
        resolved.append(Resolve((alert,), _resolved_message([alert], condition), condition.channels))
    return Plan(tuple(raised), tuple(resolved))
