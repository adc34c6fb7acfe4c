"""The gate every route passes: a viewer found (else sign-in or 401), its role allowed, a form's CSRF token checked.

    @guarded()                  a page any signed-in viewer may read
    @guarded(CLOSE)             a form only finance may post
    @guarded(api=True)          a read API route (a bearer token or a session; 401 JSON, never a redirect)

Endpoints are plain functions (run in a thread: the ledger's queries block) or
coroutines (a form's body is awaited, then the work is sent to a thread).
"""

from __future__ import annotations

import functools
import hmac
import inspect
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from .viewer import READ, Viewer


class Refused(Exception):
    """A request the viewer may not make: 403 with `message`."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def is_api(request) -> bool:
    return request.url.path.startswith("/api/")


def unauthenticated(request) -> Response:
    if is_api(request):
        return JSONResponse({"error": {"status": 401, "message": "sign in or send a bearer token"}}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="credit-ledger"', "Cache-Control": "no-store"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _admit(request, action: str) -> Viewer | Response:
    viewer = request.app.state.viewers.viewer_of(request)
    if viewer is None:
        return unauthenticated(request)
    if not viewer.may(action):
        raise Refused(f"your role ({viewer.role}{', limited to some projects' if viewer.limited else ''}) "
                      f"may not do this")
    request.state.viewer = viewer
    return viewer


def guarded(action: str = READ):
    """The endpoint runs only for a viewer who may do `action`."""

    def wrap(endpoint):
        if inspect.iscoroutinefunction(endpoint):
            @functools.wraps(endpoint)
            async def run_async(request):
                admitted = await run_in_threadpool(_admit, request, action)
                return admitted if isinstance(admitted, Response) else await endpoint(request)

            return run_async

        @functools.wraps(endpoint)
        def run(request):
            admitted = _admit(request, action)
            return admitted if isinstance(admitted, Response) else endpoint(request)

        return run

    return wrap


def require_csrf(request, form) -> None:
    """A form's `csrf` field must be its session's token (a bearer token posts no forms)."""
    viewer: Viewer = request.state.viewer
    sent = form.get("csrf")
    if not viewer.csrf or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), viewer.csrf.encode()):
        raise Refused("the form's CSRF token is missing or wrong: reload the page and send it again")
