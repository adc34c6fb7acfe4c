"""How the dashboard's secrets are made and kept: passwords as Argon2id hashes, random tokens as their SHA-256.

A session cookie, a sign-in link and an API token are 256 random bits
(`secrets.token_urlsafe(32)`): a plain SHA-256 of one cannot be reversed or
guessed, so it is what the database keeps and what a lookup matches (a
lookup by the hash leaks nothing of the token through its timing). A
password is people's choice, so it gets Argon2id (argon2-cffi's RFC 9106
low-memory profile), compared by argon2's own constant-time check.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import ConfigError

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
TOKEN_PREFIX = "clt_"  # an API token says what it is (a secret scanner can find one pasted where it should not be)

_HASHER = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4
# Checked when the name is unknown, so that an unknown name costs what a known one does (no timing oracle).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def check_password(password: str) -> str:
    """The password as typed (one line), or ConfigError saying what is wrong with it, never the password."""
    if not password:
        raise ConfigError("the password is empty (give it on standard input, one line)")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"the password is too long: at most {MAX_PASSWORD} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise ConfigError("the password holds a control character")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made of; a user without a password (or none) matches nothing."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a random token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
