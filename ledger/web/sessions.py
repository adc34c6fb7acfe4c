"""The dashboard's ViewerSource: a session cookie for pages and the API, a bearer token for the API (`/api/`).

The cookie holds a session's 256-bit random token (the database keeps its
SHA-256); it is HttpOnly, SameSite=Lax, and Secure when the request came
over https (said by uvicorn, which believes X-Forwarded-Proto only from
`[dashboard] trusted_proxies`). A session's CSRF token is derived from its
cookie, so it is kept nowhere. Every lookup reads the user's row: a role
changed or a user disabled counts from the next request.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Callable

from ..store.signins import Timeouts, session_user
from ..store.users import projects_of, token_in_force
from .gate import is_api
from .viewer import Viewer

SESSION_COOKIE = "ledger_session"
MAX_COOKIE = 200  # a token is 43 characters; a longer cookie is nobody's


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def csrf_of(cookie: str) -> str:
    """The CSRF token of the session whose cookie is `cookie`: a form posts it back (a page on another site cannot read it)."""
    return hashlib.sha256(b"credit-ledger csrf\0" + cookie.encode("utf-8", "surrogatepass")).hexdigest()


def timeouts(settings) -> Timeouts:
    options = settings.dashboard
    return Timeouts(timedelta(seconds=options.session_idle_seconds), timedelta(seconds=options.session_absolute_seconds))


def client_address(request) -> str:
    """The caller's address as uvicorn gives it (a trusted proxy's X-Forwarded-For already applied)."""
    return request.client.host if request.client is not None else "unknown"


def is_https(request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response, request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(request.app.state.settings.dashboard.session_absolute_seconds),
                        path="/", httponly=True, samesite="lax", secure=is_https(request))


def clear_session_cookie(response, request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))


def session_cookie(request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and len(value) <= MAX_COOKIE else None


def bearer_token(request) -> str | None:
    """The token of `Authorization: Bearer …`, else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token and len(token) <= MAX_COOKIE else None


class SignedInViewers:
    """Finds a request's viewer in the ledger's database: its session (cookie) or, under /api/, its bearer token.

    `clock` gives now (tests move it forward); sign-in uses the same one.
    """

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock

    def viewer_of(self, request) -> Viewer | None:
        ledger = request.app.state.ledger
        now = self.clock()
        if is_api(request) and "authorization" in request.headers:
            token = bearer_token(request)
            if token is None:
                return None
            with ledger.session() as session:
                found = token_in_force(session, token, now)
                if found is None:
                    return None
                return Viewer(found.name, found.role, projects_of(found.projects), csrf="", via="token")
        cookie = session_cookie(request)
        if cookie is None:
            return None
        with ledger.session() as session:
            user = session_user(session, cookie, now, timeouts(request.app.state.settings))
            if user is None:
                return None
            return Viewer(user.name, user.role, projects_of(user.projects), csrf=csrf_of(cookie), via="session")


def now_of(request) -> datetime:
    """Now, by the app's viewer source's clock (the one sessions are timed by)."""
    return getattr(request.app.state.viewers, "clock", utc_now)()
