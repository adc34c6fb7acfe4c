"""`calls`, `check` and `replay`: the recorded calls, their pricing findings, and the journal written through."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal, TextIO

from ..accounting.pricing import load_rate_book
from ..config import Settings
from ..errors import LedgerError
from ..sink.writer import replay_journal
from ..reports.calls import list_calls
from ..reports.text import print_findings
from ..store.engine import Ledger
from . import EXIT_OK

CallsFormat = Literal["table", "json", "csv"]


def show_calls(settings: Settings, out: TextIO, *, since: datetime | None = None, until: datetime | None = None,
               project: str | None = None, limit: int | None = None, fmt: CallsFormat = "table") -> int:
    """The calls started in [since, until) (all by default; the newest `limit`), streamed in `fmt`."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        list_calls(session, since, until, project, limit, fmt, out)
    return EXIT_OK


def check(settings: Settings, out: TextIO, *, since: datetime | None = None, until: datetime | None = None,
          as_json: bool = False) -> int:
    """The calls whose charge does not match the rate card, and the totals per pricing class."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        print_findings(session, since, until, out, as_json)
    return EXIT_OK


def replay(settings: Settings, out: TextIO) -> int:
    """Write what the journal still holds into the ledger; a bad rate card or no journal stops it first."""
    book = load_rate_book(settings.rate_cards_path)  # a bad card stops here, before anything is written
    journal = Path(settings.journal_path)
    if not journal.exists():
        raise LedgerError(f"no journal at {journal} (the config's `journal` names it)")
    if not journal.is_dir():
        raise LedgerError(f"{journal} is a file, not a journal directory")
    result = replay_journal(settings.database_url, settings.journal_path, rate_book=book, policy=settings.pricing)
    print(result.summary(), file=out)
    return EXIT_OK
