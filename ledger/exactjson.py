"""JSON with exact amounts: read with Decimal numbers (NaN and Infinity refused), written with plain decimals.

The one decoder for amounts the API sends and the one encoder for amounts the
ledger prints: a credit is never a float on the way in, and always the same
text on the way out (`money.fmt`: no exponent, no trailing zeros).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .money import fmt


class NonFiniteNumber(ValueError):
    """NaN or Infinity where a number was expected: no amount can be made of it."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(name)


EXACT_OPTIONS = {"parse_float": Decimal, "parse_constant": _refuse_constant}
_EXACT = json.JSONDecoder(**EXACT_OPTIONS)
_PLAIN = json.JSONDecoder()
_BOM_OR_WIDE = (b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")


def _load(raw: bytes | str, decoder: json.JSONDecoder, options: dict) -> Any:
    """json.loads(raw, **options) through one prepared decoder (json.loads with options builds one a call).

    UTF-8 bytes are decoded here as json.loads would; anything else (a BOM,
    UTF-16 or UTF-32) goes through json.loads itself.
    """
    if isinstance(raw, (bytes, bytearray)):
        if raw.startswith(_BOM_OR_WIDE) or (len(raw) > 1 and not (raw[0] and raw[1])):
            return json.loads(raw, **options)
        raw = raw.decode("utf-8", "surrogatepass")
    try:  # the scanner straight away: decode() adds two regex matches for the whitespace around
        value, end = decoder.scan_once(raw, 0)
    except StopIteration:
        return decoder.decode(raw)  # leading whitespace, or the error decode() raises
    return value if end == len(raw) else decoder.decode(raw)


def loads(raw: bytes | str) -> Any:
    """json.loads with Decimal numbers; NaN/Infinity raise NonFiniteNumber (a ValueError), as does bad JSON."""
    return _load(raw, _EXACT, EXACT_OPTIONS)


def loads_plain(raw: bytes | str) -> Any:
    """json.loads, through a prepared decoder: for text where no amount is read (a request's options)."""
    return _load(raw, _PLAIN, {})


def default(value: Any) -> Any:
    """`json.dumps(default=...)`: Decimals as exact decimal strings, dates and times in ISO 8601."""
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any, **options: Any) -> str:
    """json.dumps with `default` above: the one spelling of an amount in every JSON the ledger writes."""
    return json.dumps(value, default=default, **options)
