"""The spend report as an Excel workbook a finance person opens without cleanup (xlsxwriter).

Sheets: Summary; one per `--by` key (and one for the keys together when
there are several); Daily, with a native stacked column chart of credits per
day; Findings; Adjustments when the report lists any; with `calls`, Calls
(split over sheets past Excel's row limit). Numbers are numeric cells with
number formats, dates Excel dates in the report's zone, headers frozen,
autofilter on, widths fitted. Text is always written as a string cell
(xlsxwriter never turns text into a formula, a number or a link here), so a
project named `=HYPERLINK(...)` is that text. Row-level sheets are streamed
(`xlsx_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

import xlsxwriter

from ..accounting.periods import Period
from ..accounting.group_keys import GroupKey
from .cells import one_line
from .files import atomic_path
from .spend import Figures, SpendReport
from .summary import Summary
from .xlsx_figures import Daily, RowStream, WorkbookFigures
from .xlsx_rows import EXCEL_ROWS, Column, StreamedSheet, ZoneShift, assemble

OPTIONS = {"constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False}
NUMBER_FORMATS = {
    "int": "#,##0", "credits": "#,##0.00#######", "usd": "$#,##0.00##", "pct": "0.00%",
    "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss",
}
FIGURE_HEADERS = ("calls", "failed calls", "prompt tokens", "completion tokens", "reasoning tokens", "credits charged",
                  "credits expected", "difference", "findings", "USD")
FIGURE_KINDS = ("int", "int", "int", "int", "int", "credits", "credits", "credits", "int", "usd")


def shown_width(value, kind: str, wraps: bool = False) -> int:
    """How many characters a cell shows in its number format: a column narrower than that shows `###`.

    `wraps`: a header, which may wrap at its words: as wide as its longest word, at least 12.
    """
    if kind == "text":
        text = str(value)
        return max([12, *map(len, text.split())]) if wraps and len(text) > 12 else len(text)
    if kind in ("date", "datetime"):
        return 10 if kind == "date" else 19
    if kind == "pct":
        return len(f"{value:.2%}")
    if kind == "int":
        return len(f"{value:,}")
    most = 4 if kind == "usd" else 9  # the places the format shows: 2, and up to 4 (USD) or 9 (credits) when needed
    places = min(max(2, -Decimal(str(value)).normalize().as_tuple().exponent), most)
    return len(f"{Decimal(str(value)):,.{places}f}") + (1 if kind == "usd" else 0)


def figure_values(f: Figures) -> list:
    return [f.calls, f.failed_calls, f.prompt_tokens, f.completion_tokens, f.reasoning_tokens, f.credits_charged,
            f.credits_expected, f.difference, f.findings, f.usd]


class Sheet:
    """A worksheet written row by row (constant memory), every cell by its kind; widths fitted at the end."""

    def __init__(self, book: "Book", name: str) -> None:
        self.book, self.ws, self.row, self.widths = book, book.workbook.add_worksheet(name), 0, {}
        book.page_setup(self.ws)

    def put(self, col: int, value, kind: str = "text", bold: bool = False) -> None:
        fmt = self.book.format(kind, bold)
        if value is None:
            self.ws.write_blank(self.row, col, None, fmt)
            return
        if kind == "text":
            value = one_line(str(value))
            self.ws.write_string(self.row, col, value, fmt)
        elif kind in ("date", "datetime"):
            self.ws.write_datetime(self.row, col, value, fmt)
        else:
            self.ws.write_number(self.row, col, value, fmt)
        shown = shown_width(value, kind, wraps=bold) * (1.15 if bold else 1)  # bold characters are wider
        self.widths[col] = max(self.widths.get(col, 0), min(shown, 60))

    def line(self, values: Sequence, kinds: Sequence[str] | str = "text", bold: bool = False) -> None:
        kinds = [kinds] * len(values) if isinstance(kinds, str) else kinds
        if bold:  # a header's row as tall as its most wrapped cell: no spreadsheet is trusted to fit it
            lines = max((-(-len(str(v)) // shown_width(v, "text", wraps=True)) for v, k in zip(values, kinds)
                         if k == "text" and v), default=1)
            if lines > 1:
                self.ws.set_row(self.row, 15 * lines)
        for col, (value, kind) in enumerate(zip(values, kinds)):
            self.put(col, value, kind, bold)
        self.row += 1

    def note(self, text: str, col: int = 0) -> None:
        """A line of prose: it runs on over the empty cells to its right, so it sets no column's width."""
        self.ws.write_string(self.row, col, text, self.book.format("text"))
        self.row += 1

    def header(self, names: Sequence[str], filter_rows: int | None = None) -> None:
        first = self.row
        self.line(names, bold=True)
        self.ws.freeze_panes(self.row, 0)
        if filter_rows is not None:
            self.ws.autofilter(first, 0, first + max(filter_rows, 1), len(names) - 1)

    def fit(self) -> None:
        for col, width in self.widths.items():
            self.ws.set_column(col, col, width + 2)


class Book:
    def __init__(self, path: Path, title: str = "credit-ledger spend report") -> None:
        self.workbook = xlsxwriter.Workbook(str(path), OPTIONS)
        self._formats: dict = {}
        self.names: set[str] = set()
        self.title = title.replace("&", "&&")  # '&' starts a code in a page header

    def page_setup(self, ws) -> None:
        """Printed as a finance person files it: landscape, every column on the page, the header row on each page."""
        ws.set_landscape()
        ws.fit_to_pages(1, 0)  # as wide as one page, as many pages long as it takes
        ws.repeat_rows(0)
        ws.set_header(f"&L{self.title}&R&A")
        ws.set_footer("&Cpage &P of &N")

    def format(self, kind: str, bold: bool = False):
        key = (kind, bold)
        if key not in self._formats:
            properties = {"num_format": NUMBER_FORMATS[kind]} if kind in NUMBER_FORMATS else {}
            if bold:  # a header wraps at its words (Excel and LibreOffice fit the row's height to it)
                properties.update({"bold": True, "bottom": 1, "text_wrap": True, "valign": "bottom"} if kind == "text"
                                  else {"bold": True})
            self._formats[key] = self.workbook.add_format(properties)
        return self._formats[key]

    def sheet_name(self, wanted: str) -> str:
        name = "".join(" " if c in "[]:*?/\\" else c for c in wanted)[:31].strip()
        base, n = name, 2
        while name.lower() in self.names:
            name = f"{base[:27]} {n}"
            n += 1
        self.names.add(name.lower())
        return name


@dataclass
class WorkbookInput:
    report: SpendReport
    summary: Summary
    figures: WorkbookFigures
    progress: object = None


def local(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def utc_text(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- sheets


def summary_sheet(book: Book, data: WorkbookInput) -> None:
    report, summary, zone = data.report, data.summary, data.report.period.zone
    sheet = Sheet(book, book.sheet_name("Summary"))
    sheet.line(["credit-ledger spend report"], bold=True)
    period = report.period
    rows = [
        ("period", period.label, "text"), ("zone", zone, "text"),
        (f"from ({zone})", local(period.start, zone), "datetime"), (f"to ({zone})", local(period.end, zone), "datetime"),
        *([] if zone == "UTC" else [("from (UTC)", local(period.start, "UTC"), "datetime"),
                                    ("to (UTC)", local(period.end, "UTC"), "datetime")]),
        ("account", report.account or "all", "text"), ("generated (UTC)", local(report.generated_at, "UTC"), "datetime"),
    ]
    if report.close is not None:
        c = report.close
        rows += [("closed at (UTC)", local(c.cutoff_at, "UTC"), "datetime"), ("closed with", c.reconciliation, "text"),
                 ("close digest", c.calls_digest, "text"),
                 ("digest now", "the same" if report.digest_matches_close else f"DIFFERS: {report.digest}", "text")
                  if report.calls_gone is None else ("digest now", "the close's, not recomputed (raw calls deleted by retention)", "text")]
    else:
        rows.append(("status", "open (not closed)", "text"))
    if report.calls_gone is not None:  # the row sheets (Findings, Calls) hold what is left
        rows.append(("raw calls", report.calls_gone.note(), "text"))
    for overlap in report.overlaps:
        rows.append(("CLOSES OVERLAP", overlap.describe(), "text"))
    if report.digest is not None:
        rows.append(("calls digest", f"{report.digest} ({report.digest_calls} calls)", "text"))
    rows.append(("reconciliation", summary.verdict, "text"))
    for name, value, kind in rows:
        sheet.line([name, value], ["text", kind])
    for note in snapshot_notes(summary):  # beside the verdict: why an account was not reconciled
        sheet.note(note, col=1)
    if report.empty:
        sheet.line(["no calls in this period"], bold=True)
    sheet.row += 1
    sheet.line(["", *FIGURE_HEADERS], bold=True)
    sheet.line(["total (calls started in the period)", *figure_values(report.total)], ["text", *FIGURE_KINDS])
    for adjustment in report.adjustments:
        sheet.line([f"prior period {adjustment.closed.label} (not in the total)", *figure_values(adjustment.figures)],
                   ["text", *FIGURE_KINDS])
    sheet.row += 1
    sheet.line(["account", "opening balance", f"opening at ({zone})", "closing balance", f"closing at ({zone})", "top-ups",
                "consumed (platform, opening to closing)", "charged (ledger, opening to closing)", "difference",
                "tolerance below", "tolerance above", "status"],
               bold=True)
    for a in summary.accounts:
        c = a.cumulative
        sheet.line(
            [a.account, a.opening and a.opening.balance, a.opening and local(a.opening.taken_at, zone),
             a.closing and a.closing.balance, a.closing and local(a.closing.taken_at, zone), a.top_ups,
             c and c.consumed, c and c.ledger_charged, c and c.difference, c and c.tolerance_below, c and c.tolerance_above,
             c.status if c else snapshot_note(a)],
            ["text", "credits", "datetime", "credits", "datetime", "credits", "credits", "credits", "credits", "credits",
             "credits", "text"])
    if summary.accounts:  # why "charged" here is not the total above
        sheet.note("charged (ledger): the calls between the account's opening and closing snapshots; "
                   "the total above: every call started in the period")
    else:
        sheet.line(["no balance snapshots in this period"])
    sheet.row += 1
    sheet.line(["pricing class", "finding", "calls", "credits charged", "credits expected", "difference"], bold=True)
    for f in summary.findings:
        sheet.line([f.pricing_class, "no" if f.pricing_class in ("ok", "rounding") else "yes", f.calls, f.credits_charged,
                    f.credits_expected, f.credits_charged - f.credits_expected],
                   ["text", "text", "int", "credits", "credits", "credits"])
    sheet.row += 1
    sheet.line(["rate card", "effective from (UTC)", "USD per credit", "model", "input per 1M tokens",
                "output per 1M tokens", "calls priced by the card"], bold=True)
    shown: set[str] = set()
    for card in summary.cards:  # a row per model of a card; the card's calls once, on its first row
        calls = None if card.name in shown else summary.card_calls.get(card.name, 0)
        shown.add(card.name)
        sheet.line([card.name, local(card.effective_from, "UTC"), card.usd_per_credit, card.model, card.input_per_million,
                    card.output_per_million, calls],
                   ["text", "datetime", "usd", "text", "credits", "credits", "int"])
    sheet.fit()


def snapshot_note(account) -> str:
    """How many usable snapshots an account had in the period, when it had too few to be reconciled."""
    if account.opening is None:
        return "no usable snapshot"
    if account.opening.taken_at == account.closing.taken_at:
        return "one snapshot"
    return "fewer than two usable snapshots"


def snapshot_notes(summary: Summary) -> list[str]:
    """Beside the verdict, for each account it could not reconcile: one snapshot is no reconciliation (it takes two)."""
    return [f"{a.account}: {snapshot_note(a)} in the period: a reconciliation needs two"
            for a in summary.accounts if a.cumulative is None]


def group_sheet(book: Book, title: str, keys: Sequence[GroupKey], items: list[tuple[tuple, Figures]], total: Figures) -> None:
    sheet = Sheet(book, book.sheet_name(title))
    sheet.header([*(k.label for k in keys), *FIGURE_HEADERS, "share"], filter_rows=len(items))
    for values, figures in items:
        share = None if total.credits_charged == 0 else figures.credits_charged / total.credits_charged
        sheet.line([*values, *figure_values(figures), share], [*["text"] * len(keys), *FIGURE_KINDS, "pct"])
    sheet.line(["total", *[""] * (len(keys) - 1), *figure_values(total), 1 if total.calls else None],
               [*["text"] * len(keys), *FIGURE_KINDS, "pct"], bold=True)
    sheet.fit()


def daily_sheet(book: Book, daily: Daily, period: Period) -> None:
    """Credits charged per local day, a column per series, and the stacked chart."""
    stack, series, days, table = daily.stack, daily.series, daily.days, daily.table
    sheet = Sheet(book, book.sheet_name("Daily"))
    sheet.header([f"day ({period.zone})", *series, "total"], filter_rows=len(days))
    for day in days:
        cells = table[day.label]
        sheet.line([local(day.start, period.zone), *cells, sum(cells)], ["date", *["credits"] * (len(series) + 1)])
    sheet.fit()
    chart = book.workbook.add_chart({"type": "column", "subtype": "stacked"})
    for i in range(len(series)):
        chart.add_series({"name": [sheet.ws.name, 0, i + 1], "categories": [sheet.ws.name, 1, 0, len(days), 0],
                          "values": [sheet.ws.name, 1, i + 1, len(days), i + 1], "gap": 50})
    chart.set_title({"name": f"Credits per day, {period.label}" + (f", by {stack.label}" if stack else "")})
    chart.set_x_axis({"date_axis": True, "num_format": "mm-dd", "major_unit": max(1, len(days) // 15)})
    chart.set_y_axis({"name": "credits", "num_format": "#,##0"})
    chart.set_size({"width": 960, "height": 480})
    sheet.ws.insert_chart(1, len(series) + 3, chart)


CALL_SHEET = (
    ("call_id", Column("call id", "id", 34)), ("started_serial", Column("started", "date", 20)),
    ("status", Column("status", "text", 10)), ("model_requested", Column("model", "label", 16)),
    ("model_reported", Column("model reported", "label", 24)), ("stream", Column("stream", "flag", 7)),
    ("prompt_tokens", Column("prompt tokens", "int", 14)), ("completion_tokens", Column("completion tokens", "int", 18)),
    ("reasoning_tokens", Column("reasoning tokens", "int", 17)), ("total_tokens", Column("total tokens", "int", 13)),
    ("credits_charged", Column("credits charged", "credits", 16)), ("credits_expected", Column("credits expected", "credits", 17)),
    ("pricing_class", Column("pricing class", "text", 18)), ("project", Column("project", "label", 18)),
    ("end_user", Column("user", "label", 14)), ("key_name", Column("key", "text", 14)), ("tags", Column("tags", "text", 30)),
    ("anomalies", Column("anomalies", "text", 20)), ("completion_id", Column("completion id", "id", 30)),
    ("http_status", Column("HTTP status", "int", 12)), ("error_code", Column("error code", "text", 16)),
)
FINDING_SHEET = (
    ("call_id", Column("call id", "id", 34)), ("started_serial", Column("started", "date", 20)),
    ("pricing_class", Column("pricing class", "text", 18)), ("credits_expected", Column("credits expected", "credits", 17)),
    ("credits_charged", Column("credits charged", "credits", 16)), ("credits_difference", Column("difference", "credits", 14)),
    ("model_requested", Column("model", "label", 16)), ("status", Column("status", "text", 10)),
    ("prompt_tokens", Column("prompt tokens", "int", 14)), ("completion_tokens", Column("completion tokens", "int", 18)),
    ("reasoning_tokens", Column("reasoning tokens", "int", 17)), ("project", Column("project", "label", 18)),
    ("end_user", Column("user", "label", 14)), ("key_name", Column("key", "text", 14)), ("anomalies", Column("anomalies", "text", 20)),
)
ADJUSTMENT_SHEET = (
    ("call_id", Column("call id", "id", 34)), ("started_serial", Column("started (its period)", "date", 20)),
    ("recorded_serial", Column("recorded", "date", 20)), ("credits_charged", Column("credits charged", "credits", 16)),
    ("credits_expected", Column("credits expected", "credits", 17)), ("pricing_class", Column("pricing class", "text", 18)),
    ("model_requested", Column("model", "label", 16)), ("project", Column("project", "label", 18)),
    ("end_user", Column("user", "label", 14)), ("key_name", Column("key", "text", 14)),
)


def streamed_sheets(book: Book, title: str, spec, stream: RowStream, zone: str, split: bool = False) -> list[StreamedSheet]:
    """The placeholder sheets (header, widths, filter) of a row-level sheet; its rows come at assembly."""
    names = [n for n, _ in spec]
    columns = [c for _, c in spec]
    total = stream.total
    count = max(1, -(-total // (EXCEL_ROWS - 1))) if split else 1

    def chunks():
        return stream.rows(names)

    sheets = []
    for part in range(count):
        sheet = Sheet(book, book.sheet_name(title if part == 0 else f"{title} {part + 1}"))
        rows = min(EXCEL_ROWS - 1, max(0, total - part * (EXCEL_ROWS - 1)))
        headers = [c.header + (f" ({zone})" if c.kind == "date" else "") for c in columns]
        sheet.header(headers, filter_rows=rows)
        styles = {}
        for col, column in enumerate(columns):
            kind = "datetime" if column.kind == "date" else column.kind
            fmt = book.format(kind) if kind in NUMBER_FORMATS else None
            sheet.ws.set_column(col, col, max(column.width, len(headers[col]) + 2), fmt)
            if fmt is not None:
                styles[column.kind] = fmt
        sheets.append(StreamedSheet(sheet.ws.name, columns, chunks, rows, styles))
    return sheets


def write_workbook(path: Path, data: WorkbookInput) -> None:
    """Write the workbook to `path` (through a temporary name, renamed when whole)."""
    report, figures = data.report, data.figures
    zone = report.period.zone
    starts = [report.period.start, *(a.closed.start for a in report.adjustments)]
    with atomic_path(path) as final, atomic_path(path.with_name(f"{path.name}.draft"), keep=False) as draft:
        book = Book(draft, f"credit-ledger spend report {report.period.label} ({zone})")
        summary_sheet(book, data)
        for key, items in figures.by_key:
            group_sheet(book, f"By {key.label}", (key,), items, report.total)
        if len(report.keys) > 1:
            title = "By " + ", ".join(k.label for k in report.keys)
            group_sheet(book, title, report.keys, [(g.values, g.figures) for g in report.groups], report.total)
        daily_sheet(book, figures.daily, report.period)
        groups = [streamed_sheets(book, "Findings", FINDING_SHEET, figures.findings, zone)]
        if figures.adjustments is not None:
            groups.append(streamed_sheets(book, "Adjustments", ADJUSTMENT_SHEET, figures.adjustments, zone))
        if figures.calls is not None:
            groups.append(streamed_sheets(book, "Calls", CALL_SHEET, figures.calls, zone, split=True))
        book.workbook.close()
        assemble(draft, final, groups, ZoneShift(zone, min(starts), report.period.end), data.progress)
