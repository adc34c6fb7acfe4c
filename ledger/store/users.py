"""The dashboard's users, their one-time sign-in links and the read API's tokens (functions take a session).

Names, roles and projects are checked here, where they are kept: a bad one is
one ConfigError line. Tokens and links are returned once, when made; only
their hashes are kept (ledger.store.credentials).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..config.dashboard import MAX_PROJECT
from ..errors import ConfigError
from .access import ROLES, ApiToken, DashboardUser, SignInLink
from .credentials import TOKEN_PREFIX, new_token, token_hash
from .signins import end_all

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}", re.ASCII)


def check_name(name: str, what: str = "user") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"not a {what} name: {name[:120]!r} (letters, digits and . _ @ + -, up to 100, "
                          "starting with a letter or digit)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role[:40]!r}: one of {', '.join(ROLES)}")
    return role


def check_projects(projects: Iterable[str] | None) -> frozenset[str] | None:
    """None (every project) or the named ones; a name empty, too long or holding a control character is refused."""
    if projects is None:
        return None
    found = []
    for project in projects:
        if not project or len(project) > MAX_PROJECT or any(ord(c) < 32 or ord(c) == 127 for c in project):
            raise ConfigError(f"not a project name: {project[:120]!r} (1 to {MAX_PROJECT} characters, no control character)")
        found.append(project)
    return frozenset(found) if found else None


def projects_text(projects: frozenset[str] | None) -> str | None:
    return None if projects is None else json.dumps(sorted(projects))


def projects_of(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


# ---------------------------------------------------------------- users


def add_user(session: Session, name: str, role: str, projects: Sequence[str] | None, password_hash: str | None,
             now: datetime, signs_in_with: str = "password") -> DashboardUser:
    check_name(name)
    check_role(role)
    scope = check_projects(projects)
    if user_named(session, name) is not None:
        raise ConfigError(f"there is a user {name!r} already")
    user = DashboardUser(name=name, role=role, projects=projects_text(scope), password_hash=password_hash,
                         signs_in_with=signs_in_with, created_at=now)
    session.add(user)
    session.flush()
    return user


def user_named(session: Session, name: str) -> DashboardUser | None:
    return session.scalars(select(DashboardUser).where(DashboardUser.name == name)).one_or_none()


def existing_user(session: Session, name: str) -> DashboardUser:
    """The user named so; none is one ConfigError line."""
    user = user_named(session, check_name(name))
    if user is None:
        raise ConfigError(f"there is no user {name!r}")
    return user


def users(session: Session) -> list[DashboardUser]:
    return list(session.scalars(select(DashboardUser).order_by(DashboardUser.name)))


def active_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(DashboardUser).where(DashboardUser.disabled_at.is_(None)))


def disable_user(session: Session, name: str, now: datetime) -> int:
    """Disable the user and end every session of theirs: how many were open."""
    user = existing_user(session, name)
    if user.disabled_at is None:
        user.disabled_at = now
    return end_all(session, user.id, now)


def enable_user(session: Session, name: str) -> bool:
    """Enable a disabled user again (their sessions stay ended): whether they were disabled."""
    user = existing_user(session, name)
    was = user.disabled_at is not None
    user.disabled_at = None
    return was


def local_user(session: Session, name: str) -> DashboardUser:
    """The user of the dashboard's own named so (a single sign-on user has no password here)."""
    user = existing_user(session, name)
    if user.signs_in_with != "password":
        raise ConfigError(f"{name} signs in through single sign-on: their provider keeps their password")
    return user


def end_access(session: Session, user: DashboardUser, now: datetime) -> int:
    """End every session of `user` and expire their unused sign-in links (a new password is theirs alone): how many
    sessions were open."""
    session.execute(update(SignInLink).where(SignInLink.user_id == user.id, SignInLink.used_at.is_(None),
                                             SignInLink.expires_at > now).values(expires_at=now))
    return end_all(session, user.id, now)


def set_password(session: Session, user: DashboardUser, password_hash: str) -> None:
    user.password_hash = password_hash


# ---------------------------------------------------------------- one-time sign-in links


def add_link(session: Session, user: DashboardUser, now: datetime, lifetime: timedelta) -> str:
    """A new sign-in link's token for `user`, good once until now + lifetime (only its hash is kept)."""
    token = new_token()
    session.add(SignInLink(token_hash=token_hash(token), user_id=user.id, created_at=now, expires_at=now + lifetime))
    session.flush()
    return token


def link_user(session: Session, token: str, now: datetime) -> DashboardUser | None:
    """The enabled user a link is for, if it is unused and unexpired (it stays unused)."""
    row = session.execute(select(SignInLink, DashboardUser).join(DashboardUser, DashboardUser.id == SignInLink.user_id)
                          .where(SignInLink.token_hash == token_hash(token))).one_or_none()
    if row is None:
        return None
    link, user = row
    if link.used_at is not None or link.expires_at <= now or user.disabled_at is not None:
        return None
    return user


def use_link(session: Session, token: str, now: datetime) -> DashboardUser | None:
    """Mark the link used, in one conditional UPDATE (two requests cannot both use it): its user, or None."""
    user = link_user(session, token, now)
    if user is None:
        return None
    used = session.execute(update(SignInLink).where(SignInLink.token_hash == token_hash(token),
                                                    SignInLink.used_at.is_(None), SignInLink.expires_at > now)
                           .values(used_at=now))
    return user if used.rowcount == 1 else None


# ---------------------------------------------------------------- API tokens


def add_token(session: Session, name: str, role: str, projects: Sequence[str] | None, now: datetime,
              expires_at: datetime | None) -> str:
    """A new API token (returned once; only its hash is kept)."""
    check_name(name, "token")
    check_role(role)
    scope = check_projects(projects)
    if session.scalars(select(ApiToken.id).where(ApiToken.name == name)).first() is not None:
        raise ConfigError(f"there is a token {name!r} already (token names are never reused)")
    token = new_token(TOKEN_PREFIX)
    session.add(ApiToken(name=name, token_hash=token_hash(token), role=role, projects=projects_text(scope),
                         created_at=now, expires_at=expires_at))
    session.flush()
    return token


def tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(session: Session, name: str, now: datetime) -> None:
    found = session.scalars(select(ApiToken).where(ApiToken.name == name)).one_or_none()
    if found is None:
        raise ConfigError(f"there is no token {name!r}")
    if found.revoked_at is None:
        found.revoked_at = now


def token_in_force(session: Session, token: str, now: datetime) -> ApiToken | None:
    """The token's row if it is neither revoked nor expired (its last use noted), else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    found = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).one_or_none()
    if found is None or found.revoked_at is not None or (found.expires_at is not None and found.expires_at <= now):
        return None
    found.last_used_at = now
    return found
