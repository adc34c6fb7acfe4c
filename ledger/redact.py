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

REDACTED = "sk-[redacted]"
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
_encoded: re.Pattern[str] | None = None  # the known secrets, any character of them percent-encoded (in a URL)
_encoded_bytes: re.Pattern[bytes] | None = None


def _char_or_escape(char: str) -> str:
    if ord(char) > 0xFF:
        return re.escape(char)
    escape = "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in f"{ord(char):02X}")
    return f"(?:{re.escape(char)}|%{escape})"


def _encoded_pattern(known: Iterable[str]) -> str:
    return "|".join("".join(_char_or_escape(char) for char in secret) for secret in known)


def remember(secret: str | bytes | None, *, learned: bool = False) -> None:
    """Redact `secret` literally from now on, in every text of the process (a key from a request: `learned`)."""
    global _known, _known_bytes, _encoded, _encoded_bytes
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
    _known, _known_bytes = tuple(known), tuple(k.encode("latin-1", "replace") for k in known)
    _encoded = re.compile(_encoded_pattern(known))
    _encoded_bytes = re.compile(_encoded_pattern(k for k in known if max(map(ord, k)) <= 0xFF).encode("latin-1"))


def may_hold_secret(raw: bytes, known: Iterable[bytes] = ()) -> bool:
    """A cheap first look (substring searches in C): False means there is certainly nothing to redact."""
    return (b"sk-" in raw or b"sk%" in raw or b"earer" in raw or b"EARER" in raw
            or any(key in raw for key in _known_bytes) or any(key and key in raw for key in known)
            or (b"%" in raw and (_encoded_bytes is not None or any(known))))


def may_hold_key(raw: bytes, key: bytes | None = None) -> bool:
    """The caller's path's first look at a body: "sk-" (maybe percent-encoded), the call's `key`, a remembered secret."""
    if b"sk-" in raw or b"sk%" in raw or (key is not None and key in raw):
        return True
    for known in _known_bytes:
        if known in raw:
            return True
    return b"%" in raw and _encoded_bytes is not None and _encoded_bytes.search(raw) is not None


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every key-shaped part (and every secret known by value) replaced."""
    for key in (*known, *_known):
        if key and key in text:
            text = text.replace(key, REDACTED)
    if "%" in text:
        text = _encoded_sub(text, known, _encoded, str)
    if "sk-" in text or "sk%" in text:
        text = _KEY.sub(REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(_BEARER_REDACTED, text)
    return text


def redact_bytes(raw: bytes, known: Iterable[bytes] = ()) -> bytes:
    """`raw` with every key-shaped part (and every secret known by value) replaced (ASCII in, ASCII out)."""
    for key in (*known, *_known_bytes):
        if key and key in raw:
            raw = raw.replace(key, REDACTED.encode())
    if b"%" in raw:
        raw = _encoded_sub(raw, known, _encoded_bytes, bytes)
    if not (b"sk-" in raw or b"sk%" in raw or b"earer" in raw or b"EARER" in raw):
        return raw
    return _BEARER_BYTES.sub(rb"\1\2[redacted]", _KEY_BYTES.sub(REDACTED.encode(), raw))


def _encoded_sub(text: Any, known: Iterable[Any], pattern: re.Pattern | None, kind: type) -> Any:
    """`text` with the percent-encoded forms of the remembered secrets (and of `known`) replaced."""
    if pattern is not None:
        text = pattern.sub(REDACTED if kind is str else REDACTED.encode(), text)
    for key in known:
        if key:
            key = key if kind is str else key.decode("latin-1")
            source = _encoded_pattern((key,))
            text = re.sub(source if kind is str else source.encode("latin-1"), REDACTED if kind is str else REDACTED.encode(), text)
    return text


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
