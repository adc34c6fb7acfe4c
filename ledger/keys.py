"""API keys are never stored or logged: a keyed fingerprint names them.

The fingerprint is HMAC-SHA256 of the key under a per-installation secret,
so that nobody holding the ledger can test guesses of a key against it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from . import redact
from .errors import ConfigError

ENV_SECRET = "CREDIT_LEDGER_FINGERPRINT_SECRET"
DEFAULT_SECRET_FILE = "credit-ledger.secret"


def fingerprint(api_key: str, secret: bytes) -> str:
    return hmac.new(secret, api_key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def last4(api_key: str) -> str:
    return api_key[-4:]


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer …` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def load_secret(path: str | Path | None = None) -> bytes:
    """The installation's secret: from the environment, else a 0600 file made on first use."""
    from_env = os.environ.get(ENV_SECRET)
    if from_env:
        if len(from_env) < 16:
            raise ConfigError(f"{ENV_SECRET} must be at least 16 characters")
        redact.remember(from_env)
        return from_env.encode()
    path = Path(path or DEFAULT_SECRET_FILE)
    for _ in range(50):
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            break
        except OSError as exc:
            raise ConfigError(f"cannot read the fingerprint secret {path}: {exc.strerror}") from None
        if text:
            try:
                found = bytes.fromhex(text)
                redact.remember(text)
                return found
            except ValueError:
                raise ConfigError(f"the fingerprint secret {path} is not hex text") from None
        time.sleep(0.01)  # another process is writing it right now
    else:
        raise ConfigError(f"the fingerprint secret {path} is empty")
    secret = secrets.token_bytes(32)
    # Written under a temporary name and linked into place: readers never see half a secret.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create the fingerprint secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
    redact.remember(secret.hex())
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: use theirs
        return load_secret(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the fingerprint secret {path}: {exc.strerror}") from None
    finally:
        os.unlink(tmp)
    return secret
