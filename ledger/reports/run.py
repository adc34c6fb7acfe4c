"""`credit-ledger report`: a period's spend report in one format, to the terminal or a file (the path printed).

Every figure of one report is read from one snapshot of the ledger
(`store.reading.one_snapshot`): the groups, the total, the adjustments, the
workbook's row sheets and the digest agree with each other while recorders
go on writing. Nothing is written to the ledger: USD is at the rate of the
card that priced each call, as the writer stored it in `rate_cards` before
its first call, and top-ups are read from the balance snapshots, so a
report runs on a read-only ledger.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..accounting.periods import Period
from ..accounting.pricing import load_rate_book
from ..config import Settings
from ..accounting.group_keys import GroupKey
from ..errors import ReportError
from ..store.engine import Ledger
from ..store.keys import account_fingerprints
from ..store.rate_cards import sync_rate_cards
from ..store.reading import one_snapshot
from ..terminal import Progress
from .files import atomic_file, output_path, report_file_name, sweep_stale_parts
from .spend import SpendReport, build_report
from .spend_out import write_csv, write_json, write_table

STDOUT = "-"


@dataclass(frozen=True)
class ReportRequest:
    period: Period
    keys: tuple[GroupKey, ...] = ()
    account: str | None = None
    format: str = "table"
    output: str | None = None  # a file, a folder, "-" for standard output; None: the reports folder (table: the terminal)
    with_calls: bool = False
    name: str = "spend"
    output_dir: str | None = None  # instead of the settings' reports_dir
    projects: frozenset[str] | None = None  # only these projects' calls (a dashboard viewer limited to them)


def sync_cards(settings: Settings, ledger: Ledger) -> None:
    """The config's rate cards into the ledger (rows only added): for a close, which writes anyway."""
    book = load_rate_book(settings.rate_cards_path)
    with ledger.session() as session:
        sync_rate_cards(session, book)


def adjustment_calls(session, report: SpendReport) -> list[dict]:
    """The late calls the report lists, each with its original time (few: read whole)."""
    from ..store.call_rows import call_rows

    if report.adjustment_selection is None:
        return []
    names = ("call_id", "started_at", "recorded_at", "credits_charged", "project", "model_requested")
    found = []
    for chunk in call_rows(session, report.adjustment_selection, names):
        for call_id, started, recorded, charged, project, model in chunk:
            found.append({"call_id": call_id, "started_at": f"{started[:10]}T{started[11:19]}Z",
                          "recorded_at": f"{recorded[:10]}T{recorded[11:19]}Z",
                          "credits_charged": None if charged is None else _credits(charged), "project": project,
                          "model": model})
    return found


def _credits(nano: int):
    from ..money import from_nano

    return from_nano(nano)


def write_report(settings: Settings, ledger: Ledger, request: ReportRequest, out: TextIO,
                 progress_stream: TextIO | None = None) -> list[Path]:
    """Make the report as asked; returns the files written (none for the terminal or standard output)."""
    path = None
    if request.output != STDOUT and (request.format != "table" or request.output is not None):
        name = report_file_name(request.name, request.period, request.format, tuple(k.label for k in request.keys))
        path = output_path(request.output, request.output_dir or settings.reports_dir, name)
    if request.format == "xlsx" and path is None:
        raise ReportError("a workbook goes to a file: give --output FILE (or none, for the reports folder)")
    if request.format == "xlsx" and request.projects is not None:
        raise ReportError("a workbook's Summary holds every project's balances and reconciliation: "
                          "no workbook of some projects only (CSV, JSON or FOCUS instead)")
    if request.account is not None:
        check_account(settings, ledger, request.account)
    summary_result = None
    if request.format == "xlsx":
        from ..store.reconciliation import reconcile_as_configured

        # As the period's close reconciles it (the snapshots around it).
        summary_result = reconcile_as_configured(settings, ledger, request.period.start, request.period.end,
                                                 bracketed=True)
    for line in sweep_stale_parts(path) if path is not None else ():
        print(line, file=out)
    with one_snapshot(ledger) as session:
        report = build_report(session, request.period, request.keys, request.account, projects=request.projects)
        if request.format == "xlsx":
            _workbook(ledger, session, report, request, path, summary_result, progress_stream)
        elif path is None:
            _text(session, report, request.format, out)
        else:
            with atomic_file(path) as file:
                _text(session, report, request.format, file)
    if path is not None:
        empty = " (no calls in this period: the report says so)" if report.empty else ""
        print(f"wrote {path}{empty}", file=out)
        return [path]
    return []


def check_account(settings: Settings, ledger: Ledger, account: str) -> None:
    """An account the ledger's keys or the config know; a misspelt one is an error, not an empty report."""
    with ledger.session() as session:
        known = set(account_fingerprints(session)) | {a.name for a in settings.accounts}
    if account not in known:
        listed = ", ".join(sorted(known)) or "none: the ledger has no key registered to an account yet"
        raise ReportError(f"unknown account {account!r} (known: {listed})")


def _text(session, report: SpendReport, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        write_json(report, out, adjustment_calls(session, report))
    elif fmt == "csv":
        write_csv(report, out)
    elif fmt == "focus":
        from .focus import write_focus

        write_focus(session, report, out)
    else:
        write_table(report, out)


def _workbook(ledger, session, report: SpendReport, request: ReportRequest, path: Path, result, progress_stream) -> None:
    """The workbook's figures and row streams first, from the report's snapshot; then the writer formats them."""
    from .summary import build_summary
    from .xlsx import WorkbookInput, write_workbook
    from .xlsx_figures import workbook_figures

    summary = build_summary(session, report.selection, result)
    figures = workbook_figures(session, report, request.with_calls)
    progress = Progress(figures.rows, "workbook rows", progress_stream or sys.stderr)
    write_workbook(path, WorkbookInput(report, summary, figures, progress))
    progress.finish()
