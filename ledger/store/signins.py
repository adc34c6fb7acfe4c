"""Dashboard sessions and sign-in attempts, in the ledger's database so that every replica agrees (functions take a session).

A session is found by its cookie's SHA-256; it ends at sign-out, after
`idle` without a request, `absolute` after its sign-in, or when its user is
disabled. Failed attempts are counted per name and per address over a window:
an attempt is noted as failed (and committed) before its password is checked,
one at a time, so attempts in flight together count one another and a burst
cannot outrun the limits; one found right is then marked succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from .access import DashboardUser, SignInAttempt, WebSession
from .credentials import new_token, token_hash

ATTEMPTS_KEPT = timedelta(days=1)  # at least the longest window: older attempts are deleted as new ones come


@dataclass(frozen=True, slots=True)
class Timeouts:
    idle: timedelta
    absolute: timedelta


def start_session(session: Session, user: DashboardUser, now: datetime, address: str | None) -> str:
    """A new session for `user`: its cookie's value (a new one at every sign-in; only its hash is kept)."""
    token = new_token()
    session.add(WebSession(token_hash=token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                           address=(address or "")[:100] or None))
    session.flush()
    return token


def session_user(session: Session, token: str, now: datetime, timeouts: Timeouts) -> DashboardUser | None:
    """The enabled user of an open session, its last request now noted; a session past a timeout is ended."""
    row = session.execute(select(WebSession, DashboardUser).join(DashboardUser, DashboardUser.id == WebSession.user_id)
                          .where(WebSession.token_hash == token_hash(token))).one_or_none()
    if row is None:
        return None
    web_session, user = row
    if web_session.ended_at is not None:
        return None
    if (user.disabled_at is not None or now - web_session.last_seen_at >= timeouts.idle
            or now - web_session.created_at >= timeouts.absolute):
        web_session.ended_at = now
        return None
    web_session.last_seen_at = now
    return user


def end_session(session: Session, token: str, now: datetime) -> DashboardUser | None:
    """End the session of this cookie (if open): its user."""
    row = session.execute(select(WebSession, DashboardUser).join(DashboardUser, DashboardUser.id == WebSession.user_id)
                          .where(WebSession.token_hash == token_hash(token), WebSession.ended_at.is_(None))).one_or_none()
    if row is None:
        return None
    row[0].ended_at = now
    return row[1]


def open_sessions(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).select_from(WebSession)
                          .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None)))


def reserve_attempt(session: Session, name: str, address: str, now: datetime, since: datetime,
                    limits: tuple[int, int]) -> int | None:
    """Note an attempt as failed before its password is checked, unless the failures since `since` already reach
    `limits` (for this name, from this address): its id, or None (refused, and noted nowhere: a refusal is not a
    failure). Commit at once. Attempts in flight together are noted one after another (SQLite: the write lock
    the first DELETE takes; PostgreSQL: a lock on the table), so each counts every one before it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"LOCK TABLE {SignInAttempt.__tablename__} IN SHARE ROW EXCLUSIVE MODE"))
    session.execute(delete(SignInAttempt).where(SignInAttempt.at < now - ATTEMPTS_KEPT))
    failed = select(func.count()).select_from(SignInAttempt).where(SignInAttempt.at >= since,
                                                                   SignInAttempt.succeeded.is_(False))
    by_name = session.scalar(failed.where(SignInAttempt.name_hash == token_hash(name)))
    by_address = session.scalar(failed.where(SignInAttempt.address == address[:100]))
    if by_name >= limits[0] or by_address >= limits[1]:
        return None
    attempt = SignInAttempt(at=now, name_hash=token_hash(name), address=address[:100], succeeded=False)
    session.add(attempt)
    session.flush()
    return attempt.id


def attempt_succeeded(session: Session, attempt_id: int) -> None:
    session.execute(update(SignInAttempt).where(SignInAttempt.id == attempt_id).values(succeeded=True))


def end_all(session: Session, user_id: int, now: datetime) -> int:
    ended = session.execute(update(WebSession).where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
                            .values(ended_at=now))
    return ended.rowcount
