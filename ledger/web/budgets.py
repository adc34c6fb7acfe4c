"""Budgets and alerts (`/budgets`, `/api/v1/budgets`): each budget's state, spend, limit and hard limit, and the
alert history with deliveries and attempts, as `credit-ledger budgets` and `credit-ledger alerts` give them.

A viewer limited to projects sees the budgets whose scope names one of them and
their alerts only (`figures.budgets_of`): the sums and the alerts' query are made
for those budgets alone.
"""

from __future__ import annotations

from starlette.routing import Route

from ..money import fmt
from ..reports.budgets import budgets_json
from ..store.alerts import alert_history
from . import charts, figures, params
from .figures import ACCOUNT_MONEY, budget_names, evaluation, json_text
from .gate import guarded
from .rendering import render


def delivery_state(delivery, attempts) -> str:
    """A delivery's state in the words of `credit-ledger alerts`."""
    if delivery.status != "delivered":
        return f"pending ({delivery.last_error or 'not tried yet'})"
    return "sent, unconfirmed" if attempts and attempts[-1].outcome == "unconfirmed" else "delivered"


def budget_chart(statuses) -> charts.Chart:
    """Each budget's spend beside its limit (the table beside it holds the same figures)."""
    return charts.horizontal_bars(
        "budgets-chart", "Each budget's spend and limit, in credits", [s.budget.name for s in statuses],
        [("spent", [s.spent for s in statuses]), ("limit", [s.limit for s in statuses])])


@guarded()
def budgets_page(request):
    params.only(request, ("tz", "since"))
    zone = params.zone(request, request.app.state.settings.timezone)
    since = params.instant(request, "since")
    viewer = request.state.viewer
    now = figures.utc_now()
    found = evaluation(request, viewer, now)
    with request.app.state.ledger.session() as session:
        history = alert_history(session, since, budgets=budget_names(request.app.state.settings, viewer))
        alerts = [(h.alert, [(d, attempts, delivery_state(d, attempts)) for d, attempts in h.deliveries])
                  for h in history]
        return render(request, "budgets.html", zone=zone, as_of=now, statuses=found.budgets,
                      balances=found.balances, alerts=alerts, since=since, fmt=fmt,
                      chart=budget_chart(found.budgets) if found.budgets else None, account_money=ACCOUNT_MONEY)


@guarded()
def budgets_api(request):
    """`credit-ledger budgets --json` (a limited viewer: its budgets, and no balances)."""
    params.only(request, ())
    found = evaluation(request, request.state.viewer, figures.utc_now())
    return json_text(budgets_json(found.at, found.budgets, found.balances))


routes = [Route("/budgets", budgets_page, name="budgets"), Route("/api/v1/budgets", budgets_api, name="api-budgets")]
