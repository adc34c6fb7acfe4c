"""Tables and progress for the terminal."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from decimal import Decimal

from ledger.terminal import Progress, cell, table


def test_cells_are_plain_text_of_exact_values():
    assert cell(Decimal("0.25088000")) == "0.25088" and cell(Decimal("1E+3")) == "1000"
    assert cell(None) == "" and cell(True) == "yes" and cell(False) == "no"
    assert cell(datetime(2026, 11, 30, 23, 59, 59, 999, tzinfo=timezone.utc)) == "2026-11-30T23:59:59Z"


def test_a_table_aligns_its_columns_and_numbers_right():
    text = table(["name", "credits"], [["search", Decimal("12.5")], ["a", Decimal("7")]], right=["credits"])
    assert text.splitlines() == ["name    credits", "------  -------", "search     12.5", "a             7"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only():
    quiet = io.StringIO()
    progress = Progress(3, "rows", quiet)
    progress.advance(3)
    progress.finish()
    assert quiet.getvalue() == ""
    shown = _Terminal()
    progress = Progress(4, "rows", shown)
    for _ in range(4):
        progress.advance()
    progress.finish()
    assert shown.getvalue().endswith("rows [" + "#" * 30 + "] 4/4\n")
