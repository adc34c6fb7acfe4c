"""Signing in and out: `/login` (a form with `username` and `password`), `/logout`, `/logout-everywhere`, and the
one-time sign-in link `/login/link/TOKEN` that sets a password.

A sign-in makes a new session (the one the browser held, if any, ends); a
wrong name and a wrong password get the same answer; after
`[dashboard] signin_max_failures` failures of one name, or
`signin_max_failures_per_address` from one address, within
`signin_window_seconds`, the answer is 429 without a password being
checked; an attempt counts as failed before its password is checked, so a
burst of attempts at once checks no more passwords than the limits allow.
`next` is followed only to a path of this site. Every sign-in, failed or not,
is in the audit log (a failed one under the name only if it is a user's: a
password typed in the name field is not kept); a refusal by the limits is not,
or a flood of them would fill the log that is never deleted from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from ..errors import ConfigError
from ..store import audit
from ..store.credentials import check_password, hash_password, password_matches
from ..store.signins import attempt_succeeded, end_all, end_session, reserve_attempt, start_session
from ..store.users import NAME, link_user, set_password, use_link, user_named
from .gate import Refused, guarded, require_csrf
from .rendering import render
from .sessions import clear_session_cookie, client_address, now_of, session_cookie, set_session_cookie

WRONG = "wrong name or password"
MAX_FIELD = 1024


def local_path(target: str | None) -> str:
    """`target` if it is a path on this site, else "/": a sign-in never sends anyone to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 or ord(c) == 127 for c in target) or len(target) > 2000:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def _field(form, name: str) -> str:
    value = form.get(name)
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def _same_origin(request) -> bool:
    """A browser names the page a form was posted from: one of another site is refused (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's form (a script's POST): nothing to forge
        return True
    return urlsplit(origin).netloc == request.url.netloc


@dataclass(frozen=True)
class _Outcome:
    status: int  # 303 signed in, 401 wrong, 429 limited
    token: str | None = None


def _sign_in(request, name: str, password: str, previous: str | None) -> _Outcome:
    ledger, options = request.app.state.ledger, request.app.state.settings.dashboard
    address, now = client_address(request), now_of(request)
    since = now - timedelta(seconds=options.signin_window_seconds)
    with ledger.session() as session:  # committed before the password is checked: a burst cannot outrun the limits
        attempt = reserve_attempt(session, name, address, now, since,
                                  (options.signin_max_failures, options.signin_max_failures_per_address))
    if attempt is None:
        return _Outcome(429)  # not audited: a flood of refusals would fill the append-only log
    with ledger.session() as session:
        user = user_named(session, name) if NAME.fullmatch(name) else None
        matches = password_matches(user.password_hash if user is not None else None, password)
        ok = matches and user is not None and user.disabled_at is None
        if not ok:
            reason = "unknown name" if user is None else ("disabled" if matches else "wrong password")
            known = user.name if user is not None else None
            audit.record(session, actor=known or "(unknown name)", action="signin.failed", target=known,
                         address=address, at=now, detail={"reason": reason})
            return _Outcome(401)
        attempt_succeeded(session, attempt)
        if previous is not None:
            end_session(session, previous, now)
        token = start_session(session, user, now, address)
        audit.record(session, actor=user.name, action="signin", target=user.name, address=address, at=now,
                     detail={"with": "password"})
        return _Outcome(303, token)


def _login_page(request, status: int = 200, message: str | None = None, name: str = "", next_path: str = "/"):
    headers = {"Retry-After": str(int(request.app.state.settings.dashboard.signin_window_seconds))} if status == 429 else {}
    response = render(request, "login.html", status=status, message=message, name=name, next=next_path,
                      oidc=request.app.state.settings.dashboard.oidc is not None)
    response.headers.update(headers)
    return response


async def login(request):
    if request.method == "GET":
        return _login_page(request, next_path=local_path(request.query_params.get("next")))
    form = await request.form()
    name, password, next_path = _field(form, "username"), _field(form, "password"), local_path(_field(form, "next"))
    if not _same_origin(request):
        raise Refused("a sign-in must be posted from this site's own form")
    if not name or not password:
        return _login_page(request, 401, WRONG, name if NAME.fullmatch(name) else "", next_path)
    outcome = await run_in_threadpool(_sign_in, request, name, password, session_cookie(request))
    if outcome.status == 429:
        return _login_page(request, 429, "too many failed sign-ins: wait a while, then try again", "", next_path)
    if outcome.status == 401:
        return _login_page(request, 401, WRONG, name if NAME.fullmatch(name) else "", next_path)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, request, outcome.token)
    return response


def _sign_out(request, everywhere: bool) -> None:
    ledger, now, address = request.app.state.ledger, now_of(request), client_address(request)
    cookie = session_cookie(request)
    with ledger.session() as session:
        user = end_session(session, cookie, now) if cookie else None
        if user is None:
            return
        ended = end_all(session, user.id, now) + 1 if everywhere else 1
        audit.record(session, actor=user.name, action="signout.everywhere" if everywhere else "signout",
                     target=user.name, address=address, at=now, detail={"sessions_ended": ended})


def _signed_out(request):
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response


@guarded()
async def logout(request):
    require_csrf(request, await request.form())
    await run_in_threadpool(_sign_out, request, False)
    return _signed_out(request)


@guarded()
async def logout_everywhere(request):
    require_csrf(request, await request.form())
    await run_in_threadpool(_sign_out, request, True)
    return _signed_out(request)


# ---------------------------------------------------------------- the one-time link


def _link_name(request, token: str) -> str | None:
    with request.app.state.ledger.session() as session:
        user = link_user(session, token, now_of(request))
        return None if user is None else user.name


def _use_link(request, token: str, password_hash: str) -> str | None:
    ledger, now, address = request.app.state.ledger, now_of(request), client_address(request)
    with ledger.session() as session:
        user = use_link(session, token, now)
        if user is None:
            return None
        set_password(session, user, password_hash)
        cookie = start_session(session, user, now, address)
        audit.record(session, actor=user.name, action="signin", target=user.name, address=address, at=now,
                     detail={"with": "link", "password": "set"})
        return cookie


async def link(request):
    token = request.path_params["token"][:MAX_FIELD]
    name = await run_in_threadpool(_link_name, request, token)
    if name is None:
        raise Refused("this sign-in link is used, expired or unknown: ask an admin for a new one", 404)
    if request.method == "GET":
        return render(request, "link.html", name=name, message=None)
    form = await request.form()
    if not _same_origin(request):
        raise Refused("a sign-in must be posted from this site's own form")
    password, again = _field(form, "password"), _field(form, "password_again")
    try:
        check_password(password)
        if password != again:
            raise ConfigError("the two passwords differ")
    except ConfigError as error:
        return render(request, "link.html", status=400, name=name, message=str(error))
    cookie = await run_in_threadpool(_use_link, request, token, await run_in_threadpool(hash_password, password))
    if cookie is None:
        raise Refused("this sign-in link is used, expired or unknown: ask an admin for a new one", 404)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, request, cookie)
    return response


@guarded()
def me(request):
    """Who the API takes the caller for (`/api/v1/me`): a script checks its token's name, role and projects here."""
    viewer = request.state.viewer
    return JSONResponse({"name": viewer.name, "role": viewer.role, "via": viewer.via,
                         "projects": None if viewer.projects is None else sorted(viewer.projects)},
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/v1/me", me, name="api_me"),
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/login/link/{token}", link, methods=["GET", "POST"], name="login_link"),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/logout-everywhere", logout_everywhere, methods=["POST"], name="logout_everywhere"),
]
