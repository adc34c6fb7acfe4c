"""Secrets never leave in text: anything key-shaped is replaced before it is stored, journalled, logged or printed.

Upstreams (the real API included, as OpenAI-compatible ones do) echo a key in
an error message ("Incorrect API key provided: sk-…"), and callers put text
where they should not. Every text that came from the upstream or from a
request goes through `redact` (or `redact_bytes`) on its way out of the
process's memory; the package's loggers carry `RedactingFilter`. A key known
by value (the one a poll was made with) is replaced wherever it appears,
whatever its shape.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable

REDACTED = "sk-[redacted]"
# A key: "sk-" and at least 12 characters of a key's alphabet with a digit among them, wherever it
# stands (a key glued to a word before it is still a key), so that words such as "risk-assessment"
# stay as they are. A bearer token: the scheme, then at least 8 characters of a token with a digit.
_KEY = re.compile(r"sk-(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{12,}")
_KEY_BYTES = re.compile(rb"sk-(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{12,}")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?=[A-Za-z._~+/=\-]*[0-9])[A-Za-z0-9._~+/=\-]{8,}")
_BEARER_BYTES = re.compile(rb"(?i)\b(bearer)(\s+)(?=[A-Za-z._~+/=\-]*[0-9])[A-Za-z0-9._~+/=\-]{8,}")
_BEARER_REDACTED = r"\1\2[redacted]"


def key_shaped(text: str) -> bool:
    """Whether `text` as a whole is what redaction finds as a key (a key it would miss, it would leave in the logs)."""
    return _KEY.fullmatch(text) is not None


def may_hold_secret(raw: bytes) -> bool:
    """A cheap first look (substring searches in C): False means there is certainly nothing to redact."""
    return b"sk-" in raw or b"earer" in raw or b"EARER" in raw


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every key-shaped part (and every known key) replaced."""
    for key in known:
        if key and key in text:
            text = text.replace(key, REDACTED)
    if "sk-" in text:
        text = _KEY.sub(REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(_BEARER_REDACTED, text)
    return text


def redact_bytes(raw: bytes) -> bytes:
    """`raw` with every key-shaped part replaced (ASCII in, ASCII out: JSON stays JSON)."""
    if not may_hold_secret(raw):
        return raw
    return _BEARER_BYTES.sub(rb"\1\2[redacted]", _KEY_BYTES.sub(REDACTED.encode(), raw))


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
