"""Cells every writer shares: text that no spreadsheet runs as a formula, exact amounts as plain text.

`neutral` is the one rule against formula injection (OWASP): text from the
ledger (a project, a user, a tag: caller-controlled) that starts with a tab
or a carriage return, or whose first character past any blanks is `=`, `+`,
`-` or `@` in any width (`＝`), gets a leading `'`, so Excel, LibreOffice and
Google Sheets show it as text. Numbers the ledger formats itself are never
passed through it. `csv_row` is the one way a CSV record is written: every
field with a separator, a quote or a line break (CR included) quoted. The caches here make the streamed
writers fast: a project, user, model or amount recurs on many rows and is
formatted once (each cache is cleared past a few thousand entries: memory
stays flat whatever the row count).
"""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal
from typing import Any

from ..money import fmt
from ..terminal import cell

FORMULA_SIGNS = frozenset("=+-@")  # after NFKC: the full-width and small forms (＝, ﹦, ＋, －, ＠) are these
_FORMULA_FIRST = frozenset("\t\r")  # run even before a sign by some spreadsheets' import
_CSV_SPECIAL = re.compile(r'[",\r\n]')
CSV_LINE_END = "\n"
CACHE_LIMIT = 20_000


def neutral(text: str) -> str:
    """Text a spreadsheet shows as text: a leading `'` where it could start a formula.

    Blanks first do not protect it: LibreOffice trims them on import when asked.
    """
    if not text:
        return text
    if text[0] in _FORMULA_FIRST or unicodedata.normalize("NFKC", text.lstrip()[:1]) in FORMULA_SIGNS:
        return "'" + text
    return text


def csv_cell(value: Any) -> str:
    """A value as CSV text that no spreadsheet runs: text neutralised, numbers and times as the ledger writes them."""
    if isinstance(value, str):
        return neutral(value)
    if isinstance(value, dict):
        return neutral(json.dumps(value, sort_keys=True, ensure_ascii=False)) if value else ""
    if isinstance(value, (list, tuple)):
        return neutral(",".join(value))
    return cell(value)  # None, numbers, Decimals, booleans and datetimes: never a formula


def quoted(text: str) -> str:
    """A CSV field: quoted when it holds a separator, a quote, a CR or an LF (RFC 4180), else as it is."""
    return '"' + text.replace('"', '""') + '"' if _CSV_SPECIAL.search(text) else text


def csv_field(text: str | None) -> str:
    """A CSV field of ledger text: neutralised, then quoted where needed."""
    return "" if text is None else quoted(neutral(text))


def csv_row(values) -> str:
    """One CSV record, line end included: each value as `csv_cell` writes it, quoted where needed."""
    return ",".join([quoted(csv_cell(value)) for value in values]) + CSV_LINE_END


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


NO_VALUE, EMPTY = "(none)", "(empty)"


def group_label(value: str | None) -> str:
    """A group's value of caller text as every report gives it, never two groups alike: `(none)` for a call
    without one, `(empty)` for "", a value that could be read as either in double quotes, JSON-escaped
    (`"(none)"`); any other value as it is."""
    if value is None:
        return NO_VALUE
    if value == "":
        return EMPTY
    return json.dumps(value, ensure_ascii=False) if value[0] in '("' else value


def one_line(text: str) -> str:
    """Text a spreadsheet cell shows on one line: JSON-escaped (in double quotes) when it holds a line break or
    another invisible character, which would draw over the row above; as it is otherwise."""
    return text if text.isprintable() else json.dumps(text)


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
