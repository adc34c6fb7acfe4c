"""Secrets never leave in text: anything key-shaped is replaced before it is stored, journalled, logged or printed.

Upstreams (the real API included, as OpenAI-compatible ones do) echo a key in
an error message ("Incorrect API key provided: sk-…"), and callers put text
where they should not. Every text that came from the upstream or from a
request goes through `redact` (or `redact_bytes`) on its way out of the
process's memory; the package's loggers carry `RedactingFilter`. A key known
by value is replaced wherever it appears, whatever its shape: every secret
the process has read (`remember`: account and proxy keys, channel URLs,
secrets and passwords, the fingerprint secret, each as it is read from the
environment) and the key a call is made with (the recorder passes it for that
call's texts, and remembers it for the logs). A key in a URL may come
percent-encoded (`sk%2D…`, `%2d`): the shape rule finds that form too.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable
from urllib.parse import unquote, unquote_to_bytes

REDACTED = "sk-[redacted]"
_REDACTED_BYTES = REDACTED.encode()
# A key: "sk-" and at least 12 characters of a key's alphabet with a digit among them, wherever it
# stands (a key glued to a word before it is still a key), so that words such as "risk-assessment"
# stay as they are. A bearer token: the scheme, then at least 8 characters of a token with a digit.
# In a URL a key's characters may be percent-encoded ("sk%2Dabc", "%2d"): an escape counts as one character.
_KEY_PATTERN = r"sk(?:-|%2[dD])(?=(?:[A-Za-z_\-]|%[0-9A-Fa-f]{2})*[0-9])(?:[A-Za-z0-9_\-]|%[0-9A-Fa-f]{2}){12,}"
_KEY = re.compile(_KEY_PATTERN)
_KEY_BYTES = re.compile(_KEY_PATTERN.encode())
_PLAIN_KEY = re.compile(r"sk-(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{12,}")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?=[A-Za-z._~+/=\-]*[0-9])[A-Za-z0-9._~+/=\-]{8,}")
_BEARER_BYTES = re.compile(rb"(?i)\b(bearer)(\s+)(?=[A-Za-z._~+/=\-]*[0-9])[A-Za-z0-9._~+/=\-]{8,}")
_BEARER_REDACTED = r"\1\2[redacted]"


def key_shaped(text: str) -> bool:
    """Whether `text` as a whole is what redaction finds as a key (a key it would miss, it would leave in the logs)."""
    return _PLAIN_KEY.fullmatch(text) is not None


# Secrets known by value. Shorter ones are not searched for: they would rewrite ordinary words.
MIN_KNOWN = 8
_LEARNED_KEPT = 1024  # keys remembered from requests (configured secrets stay)
_configured: dict[str, None] = {}
_learned: dict[str, None] = {}
_known: tuple[str, ...] = ()  # longest first: a secret that holds another is replaced whole
_known_bytes: tuple[bytes, ...] = ()
_known_unlike_keys: tuple[bytes, ...] = ()  # those that do not start with "sk-"
# A run of URL characters with percent-escapes in it: decoded, it may hold a secret known by value.
_ESCAPED_RUN = re.compile(r"(?:[A-Za-z0-9_.~\-]|%[0-9A-Fa-f]{2})+")
_ESCAPED_RUN_BYTES = re.compile(rb"(?:[A-Za-z0-9_.~\-]|%[0-9A-Fa-f]{2})+")


def remember(secret: str | bytes | None, *, learned: bool = False) -> None:
    """Redact `secret` by value from now on, in every text of the process (a key from a request: `learned`)."""
    global _known, _known_bytes, _known_unlike_keys
    if isinstance(secret, bytes):
        secret = secret.decode("latin-1")
    if not secret or len(secret) < MIN_KNOWN or secret in _configured or secret in _learned:
        return
    if not learned:
        _configured[secret] = None
    else:
        if len(_learned) >= _LEARNED_KEPT:
            del _learned[next(iter(_learned))]
        _learned[secret] = None
    known = sorted({*_configured, *_learned}, key=len, reverse=True)
    _known, _known_bytes = tuple(known), tuple(k.encode("utf-8") for k in known)
    _known_unlike_keys = tuple(k for k in _known_bytes if k[:3] != b"sk-")


def may_hold_secret(raw: bytes, known: Iterable[bytes] = ()) -> bool:
    """A cheap first look (substring searches in C): False means there is certainly nothing to redact."""
    if b"sk-" in raw or b"sk%" in raw or b"earer" in raw or b"EARER" in raw:
        return True
    return may_hold_key(raw, next((key for key in known if key), None))


def may_hold_key(raw: bytes, key: bytes | None = None) -> bool:
    """The caller's path's first look at a body: "sk-" (maybe percent-encoded), the call's `key`, a remembered secret.

    A secret that starts with "sk-" cannot be in a text without "sk-": only
    the others are searched for one by one (substring searches in C)."""
    if b"sk-" in raw:
        return True
    if key is not None and key[:3] != b"sk-" and key in raw:
        return True
    for known in _known_unlike_keys:
        if known in raw:
            return True
    if b"%" not in raw:
        return False
    if b"sk%" in raw:
        return True
    if key is None and not _known_bytes:
        return False
    decoded = unquote_to_bytes(raw)
    return b"sk-" in decoded or (key is not None and key in decoded) or any(known in decoded for known in _known_bytes)


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every key-shaped part (and every secret known by value) replaced."""
    known = (*(key for key in known if key), *_known)
    for key in known:
        if key in text:
            text = text.replace(key, REDACTED)
    if "%" in text and known:
        text = _ESCAPED_RUN.sub(lambda run: _unless_secret(run.group(), unquote(run.group()), known, REDACTED), text)
    if "sk-" in text or "sk%" in text:
        text = _KEY.sub(REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(_BEARER_REDACTED, text)
    return text


def redact_bytes(raw: bytes, known: Iterable[bytes] = ()) -> bytes:
    """`raw` with every key-shaped part (and every secret known by value) replaced (ASCII in, ASCII out)."""
    known = (*(key for key in known if key), *_known_bytes)
    for key in known:
        if key in raw:
            raw = raw.replace(key, _REDACTED_BYTES)
    if b"%" in raw and known:
        raw = _ESCAPED_RUN_BYTES.sub(
            lambda run: _unless_secret(run.group(), unquote_to_bytes(run.group()), known, _REDACTED_BYTES), raw)
    if not (b"sk-" in raw or b"sk%" in raw or b"earer" in raw or b"EARER" in raw):
        return raw
    return _BEARER_BYTES.sub(rb"\1\2[redacted]", _KEY_BYTES.sub(_REDACTED_BYTES, raw))


def _unless_secret(run: Any, decoded: Any, known: tuple, replacement: Any) -> Any:
    """A run of URL characters as it is, or the replacement when, percent-decoded, it holds a known secret."""
    if decoded == run or not any(key in decoded for key in known):
        return run
    return replacement


class RedactingFilter(logging.Filter):
    """Redacts a record's message (its arguments merged in) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: leave it to logging's own error handling
            return True
        cleaned = redact(message)
        if cleaned is not message or record.args:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            text = redact(str(record.exc_info[1]))
            if text != str(record.exc_info[1]):
                record.exc_info, record.exc_text = None, None  # a traceback would print the secret again
                record.msg = f"{record.msg} ({text})"
        return True


_FILTER = RedactingFilter()


def logger(name: str) -> logging.Logger:
    """The package's logger for `name`, with the redacting filter (a logger's filters are not inherited)."""
    found = logging.getLogger(name)
    if _FILTER not in found.filters:
        found.addFilter(_FILTER)
    return found
