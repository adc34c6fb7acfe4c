"""The admin page (`/admin`, admins only): users, API tokens, the audit log; disabling a user, revoking a token.

Lists show no secret: a token by its name, role and dates, never its value
or hash. Each change posts the session's CSRF token and is audited.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..errors import ConfigError
from ..store import audit as audit_log
from ..store.users import disable_user, projects_of, revoke_token, tokens, users
from . import audit, params
from .gate import Refused, guarded, require_csrf
from .rendering import render
from .sessions import now_of
from .viewer import ADMINISTER

AUDIT_PAGE = 100


@guarded(ADMINISTER)
def admin(request):
    params.only(request, ("before", "tz"))
    zone = params.zone(request, request.app.state.settings.timezone)
    before = params.whole(request, "before", 0, 1, 2**62) or None
    now = now_of(request)
    with request.app.state.ledger.session() as session:
        people = [(user, projects_of(user.projects)) for user in users(session)]
        keys = [(token, projects_of(token.projects)) for token in tokens(session)]
        entries = [(entry, audit_log.detail_of(entry)) for entry in audit_log.entries(session, AUDIT_PAGE, before)]
    older = entries[-1][0].id if len(entries) == AUDIT_PAGE else None
    return render(request, "admin.html", zone=zone, people=people, keys=keys, entries=entries, older=older, now=now)


def _change(request, action: str, name: str) -> None:
    with request.app.state.ledger.session() as session:
        try:
            if action == "user.disable":
                detail = {"sessions_ended": disable_user(session, name, now_of(request))}
            else:
                revoke_token(session, name, now_of(request))
                detail = None
        except ConfigError as error:
            raise Refused(str(error), 404) from None
        audit.record(request, action, name, detail, session=session)


@guarded(ADMINISTER)
async def disable(request):
    require_csrf(request, await request.form())
    await run_in_threadpool(_change, request, "user.disable", request.path_params["name"])
    return RedirectResponse("/admin", status_code=303)


@guarded(ADMINISTER)
async def revoke(request):
    require_csrf(request, await request.form())
    await run_in_threadpool(_change, request, "token.revoke", request.path_params["name"])
    return RedirectResponse("/admin", status_code=303)


routes = [
    Route("/admin", admin, name="admin"),
    Route("/admin/users/{name}/disable", disable, methods=["POST"], name="admin_disable_user"),
    Route("/admin/tokens/{name}/revoke", revoke, methods=["POST"], name="admin_revoke_token"),
]
