"""Reconciliation (`/reconciliation`, `/api/v1/reconciliation`): each account's windows between balance snapshots,
their tolerance, statuses and explanations, the cumulative line and the verdict, as `credit-ledger reconcile`
gives them for `from`/`to`.

The API answers what `credit-ledger reconcile --json [--from F] [--to T]` writes.
The page, given neither bound, shows the last DEFAULT_DAYS days (a window a
snapshot, every snapshot ever is too many rows for a page) and names the
command that gives the same. Account money: not for a viewer limited to
projects (a 403 saying why).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from starlette.routing import Route

from ..accounting.reconcile import ROUNDING_RULES
from ..money import fmt
from ..reports.text import explanations_text
from ..store.reconciliation import reconcile_as_configured
from . import figures, params
from .figures import json_text, refuse_limited
from .gate import guarded
from .params import BadQuery
from .rendering import render

DEFAULT_DAYS = 7


def bounds(request) -> tuple[datetime | None, datetime | None]:
    start, end = params.instant(request, "from"), params.instant(request, "to")
    if start is not None and end is not None and start >= end:
        raise BadQuery("from", "must come before to")
    return start, end


def unrecorded(result) -> dict[str, object]:
    """Each account's unrecorded spend, from its cumulative line's explanations (None: none found)."""
    found = {}
    for account in result.accounts:
        line = account.cumulative
        part = line.explanation("unrecorded_spend") if line is not None else None
        found[account.account] = None if part is None else part.credits
    return found


@guarded()
def reconciliation_page(request):
    params.only(request, ("from", "to", "tz"))
    zone = params.zone(request, request.app.state.settings.timezone)
    start, end = bounds(request)
    refuse_limited(request.state.viewer, "the reconciliation")
    now = figures.utc_now()
    defaulted = start is None and end is None
    if defaulted:
        start = now - timedelta(days=DEFAULT_DAYS)
    settings = request.app.state.settings
    result = reconcile_as_configured(settings, request.app.state.ledger, start, end)
    command = "credit-ledger reconcile" + "".join(
        f" --{name} {value.strftime('%Y-%m-%dT%H:%M:%SZ')}" for name, value in (("from", start), ("to", end)) if value)
    rows = [(w, explanations_text(w.explanations)) for w in result.rows()]
    return render(request, "reconciliation.html", zone=zone, as_of=now, result=result, rows=rows, start=start, end=end,
                  defaulted=defaulted, default_days=DEFAULT_DAYS, command=command, unrecorded=unrecorded(result),
                  rule=ROUNDING_RULES[result.rounding], fmt=fmt)


@guarded()
def reconciliation_api(request):
    """`credit-ledger reconcile --json [--from] [--to]`; 403 JSON for a viewer limited to projects."""
    params.only(request, ("from", "to"))
    start, end = bounds(request)
    refuse_limited(request.state.viewer, "the reconciliation")
    result = reconcile_as_configured(request.app.state.settings, request.app.state.ledger, start, end)
    return json_text(result.to_json() + "\n")


routes = [Route("/reconciliation", reconciliation_page, name="reconciliation"),
          Route("/api/v1/reconciliation", reconciliation_api, name="api-reconciliation")]
