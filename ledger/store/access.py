"""Who may read the ledger in the dashboard: its users, their sessions, the API's tokens, sign-in attempts, the audit log.

Secrets are kept as hashes only: a password as its Argon2id hash, a session,
a sign-in link or an API token as the SHA-256 of its 256-bit random value
(ledger.store.credentials). The audit log is only ever added to (triggers
refuse an UPDATE or a DELETE of it, migration 0012).
Its tables are on the ledger's one `Base.metadata` once this module is
imported (migrations/env.py and ledger.store.users import it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime

ADMIN, FINANCE, VIEWER = "admin", "finance", "viewer"
ROLES = (ADMIN, FINANCE, VIEWER)  # as ledger.web.viewer names them (a test keeps the two the same)
_ID = BigInteger().with_variant(Integer, "sqlite")


class DashboardUser(Base):
    """A person who signs in to the dashboard; `projects` NULL: every project, else a JSON list of the ones they see."""

    __tablename__ = "dashboard_users"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    projects: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(String(200))  # Argon2id; NULL until a sign-in link sets one
    signs_in_with: Mapped[str] = mapped_column(String(20))  # "password" (its own user) or "oidc" (single sign-on's)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """One sign-in: the session cookie's SHA-256, never the cookie; ended by sign-out, timeouts or disabling its user."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("dashboard_users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    address: Mapped[str | None] = mapped_column(String(100))


class SignInLink(Base):
    """A one-time sign-in link (`users add --link`): its token's SHA-256, good once, until `expires_at`."""

    __tablename__ = "sign_in_links"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("dashboard_users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token of the read API: its SHA-256 only, a role and projects like a user's, an expiry."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    projects: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignInAttempt(Base):
    """One sign-in attempt, for the rate limits every replica reads alike; the name as its SHA-256 (a password
    typed in the name field is not kept), kept only as long as the limits' window."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_name_hash_at", "name_hash", "at"),
        Index("ix_sign_in_attempts_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    name_hash: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(100))
    succeeded: Mapped[bool] = mapped_column(Boolean)


class AuditEntry(Base):
    """Who did what, when and from where: sign-ins, exports, closes, user and token changes. Only ever added to."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(400))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON object
    address: Mapped[str | None] = mapped_column(String(100))
