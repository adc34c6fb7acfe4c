"""`calls`, `check` and `replay`: the recorded calls, their pricing findings (and the rollups' and the closes'
checks), and the journal written through."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal, TextIO

from ..accounting.closes import overlapping_closes
from ..accounting.pricing import load_rate_book
from ..config import Settings
from ..errors import LedgerError
from ..sink.writer import replay_journal
from ..reports.calls import list_calls
from ..reports.text import print_findings
from ..store import rollups
from ..store.call_filters import CallFilter
from ..store.engine import Ledger
from ..store.closes import close_events
from ..store.retention import gone_ranges
from . import EXIT_DIFFERS, EXIT_OK

CallsFormat = Literal["table", "json", "csv"]


def show_calls(settings: Settings, out: TextIO, *, since: datetime | None = None, until: datetime | None = None,
               project: str | None = None, limit: int | None = None, fmt: CallsFormat = "table",
               filters: CallFilter | None = None, account: str | None = None) -> int:
    """The calls started in [since, until) (all by default; the newest `limit`), of `account`'s keys and
    as `filters` say, streamed in `fmt`."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        list_calls(session, since, until, project, limit, fmt, out, filters=filters, account=account)
    return EXIT_OK


def check(settings: Settings, out: TextIO, *, since: datetime | None = None, until: datetime | None = None,
          as_json: bool = False) -> int:
    """The calls whose charge does not match the rate card, the totals per pricing class, whether the rollups
    of the range equal its raw calls, and closes in force that overlap: EXIT_DIFFERS when rollups differ or
    closes overlap (reports would be wrong)."""
    with Ledger(settings.database_url, must_exist=True) as ledger:
        with ledger.session() as session:  # a session of its own: the comparison reads from one snapshot
            finding = rollups_finding(session, since, until)
        with ledger.session() as session:
            overlaps = [o.as_dict() for o in overlapping_closes(close_events(session))]
            print_findings(session, since, until, out, as_json, rollups=finding, overlapping_closes=overlaps)
    return EXIT_DIFFERS if finding["differ"] or overlaps else EXIT_OK


def rollups_finding(session, since: datetime | None, until: datetime | None) -> dict:
    """`rollup verify` over the range, as a finding: whether they differ, in which buckets, and what to run."""
    comparison = rollups.compare(session, since, until, gone_ranges(session))
    buckets = sorted({d.key.bucket_start for d in comparison.differences})
    if not buckets:
        lines = [f"rollups: match the calls ({comparison.buckets} buckets, {comparison.calls} calls"
                 + (f"; {comparison.skipped} emptied by retention, not compared" if comparison.skipped else "") + ")"]
    else:
        lines = [*rollups.describe_differences(comparison.differences),
                 f"rollups differ from the calls in {len(buckets)} bucket{'s' * (len(buckets) != 1)}: reports over "
                 "them are wrong until `credit-ledger rollup rebuild --from ... --to ...` makes them anew"]
    return {"differ": bool(buckets), "buckets": comparison.buckets, "skipped": comparison.skipped,
            "differing_buckets": [b.strftime("%Y-%m-%dT%H:%M:%SZ") for b in buckets], "lines": lines}


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
