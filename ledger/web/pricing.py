"""The pricing check (`/pricing`): the calls whose charge differs from the rate card's price and the totals by
pricing class, as `credit-ledger check` gives them, for a period and the viewer's projects.

The findings are listed oldest first up to MAX_ROWS; the totals count them all,
and each class opens the calls page filtered to it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.routing import Route

from ..money import fmt
from ..reports.text import class_totals, finding_rows
from . import figures, params
from .gate import guarded
from .rendering import render

MAX_ROWS = 500


def calls_link(period, zone: str, pricing_class: str) -> str:
    """The calls page filtered to one class over the same period (its `from`/`to`, so any period carries over)."""
    return "/calls?" + urlencode({"from": period.start.isoformat(), "to": period.end.isoformat(), "tz": zone,
                                  "class": pricing_class})


@guarded()
def pricing(request):
    params.only(request, ("period", "from", "to", "tz"))
    zone = params.zone(request, request.app.state.settings.timezone)
    now = figures.utc_now()
    period = params.period(request, zone, now)
    projects = request.state.viewer.projects
    with request.app.state.ledger.session() as session:
        totals = class_totals(session, period.start, period.end, projects)
        rows = finding_rows(session, period.start, period.end, projects, limit=MAX_ROWS)
    links = {t["pricing_class"]: calls_link(period, zone, t["pricing_class"]) for t in totals}
    flagged = sum(t["calls"] for t in totals)
    return render(request, "pricing.html", zone=zone, as_of=now, period=period, totals=totals, rows=rows,
                  links=links, flagged=flagged, limit=MAX_ROWS, fmt=fmt)


routes = [Route("/pricing", pricing, name="pricing")]
