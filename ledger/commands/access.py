"""`users add/list/disable/enable/password` and `tokens add/list/revoke`: who may read the ledger in the dashboard and its API.

A password is read from standard input (one line) and kept as its Argon2id
hash; a token or a sign-in link is printed once and kept as its SHA-256. Every
change is written to the audit log in the same transaction, by `cli:USER@HOST`.
"""

from __future__ import annotations

import getpass
import re
import socket
from datetime import datetime, timedelta, timezone
from typing import Sequence, TextIO

from ..config import Settings
from ..errors import ConfigError
from ..store import audit
from ..store import users as store
from ..store.credentials import check_password, hash_password
from ..store.engine import Ledger
from ..store.users import projects_of
from . import EXIT_OK

LINK_LIFETIME = timedelta(hours=24)
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
MAX_TOKEN_DAYS = 3660


def actor() -> str:
    """Who ran the command, as the audit log names them."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        who = "unknown"
    return f"cli:{who}@{socket.gethostname()}"


def lifetime(text: str) -> timedelta | None:
    """`--expires`: 90d, 12h, or `never`."""
    if text == "never":
        return None
    match = re.fullmatch(r"([0-9]{1,5})([dh])", text, re.ASCII)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"--expires: not a lifetime: {text[:40]!r} (use 90d, 12h or never)")
    span = timedelta(days=int(match.group(1))) if match.group(2) == "d" else timedelta(hours=int(match.group(1)))
    if span > timedelta(days=MAX_TOKEN_DAYS):
        raise ConfigError(f"--expires: at most {MAX_TOKEN_DAYS}d")
    return span


def _read_password(password_input: TextIO) -> str:
    line = password_input.readline()
    if line.endswith("\n"):
        line = line[:-1].removesuffix("\r")
    return check_password(line)


def _projects(projects: Sequence[str] | None) -> str:
    return "every project" if not projects else ", ".join(sorted(projects))


def users_add(settings: Settings, out: TextIO, *, name: str, role: str, projects: Sequence[str] | None,
              password_input: TextIO | None = None, link: bool = False, now: datetime | None = None) -> int:
    """Add a user with the password read from `password_input` (one line), or with a one-time sign-in link printed."""
    now = now or datetime.now(timezone.utc)
    store.check_name(name)
    store.check_role(role)
    store.check_projects(projects)
    password_hash = None if link else hash_password(_read_password(password_input))
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        user = store.add_user(session, name, role, projects or None, password_hash, now)
        token = store.add_link(session, user, now, LINK_LIFETIME) if link else None
        audit.record(session, actor=actor(), action="user.add", target=name, at=now,
                     detail={"role": role, "projects": sorted(projects) if projects else None,
                             "with": "link" if link else "password"})
    print(f"user {name} added: {role}, {_projects(projects)}", file=out)
    if token is not None:
        print(f"sign-in link (good once, for {int(LINK_LIFETIME.total_seconds()) // 3600} hours; it sets the password): "
              f"{settings.dashboard.url()}/login/link/{token}", file=out)
    return EXIT_OK


def users_list(settings: Settings, out: TextIO) -> int:
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        rows = store.users(session)
    if not rows:
        print("no users (credit-ledger users add NAME --role R adds one)", file=out)
    for user in rows:
        projects = projects_of(user.projects)
        state = f"disabled {user.disabled_at:%Y-%m-%d %H:%M}Z" if user.disabled_at else (
            "single sign-on" if user.signs_in_with == "oidc" else
            "active" if user.password_hash else "waiting for its sign-in link")
        print(f"{user.name}\t{user.role}\t{_projects(projects)}\t{state}", file=out)
    return EXIT_OK


def users_disable(settings: Settings, out: TextIO, *, name: str, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        ended = store.disable_user(session, name, now)
        audit.record(session, actor=actor(), action="user.disable", target=name, at=now,
                     detail={"sessions_ended": ended})
    print(f"user {name} disabled; {ended} session(s) ended", file=out)
    return EXIT_OK


def users_enable(settings: Settings, out: TextIO, *, name: str, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        was = store.enable_user(session, name)
        audit.record(session, actor=actor(), action="user.enable", target=name, at=now, detail={"was_disabled": was})
    print(f"user {name} enabled" if was else f"user {name} was not disabled", file=out)
    return EXIT_OK


def users_password(settings: Settings, out: TextIO, *, name: str, password_input: TextIO | None = None,
                   link: bool = False, now: datetime | None = None) -> int:
    """Set a user's new password (read from `password_input`, one line), or print a one-time link that sets it; every
    session of theirs ends, and their earlier unused links no longer sign in."""
    now = now or datetime.now(timezone.utc)
    store.check_name(name)
    password_hash = None if link else hash_password(_read_password(password_input))
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        user = store.local_user(session, name)
        ended = store.end_access(session, user, now)
        if link:
            token = store.add_link(session, user, now, LINK_LIFETIME)
        else:
            store.set_password(session, user, password_hash)
            token = None
        audit.record(session, actor=actor(), action="user.password", target=name, at=now,
                     detail={"with": "link" if link else "password", "sessions_ended": ended})
    if token is None:
        print(f"user {name}: password set; {ended} session(s) ended", file=out)
    else:
        print(f"user {name}: {ended} session(s) ended; sign-in link (good once, for "
              f"{int(LINK_LIFETIME.total_seconds()) // 3600} hours; it sets the password): "
              f"{settings.dashboard.url()}/login/link/{token}", file=out)
    return EXIT_OK


def tokens_add(settings: Settings, out: TextIO, *, name: str, role: str, projects: Sequence[str] | None,
               expires: str = "90d", now: datetime | None = None) -> int:
    """Add an API token and print it, once (only its hash is kept)."""
    now = now or datetime.now(timezone.utc)
    span = lifetime(expires)
    expires_at = None if span is None else now + span
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        token = store.add_token(session, name, role, projects or None, now, expires_at)
        audit.record(session, actor=actor(), action="token.add", target=name, at=now,
                     detail={"role": role, "projects": sorted(projects) if projects else None,
                             "expires_at": expires_at.isoformat() if expires_at else None})
    until = f"until {expires_at:%Y-%m-%d %H:%M}Z" if expires_at else "without expiry"
    print(f"token {name} added: {role}, {_projects(projects)}, {until}. It is shown this once:", file=out)
    print(token, file=out)
    return EXIT_OK


def tokens_list(settings: Settings, out: TextIO, *, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        rows = store.tokens(session)
    if not rows:
        print("no tokens (credit-ledger tokens add NAME --role R adds one)", file=out)
    for token in rows:
        if token.revoked_at is not None:
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}Z"
        elif token.expires_at is not None and token.expires_at <= now:
            state = f"expired {token.expires_at:%Y-%m-%d %H:%M}Z"
        else:
            state = f"until {token.expires_at:%Y-%m-%d %H:%M}Z" if token.expires_at else "without expiry"
        used = f"last used {token.last_used_at:%Y-%m-%d %H:%M}Z" if token.last_used_at else "never used"
        print(f"{token.name}\t{token.role}\t{_projects(projects_of(token.projects))}\t{state}\t{used}", file=out)
    return EXIT_OK


def tokens_revoke(settings: Settings, out: TextIO, *, name: str, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        store.revoke_token(session, name, now)
        audit.record(session, actor=actor(), action="token.revoke", target=name, at=now)
    print(f"token {name} revoked", file=out)
    return EXIT_OK
