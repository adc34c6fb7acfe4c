"""Single sign-on through an OpenID Connect provider (`[dashboard.oidc]`): Authlib for the authorization-code flow
with PKCE, joserfc for the ID token (signature from the provider's JWKS, issuer, audience, expiry, nonce).

`/login/oidc` sends the browser to the provider with a fresh state, nonce and
PKCE verifier, kept in a short-lived HttpOnly cookie; `/login/oidc/callback`
checks the state, trades the code for tokens, checks the ID token and maps
its groups claim to a role (admin, then finance, then viewer; failing those, the
projects of the user's `project_groups`, as a viewer of them only). The user is
made (without a password) or updated to that role at each sign-in, with no
cap on their number; the name of a user of the dashboard's own (`users add`, even one whose sign-in link
is unused) is never taken over.
"""

from __future__ import annotations

import base64
import hmac
import os
from datetime import datetime

from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..config.dashboard import OidcSettings
from ..store import audit
from ..store.credentials import new_token
from ..store.signins import start_session
from ..store.users import NAME, add_user, check_projects, projects_text, user_named
from .gate import Refused
from .sessions import client_address, is_https, now_of, set_session_cookie
from .signin import local_path

STATE_COOKIE = "ledger_oidc"
STATE_SECONDS = 600
TIMEOUT_SECONDS = 10.0


def _options(request) -> OidcSettings:
    options = request.app.state.settings.dashboard.oidc
    if options is None:
        raise Refused("single sign-on is not configured here ([dashboard.oidc])", 404)
    return options


def _redirect_uri(request) -> str:
    base = request.app.state.settings.dashboard.public_url or str(request.base_url).rstrip("/")
    return f"{base}/login/oidc/callback"


def _client(request, options: OidcSettings) -> OAuth2Client:
    secret = os.environ.get(options.client_secret_env)
    if not secret:
        raise Refused(f"single sign-on is not ready: ${options.client_secret_env} (the client secret) is not set", 503)
    return OAuth2Client(options.client_id, secret, scope=options.scope, redirect_uri=_redirect_uri(request),
                        code_challenge_method="S256", timeout=TIMEOUT_SECONDS)


def _metadata(client: OAuth2Client, options: OidcSettings) -> dict:
    answer = client.request("GET", f"{options.issuer}/.well-known/openid-configuration", withhold_token=True)
    answer.raise_for_status()
    found = answer.json()
    if found.get("issuer") != options.issuer:
        raise Refused("the provider's discovery document names another issuer", 502)
    return found


def _start(request) -> tuple[str, str]:
    options = _options(request)
    with _client(request, options) as client:
        metadata = _metadata(client, options)
        state, nonce, verifier = new_token(), new_token(), new_token() + new_token()
        url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=state, nonce=nonce,
                                                 code_verifier=verifier)
    return url, f"{state}.{nonce}.{verifier}"


async def start(request):
    try:
        url, cookie = await run_in_threadpool(_start, request)
    except Refused:
        raise
    except Exception as error:  # the provider away or answering nonsense: a clear page, not a traceback
        raise Refused(f"the sign-on provider could not be reached ({type(error).__name__})", 502) from None
    target = base64.urlsafe_b64encode(local_path(request.query_params.get("next")).encode()).decode()
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(STATE_COOKIE, f"{cookie}.{target}", max_age=STATE_SECONDS, path="/login/oidc",
                        httponly=True, samesite="lax", secure=is_https(request))
    return response


def _claims(request, options: OidcSettings, code: str, nonce: str, verifier: str, now: datetime) -> dict:
    with _client(request, options) as client:
        metadata = _metadata(client, options)
        token = client.fetch_token(metadata["token_endpoint"], code=code, code_verifier=verifier,
                                   grant_type="authorization_code")
        keys = client.request("GET", metadata["jwks_uri"], withhold_token=True)
        keys.raise_for_status()
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise Refused("the sign-on provider sent no ID token", 502)
    decoded = jwt.decode(id_token, KeySet.import_key_set(keys.json()), algorithms=["RS256", "ES256", "PS256"])
    jwt.JWTClaimsRegistry(now=int(now.timestamp()), leeway=60, iss={"essential": True, "value": options.issuer},
                          aud={"essential": True, "value": options.client_id},
                          nonce={"essential": True, "value": nonce}).validate(decoded.claims)
    return decoded.claims


def _refusal(options: OidcSettings, name, access, user) -> tuple[str, str] | None:
    """(reason, message) when these claims may not sign in, else None."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return "name", f"the provider's {options.name_claim} claim is not a name the dashboard takes"
    if access is None:
        return "groups", "none of your groups is given a role in this dashboard: ask its admin"
    if user is not None and user.signs_in_with != "oidc":
        return "local user", f"{name} is a user of the dashboard's own: sign in with the password"
    if user is not None and user.disabled_at is not None:
        return "disabled", "this user is disabled"
    return None


def _sign_in(request, options: OidcSettings, claims: dict) -> str:
    """A session for the user the claims name, made or given the groups' role and projects now; a refusal is audited,
    then raised."""
    ledger, now, address = request.app.state.ledger, now_of(request), client_address(request)
    name = claims.get(options.name_claim)
    groups = claims.get(options.groups_claim)
    access = options.access_of(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else None
    with ledger.session() as session:
        user = user_named(session, name) if isinstance(name, str) and NAME.fullmatch(name) else None
        refusal = _refusal(options, name, access, user)
        if refusal is not None:
            audit.record(session, actor=name if user is not None else "(unknown name)", action="signin.failed",
                         target=user.name if user is not None else None, address=address, at=now,
                         detail={"with": "oidc", "reason": refusal[0]})
            cookie = None
        else:
            role, projects = access
            if user is None:
                user = add_user(session, name, role, projects, None, now, signs_in_with="oidc")
            else:
                user.role, user.projects = role, projects_text(check_projects(projects))
            cookie = start_session(session, user, now, address)
            audit.record(session, actor=name, action="signin", target=name, address=address, at=now,
                         detail={"with": "oidc", "role": role, "projects": None if projects is None else sorted(projects)})
    if cookie is None:
        raise Refused(refusal[1])
    return cookie


def _next_of(target: str) -> str:
    try:
        return local_path(base64.urlsafe_b64decode(target.encode("ascii")).decode("utf-8"))
    except (ValueError, UnicodeError):
        return "/"


async def callback(request):
    options = _options(request)
    parts = (request.cookies.get(STATE_COOKIE) or "").split(".")
    code, state = request.query_params.get("code"), request.query_params.get("state")
    if len(parts) != 4 or not code or not state or not hmac.compare_digest(state.encode(), parts[0].encode()):
        raise Refused("this sign-on answer does not belong to a sign-in started here: sign in again", 400)
    _, nonce, verifier, target = parts
    try:
        claims = await run_in_threadpool(_claims, request, options, code, nonce, verifier, now_of(request))
    except Refused:
        raise
    except JoseError as error:
        raise Refused(f"the provider's ID token is not valid here ({type(error).__name__})", 401) from None
    except Exception as error:
        raise Refused(f"the sign-on provider could not complete the sign-in ({type(error).__name__})", 502) from None
    cookie = await run_in_threadpool(_sign_in, request, options, claims)
    response = RedirectResponse(_next_of(target), status_code=303)
    set_session_cookie(response, request, cookie)
    response.delete_cookie(STATE_COOKIE, path="/login/oidc")
    return response


routes = [
    Route("/login/oidc", start, name="login_oidc"),
    Route("/login/oidc/callback", callback, name="login_oidc_callback"),
]
