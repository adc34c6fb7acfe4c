"""Cells every writer shares: text that no spreadsheet runs as a formula, exact amounts as plain text.

`csv_cell` is the one rule against formula injection (OWASP): text from the
ledger (a project, a user, a tag: caller-controlled) that starts with `=`,
`+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so Excel,
LibreOffice and Google Sheets show it as text. Numbers the ledger formats
itself are never passed through it. The caches here make the streamed
writers fast: a project, user, model or amount recurs on many rows and is
formatted once (each cache is cleared past a few thousand entries: memory
stays flat whatever the row count).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from ..money import fmt
from ..terminal import cell

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(FORMULA_STARTS)
_CSV_SPECIAL = re.compile(r'[",\r\n]')
CACHE_LIMIT = 20_000


def neutral(text: str) -> str:
    """Text a spreadsheet shows as text: a leading `'` where it would start a formula."""
    return "'" + text if text and text[0] in _FORMULA_FIRST else text


def csv_cell(value: Any) -> str:
    """A value as CSV text that no spreadsheet runs: text neutralised, numbers and times as the ledger writes them."""
    if isinstance(value, str):
        return neutral(value)
    if isinstance(value, dict):
        return neutral(json.dumps(value, sort_keys=True, ensure_ascii=False)) if value else ""
    if isinstance(value, (list, tuple)):
        return neutral(",".join(value))
    return cell(value)  # None, numbers, Decimals, booleans and datetimes: never a formula


def csv_field(text: str | None) -> str:
    """A CSV field of ledger text as `csv.writer` (QUOTE_MINIMAL) would write `csv_cell(text)`."""
    if text is None:
        return ""
    text = neutral(text)
    return '"' + text.replace('"', '""') + '"' if _CSV_SPECIAL.search(text) else text


def nano_text(nano: int | None) -> str:
    """Integer nano-credits as money.fmt writes the credits: '1.25', '3', '-0.000000001'; '' for none."""
    if nano is None:
        return ""
    whole, part = divmod(abs(nano), 1_000_000_000)
    text = f"{whole}.{part:09d}".rstrip("0") if part else str(whole)
    return "-" + text if nano < 0 else text


class Cached(dict):
    """A per-value cache of `function(value)`; look-ups stay in C for values seen before."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def __missing__(self, value):
        if len(self) > CACHE_LIMIT:
            self.clear()
        result = self[value] = self.function(value)
        return result


def decimal_text(amount: Decimal | None) -> str:
    return fmt(amount) if amount is not None else ""


# ---------------------------------------------------------------- spreadsheet XML

_XML_SPECIAL = re.compile(r"[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
EXCEL_MAX_TEXT = 32_767


def _xml_char(match: re.Match) -> str:
    char = match.group()
    if len(char) > 1:  # text that reads as Excel's escape itself: escape its underscore
        return "_x005F" + char
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;"}.get(char) or f"_x{ord(char):04X}_"


def xml_text(text: str) -> str:
    """Text for a spreadsheet's XML: markup escaped, control characters as Excel writes them (_xHHHH_)."""
    text = text[:EXCEL_MAX_TEXT]
    return _XML_SPECIAL.sub(_xml_char, text) if _XML_SPECIAL.search(text) else text
