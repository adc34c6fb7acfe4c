"""The dashboard's Starlette app: its routes, the static files, and a clear page (or JSON) for every refusal.

`create_app(settings, viewers, ledger=...)` builds it; `viewers` finds who
is asking (ledger.web.viewer.ViewerSource). Errors never show a traceback:
a bad parameter is a 400 naming it, a refusal a 403, the database away a
503 page from which the dashboard recovers when it is back.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import Settings
from ..errors import DatabaseError
from ..store.engine import Ledger
from .gate import Refused, is_api
from .params import BadQuery
from .rendering import SECURITY_HEADERS, render
from .viewer import ViewerSource

log = logging.getLogger("ledger.web")


def _routes() -> list:
    """Every page's and API route's module contributes its `routes`."""
    from . import (admin, budgets, calls, calls_api, closes, home, oidc, pricing, rate_cards, reconciliation, signin,
                   spend, spend_export)

    routes: list = [Route("/healthz", _health)]
    for module in (home, calls_api, calls, pricing, reconciliation, budgets, closes, rate_cards, spend, spend_export,
                   signin, oidc, admin):
        routes.extend(module.routes)
    routes.append(Mount("/static", StaticFiles(packages=[("ledger.web", "static")]), name="static"))
    return routes


def _health(request) -> Response:
    return Response("ok\n", media_type="text/plain")


def _refusal(request, status: int, title: str, message: str, parameter: str | None = None) -> Response:
    if is_api(request):
        error = {"status": status, "message": message}
        if parameter is not None:
            error["parameter"] = parameter
        return JSONResponse({"error": error}, status_code=status, headers={"Cache-Control": "no-store"})
    return render(request, "error.html", status=status, title=title, message=message, parameter=parameter)


def _bad_query(request, error: BadQuery) -> Response:
    return _refusal(request, 400, "Bad request", str(error), error.parameter)


def _refused(request, error: Refused) -> Response:
    title = {401: "Sign in", 403: "Not allowed", 404: "Not found", 429: "Too many attempts"}.get(error.status, "Refused")
    return _refusal(request, error.status, title, error.message)


def _http(request, error: HTTPException) -> Response:
    message = {404: "there is no such page", 405: "this page does not take that method"}.get(
        error.status_code, error.detail or "refused")
    return _refusal(request, error.status_code, "Not found" if error.status_code == 404 else "Refused", message)


def _database_away(request, error: Exception) -> Response:
    log.warning("the ledger's database could not be read: %s", type(error).__name__)
    return _refusal(request, 503, "The ledger's database cannot be reached",
                    "the ledger's database did not answer; this page works again as soon as it is back")


def _failed(request, error: Exception) -> Response:
    log.exception("a dashboard request failed")
    return _refusal(request, 500, "Something went wrong",
                    "the dashboard could not answer this request; it has been logged")


def create_app(settings: Settings, viewers: ViewerSource, *, ledger: Ledger | None = None) -> Starlette:
    """The dashboard on `ledger` (else the settings' database, which must exist at the current schema)."""
    ledger = ledger or Ledger(settings.database_url, must_exist=True)
    app = Starlette(
        routes=_routes(),
        exception_handlers={
            BadQuery: _bad_query,
            Refused: _refused,
            HTTPException: _http,
            OperationalError: _database_away,
            DBAPIError: _database_away,
            DatabaseError: _database_away,
            Exception: _failed,
        },
    )
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.viewers = viewers
    return app


__all__ = ["create_app", "SECURITY_HEADERS"]
