"""The overview page (`/`): what the month so far looks like. Its figures are filled by the overview's module."""

from __future__ import annotations

from starlette.routing import Route

from . import params
from .gate import guarded
from .rendering import render


@guarded()
def overview(request):
    params.only(request, ("tz",))
    zone = params.zone(request, request.app.state.settings.timezone)
    return render(request, "home.html", zone=zone)


routes = [Route("/", overview, name="overview")]
