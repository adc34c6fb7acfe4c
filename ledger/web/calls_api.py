"""The calls' read API and exports: the CLI's own output (`credit-ledger calls --format json|csv`) for a view's filters.

    GET /api/v1/calls?<filters>[&after=CURSOR]   a page of 100, the body `calls --limit 100 --format json` writes
                                                  for those filters and the calls before the cursor (oldest first,
                                                  as the CLI orders them); the next page's URL in a Link header
                                                  (rel="next"), absent on the last page
    GET /api/v1/calls/{call_id}                   one call: the object the CLI's JSON array holds for it
    GET /calls/export?format=csv|json&<filters>   every call of the filters, as `calls --format csv|json` writes them

The filters are /calls' (ledger.web.calls), limited to the viewer's projects in the queries. When retention
deleted raw calls the range reaches, the CLI's note (on its standard error) is the `X-Ledger-Note` header.
"""

from __future__ import annotations

import io
import tempfile

from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..reports.calls import STORE_NAMES, json_lines, list_calls, write_calls
from ..store.call_rows import one_call_row
from . import params
from .audit import record
from .calls import PARAMETERS, calls_page, calls_query, cursor_of, view_link
from .gate import Refused, guarded
from .viewer import EXPORT

SPOOL_BYTES = 8 * 1024 * 1024  # an export is held in memory up to this, then in a temporary file
_JSON = "application/json"


def _note_headers(gone) -> dict[str, str]:
    return {} if gone is None else {"X-Ledger-Note": gone.note()}


@guarded()
def api_calls(request):
    page = calls_page(request, STORE_NAMES)
    body = io.StringIO()
    write_calls([page.rows[::-1]] if page.rows else [], "json", body)  # the CLI's order: oldest first
    headers = {"Cache-Control": "no-store", **_note_headers(page.gone)}
    if page.next_position is not None:
        headers["Link"] = f'<{view_link(request, "/api/v1/calls", after=cursor_of(page.next_position))}>; rel="next"'
    return Response(body.getvalue(), media_type=_JSON, headers=headers)


@guarded()
def api_call(request):
    params.only(request, ())
    call_id = request.path_params["call_id"]
    with request.app.state.ledger.session() as session:
        row = one_call_row(session, STORE_NAMES, call_id, request.state.viewer.projects) if len(call_id) <= 64 else None
    if row is None:
        raise Refused("there is no such call", 404)  # another project's call is as missing as an unknown id
    return Response(json_lines([row], True) + "\n", media_type=_JSON, headers={"Cache-Control": "no-store"})


@guarded(EXPORT)
def export_calls(request):
    params.only(request, (*PARAMETERS, "format"))
    output = params.one_of(request, "format", ("csv", "json"), "csv")
    query = calls_query(request)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")
    try:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
        notes = io.StringIO()
        with request.app.state.ledger.session() as session:
            count = list_calls(session, query.period.start, query.period.end, None, None, output, text, notes,
                               filters=query.filters, account=query.account, projects=request.state.viewer.projects)
        text.flush()
        text.detach()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    record(request, "export", f"calls as {output}", {"format": output, "calls": count, "query": request.url.query})
    headers = {"Content-Disposition": f'attachment; filename="calls-{_file_part(query.period.label)}.{output}"',
               "Cache-Control": "no-store"}
    if notes.getvalue().strip():
        headers["X-Ledger-Note"] = notes.getvalue().strip()
    media = "text/csv; charset=utf-8" if output == "csv" else _JSON
    return StreamingResponse(_blocks(spool), media_type=media, headers=headers)


def _file_part(label: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in label)[:60] or "calls"


def _blocks(spool):
    try:
        while block := spool.read(256 * 1024):
            yield block
    finally:
        spool.close()


routes = [
    Route("/calls/export", export_calls, name="calls_export"),  # before /calls/{call_id}
    Route("/api/v1/calls", api_calls, name="api_calls"),
    Route("/api/v1/calls/{call_id}", api_call, name="api_call"),
]
