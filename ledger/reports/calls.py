"""`credit-ledger calls`: the recorded calls, with the API's field names, as CSV, JSON or a table, streamed.

Rows come from the database in chunks (`store.call_rows`) and each chunk is
formatted and written before the next is read: the first line is out as
soon as the database has the first row, and memory stays flat whatever the
row count. A chunk is formatted by one f-string a row; the values that
recur (projects, users, models, amounts, tags) are formatted once each
(`cells.Cached`). CSV text cells are neutralised against formula injection and quoted
as every CSV of the ledger is (`cells.csv_field`, `cells.csv_row`). A project or user is
labelled as reports label a group (`cells.group_label`): `(none)` for a call
without one, `(empty)` for "", in the table and the CSV; JSON gives null and "".
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TextIO

from ..terminal import Progress, cell
from .cells import CSV_LINE_END, Cached, csv_field, csv_row, group_label, nano_text

CALL_FIELDS = (
    "call_id", "started_at", "status", "http_status", "error_code", "completion_id", "model", "model_reported",
    "stream", "attempt", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
    "credits_charged", "credits_expected", "pricing_class", "project", "user", "tags", "key_last4", "anomalies",
)
# The ledger's column for each field, in CALL_FIELDS order.
STORE_NAMES = (
    "call_id", "started_at", "status", "http_status", "error_code", "completion_id", "model_requested", "model_reported",
    "stream", "attempt", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
    "credits_charged", "credits_expected", "pricing_class", "project", "end_user", "tags", "key_last4", "anomalies",
)
TABLE_FIELDS = ("started_at", "status", "model", "prompt_tokens", "completion_tokens", "reasoning_tokens",
                "credits_charged", "credits_expected", "pricing_class", "project", "user")
LABELLED = ("project", "user")  # caller text that may be missing or "": labelled as every report labels it
_TABLE_AT = tuple(CALL_FIELDS.index(f) for f in TABLE_FIELDS)
WIDTH_SAMPLE = 500  # rows a streamed table's column widths are taken from


def _int_text(value: int | None) -> str:
    return "" if value is None else str(value)


def csv_lines(rows) -> str:
    """A chunk of rows (STORE_NAMES order, as `call_rows` gives them) as CSV lines."""
    T, C, I, G, END = _CSV_TEXT, _CSV_NANO, _CSV_INT, _CSV_LABEL, CSV_LINE_END
    yes = ("no", "yes")
    return "".join([
        f"{a},{b[:10]}T{b[11:19]}Z,{c},{I[d]},{T[e]},{csv_field(f)},{T[g]},{T[h]},{yes[i]},{j},{I[k]},{I[l]},{I[m]},"
        f"{I[n]},{C[o]},{C[p]},{q},{G[r]},{G[s]},{T[t]},{T[u]},{T[v]}{END}"
        for a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v in rows  # noqa: E741
    ])


_CSV_TEXT = Cached(csv_field)
_CSV_NANO = Cached(nano_text)
_CSV_INT = Cached(_int_text)
_CSV_LABEL = Cached(lambda v: csv_field(group_label(v)))  # project, user: (none), (empty), "(none)" apart, as reports


def _json_text(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def _json_amount(nano: int | None) -> str:
    return "null" if nano is None else f'"{nano_text(nano)}"'


def _json_list(text: str | None) -> str:
    return json.dumps(text.split(",")) if text else "[]"


_J = Cached(_json_text)
_JN = Cached(_json_amount)
_JI = Cached(lambda v: "null" if v is None else str(v))
_JL = Cached(_json_list)


def json_lines(rows, first: bool) -> str:
    """A chunk of rows as the objects of a JSON array, one a line (`first`: the chunk that opens the array)."""
    J, N, I, L = _J, _JN, _JI, _JL
    yes = ("false", "true")
    lines = [
        f'{{"call_id": {J[a]}, "started_at": "{b[:10]}T{b[11:19] if b[20:] == "000000" else b[11:26]}+00:00", "status": {J[c]}, "http_status": {I[d]}, '
        f'"error_code": {J[e]}, "completion_id": {_json_text(f)}, "model": {J[g]}, "model_reported": {J[h]}, '
        f'"stream": {yes[i]}, "attempt": {I[j]}, "prompt_tokens": {I[k]}, "completion_tokens": {I[l]}, '
        f'"reasoning_tokens": {I[m]}, "total_tokens": {I[n]}, "credits_charged": {N[o]}, "credits_expected": {N[p]}, '
        f'"pricing_class": {J[q]}, "project": {J[r]}, "user": {J[s]}, "tags": {t or "{}"}, "key_last4": {J[u]}, '
        f'"anomalies": {L[v]}}}'
        for a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v in rows  # noqa: E741
    ]
    return ("" if first else ",\n") + ",\n".join(lines)


def _table_value(name: str, value):
    if name in LABELLED:
        return cell(group_label(value))
    if value is None:
        return ""
    if name == "started_at":
        return f"{value[:10]}T{value[11:19]}Z"
    if name in ("credits_charged", "credits_expected"):
        return nano_text(value)
    return cell(value)


def _table_line(values: list[str], widths: list[int]) -> str:
    return "  ".join(v.rjust(w) if 3 <= i <= 8 else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()


def write_calls(chunks, output: str, out: TextIO, total: int | None = None) -> int:
    """Write the chunks in `output` format (csv, json or table); returns how many calls."""
    progress = Progress(total, "calls", sys.stderr) if total and not _isatty(out) else None
    count = 0
    if output == "csv":
        out.write(csv_row(CALL_FIELDS))
        for chunk in chunks:
            out.write(csv_lines(chunk))
            out.flush()
            count += len(chunk)
            progress and progress.advance(len(chunk))
    elif output == "json":
        out.write("[")
        for chunk in chunks:
            out.write(("\n" if count == 0 else "") + json_lines(chunk, count == 0))
            out.flush()
            count += len(chunk)
            progress and progress.advance(len(chunk))
        out.write("\n]\n" if count else "]\n")
    else:
        widths = None
        for chunk in chunks:
            rows = [[_table_value(TABLE_FIELDS[k], row[at]) for k, at in enumerate(_TABLE_AT)] for row in chunk]
            if widths is None:
                widths = [max([len(h)] + [len(r[k]) for r in rows[:WIDTH_SAMPLE]]) for k, h in enumerate(TABLE_FIELDS)]
                print(_table_line(list(TABLE_FIELDS), widths), file=out)
                print(_table_line(["-" * w for w in widths], widths), file=out)
            out.write("".join(_table_line(r, widths) + "\n" for r in rows))
            count += len(chunk)
        if widths is None:
            print("  ".join(TABLE_FIELDS), file=out)
        print(f"{count} calls", file=out)
    if progress:
        progress.finish()
    return count


def _isatty(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def calls_selection(since: datetime | None, until: datetime | None, account: str | None = None,
                    projects: frozenset[str] | None = None):
    """The calls started in [since, until) (all by default), of `account`'s keys, of `projects` (None: all)."""
    from ..store.spend import Selection

    return Selection(since or datetime(1970, 1, 1, tzinfo=timezone.utc), until or datetime(9999, 1, 1, tzinfo=timezone.utc),
                     account=account, projects=projects)


def gone_before(session, selection):
    """The retention horizon (`store.retention.Horizon`) when raw calls of the selection's range are gone, else None."""
    from ..store.retention import gone_ranges, horizon

    gone = horizon(session)
    if gone is not None and not any(low < selection.end and high > selection.start for low, high in gone_ranges(session)):
        return None
    return gone


def list_calls(session, since: datetime | None, until: datetime | None, project: str | None, limit: int | None,
               output: str, out: TextIO, notes: TextIO | None = None, *, filters=None, account: str | None = None,
               projects: frozenset[str] | None = None) -> int:
    """`credit-ledger calls`: the calls started in [since, until) (all by default), streamed in `output` format.

    `filters` (`store.call_filters.CallFilter`), `account` and `projects` narrow them as the dashboard's
    Calls page does. When retention deleted calls of closed periods in the range, one line says so: after
    the table, or on `notes` (standard error) beside CSV and JSON, which stay what they are.
    """
    from ..store.call_rows import call_rows, count_rows

    selection = calls_selection(since, until, account, projects)
    total = None if limit or _isatty(out) or not _isatty(sys.stderr) else count_rows(
        session, selection, project=project, filters=filters)
    gone = gone_before(session, selection)
    chunks = call_rows(session, selection, STORE_NAMES, project=project, filters=filters, newest=limit)
    count = write_calls(chunks, output, out, total)
    if gone is not None:
        print(gone.note(), file=out if output == "table" else notes or sys.stderr)
    return count
