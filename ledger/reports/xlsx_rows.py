"""Row-level sheets of a workbook (Calls, Findings, Adjustments), streamed into the file as worksheet XML.

xlsxwriter makes the workbook (formats, the header row, frozen panes, the
autofilter, the widths, every other sheet and the charts), but its per-cell
API is too slow for a month of calls, even in constant-memory mode
(BENCHMARKS.md, "Reports (issue 17)"). So xlsxwriter writes these sheets
with their header row only, and when it is done the file is copied entry by
entry into the final one, the rows of these sheets streamed from the
database into their XML between the header row and `</sheetData>`. Cells are
the OOXML xlsxwriter writes: text as inline strings (escaped as xlsxwriter
escapes them), numbers as `<v>` with the xlsxwriter format's style index,
dates as Excel date serials. Nothing is ever a formula. Memory stays flat: a
chunk of rows at a time.
"""

from __future__ import annotations

import bisect
import operator
import queue
import re
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from .cells import Cached, group_label, nano_text, one_line, xml_text

EXCEL_ROWS = 1_048_576  # per sheet, the header row included
EXCEL_EPOCH_DAYS = 25_569  # 1970-01-01 as an Excel date serial
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: str  # text (recurring values), label (caller text, shown as the groups show it), id (text that does not
    # recur), int, credits, date, flag
    width: float


@dataclass
class StreamedSheet:
    """A sheet whose rows come from `chunks` (tuples in `columns` order); `total` rows are expected."""

    name: str
    columns: Sequence[Column]
    chunks: Callable[[], Iterable[Sequence[tuple]]]
    total: int
    styles: dict[str, object] = field(default_factory=dict)  # kind -> xlsxwriter Format (xf_index read after close)
    written: int = 0


class ZoneShift:
    """UTC date serials to local ones in `zone` over [start, end): the offsets in force, found hour by hour."""

    def __init__(self, zone: str, start: datetime, end: datetime) -> None:
        tz = ZoneInfo(zone)
        step = timedelta(hours=1) if end - start <= timedelta(days=3700) else timedelta(days=1)
        offset = lambda t: t.astimezone(tz).utcoffset().total_seconds()  # noqa: E731
        self.bounds: list[float] = [-1e18]
        self.shifts: list[float] = [offset(start) / 86400]
        t = start
        while t < end:
            following = min(t + step, end)
            if offset(following) != offset(t):
                low, high = t, following  # the change lies in (low, high]: find its second
                while high - low > timedelta(seconds=1):
                    middle = low + (high - low) / 2
                    low, high = (middle, high) if offset(middle) == offset(t) else (low, middle)
                self.bounds.append(serial(high))
                self.shifts.append(offset(high) / 86400)
            t = following

    def __call__(self, utc_serial: float) -> float:
        return utc_serial + self.shifts[bisect.bisect_right(self.bounds, utc_serial) - 1]


def serial(instant: datetime) -> float:
    return EXCEL_EPOCH_DAYS + instant.astimezone(timezone.utc).timestamp() / 86400


# ---------------------------------------------------------------- cells


def _text_cell(value) -> str:
    if value is None:
        return "<c/>"
    text = value if isinstance(value, str) else str(value)  # a string cell: never a formula, so shown as it is
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    return f'<c t="inlineStr"><is><t{space}>{xml_text(text)}</t></is></c>'


class _Uncached:
    """For values that do not recur (ids): the cell made each time, no cache to fill and clear."""

    def __getitem__(self, value) -> str:
        return _text_cell(value)


class _DateCells:
    def __init__(self, style: int, shift: ZoneShift) -> None:
        self.style, self.shift = style, shift

    def __getitem__(self, utc_serial):
        if utc_serial is None:
            return "<c/>"
        return f'<c s="{self.style}"><v>{self.shift(utc_serial):.10f}</v></c>'


def cell_makers(columns: Sequence[Column], styles: dict[str, int], shift: ZoneShift) -> list:
    """One look-up per column (`maker[value]` -> the cell's XML): cached dicts where values recur."""
    text = Cached(_text_cell)
    number = {kind: Cached(lambda v, s=styles.get(kind, 0): "<c/>" if v is None else f'<c s="{s}"><v>{v}</v></c>')
              for kind in ("int",)}
    credits = Cached(lambda v, s=styles.get("credits", 0): "<c/>" if v is None else f'<c s="{s}"><v>{nano_text(v)}</v></c>')
    dates = _DateCells(styles.get("date", 0), shift)
    flags = {None: "<c/>", 0: _text_cell("no"), 1: _text_cell("yes"), False: _text_cell("no"), True: _text_cell("yes")}
    label = Cached(lambda v: _text_cell(one_line(group_label(v))))  # one line; (none), (empty) and "(none)" apart
    makers = {"text": text, "label": label, "id": _Uncached(), "int": number["int"], "credits": credits, "date": dates,
              "flag": flags}
    return [makers[c.kind] for c in columns]


def rows_xml(rows: Sequence[tuple], makers: list, first: int) -> str:
    """`<row>` elements for `rows`, numbered from `first` (1-based), cells in column order (no `r` needed)."""
    get = operator.getitem
    return "".join([
        f'<row r="{n}">' + "".join(map(get, makers, row)) + "</row>" for n, row in enumerate(rows, first)
    ])


# ---------------------------------------------------------------- the file


def sheet_files(archive: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> its XML part in the package (read from workbook.xml and its relationships)."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels.iter(f"{_PKG_REL}Relationship")}
    found = {}
    for sheet in workbook.iter(f"{_MAIN}sheet"):
        target = targets[sheet.get(_REL)]
        found[sheet.get("name")] = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return found


_DIMENSION = re.compile(r'<dimension ref="[A-Z]+\d+(?::[A-Z]+\d+)?"/>')
_AUTOFILTER = re.compile(r'<autoFilter ref="([A-Z]+)1:([A-Z]+)\d+"/>')


def column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def assemble(drafted: Path, final: Path, sheets: Sequence[list[StreamedSheet]], shift: ZoneShift,
             progress=None) -> None:
    """Copy the xlsxwriter draft into `final`, streaming each sheet's rows into its XML.

    `sheets`: groups of sheets that share one row source (a Calls sheet and its continuations, in order).
    """
    with zipfile.ZipFile(drafted) as draft, zipfile.ZipFile(final, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        files = sheet_files(draft)
        streamed = {files[s.name]: (group, s) for group in sheets for s in group}
        sources: dict[int, _RowSource] = {}
        for info in draft.infolist():
            if info.filename not in streamed:
                out.writestr(info, draft.read(info.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
                continue
            group, sheet = streamed[info.filename]
            source = sources.setdefault(id(group), _RowSource(group[0].chunks()))
            _write_sheet(draft.read(info.filename).decode(), out, info, sheet, source, shift, progress)


class _RowSource:
    """Chunks of rows, taken a sheet's capacity at a time."""

    def __init__(self, chunks: Iterable[Sequence[tuple]]) -> None:
        self.chunks = iter(chunks)
        self.pending: Sequence[tuple] = ()

    def take(self, room: int) -> Sequence[tuple] | None:
        chunk = self.pending or next(self.chunks, None)
        while chunk is not None and not chunk:
            chunk = next(self.chunks, None)
        if chunk is None:
            return None
        chunk, self.pending = (chunk[:room], chunk[room:]) if len(chunk) > room else (chunk, ())
        return chunk


def _write_sheet(xml: str, out: zipfile.ZipFile, info: zipfile.ZipInfo, sheet: StreamedSheet, source: _RowSource,
                 shift: ZoneShift, progress) -> None:
    head, tail = xml.split("</sheetData>", 1)
    styles = {kind: fmt.xf_index or 0 for kind, fmt in sheet.styles.items()}
    makers = cell_makers(sheet.columns, styles, shift)
    last = column_letters(len(sheet.columns) - 1)
    expected = min(sheet.total, EXCEL_ROWS - 1)
    head = _DIMENSION.sub(f'<dimension ref="A1:{last}{expected + 1}"/>', head, count=1)
    target = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    target.compress_type = zipfile.ZIP_DEFLATED
    with out.open(target, "w", force_zip64=True) as part, _Writer(part) as write:
        write(head.encode())
        while sheet.written < EXCEL_ROWS - 1:
            chunk = source.take(EXCEL_ROWS - 1 - sheet.written)
            if chunk is None:
                break
            write(rows_xml(chunk, makers, sheet.written + 2).encode())
            sheet.written += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))
        rows = sheet.written + 1
        tail = _AUTOFILTER.sub(lambda m: f'<autoFilter ref="{m[1]}1:{m[2]}{rows}"/>', tail)
        write(b"</sheetData>" + tail.encode())


class _Writer:
    """Writes to the archive in a thread of its own: zlib compresses without the GIL, beside the formatting.

    At most a few chunks wait (memory stays flat); an error in the thread is raised in the caller.
    """

    def __init__(self, part) -> None:
        self.part = part
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="xlsx-writer", daemon=True)

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.part.write(data)
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    self.error = error

    def __call__(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(data)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
