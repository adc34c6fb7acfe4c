"""The Spend view's exports (`/spend/export`) and the read API's spend route (`/api/v1/spend`).

Both are the CLI's own output: `write_report` (what `credit-ledger report
--format F --output -` runs) for the view's period, zone, keys and account,
limited in its queries to the projects the viewer may see. Exports need
the EXPORT permission and are audited; the API answers the JSON report.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import replace
from pathlib import Path

from starlette.responses import Response
from starlette.routing import Route

from ..config import Settings
from ..errors import ReportError
from ..reports.files import report_file_name
from ..reports.run import STDOUT, ReportRequest, write_report
from ..store.engine import Ledger
from . import params
from .audit import record
from .gate import Refused, guarded
from .spend import PARAMETERS, SpendQuery, report_error, spend_query
from .viewer import EXPORT, Viewer

FORMATS = ("csv", "xlsx", "json", "focus")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "focus": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def report_output(settings: Settings, ledger: Ledger, query: SpendQuery, fmt: str) -> bytes:
    """What `credit-ledger report --period P --tz Z --by K --account A --format F --output -` writes (a workbook:
    the file it writes), of the query's projects only."""
    request = ReportRequest(query.period, query.keys, query.account, fmt, STDOUT, projects=query.projects)
    try:
        if fmt == "xlsx":
            with tempfile.TemporaryDirectory(prefix="credit-ledger-export-") as folder:
                path = Path(folder) / report_file_name("spend", query.period, fmt, labels(query))
                write_report(settings, ledger, replace(request, output=str(path)), io.StringIO(),
                             progress_stream=io.StringIO())
                return path.read_bytes()
        out = io.StringIO()
        write_report(settings, ledger, request, out)
        return out.getvalue().encode("utf-8")
    except ReportError as error:
        raise report_error(error, query) from None


def labels(query: SpendQuery) -> tuple[str, ...]:
    return tuple(k.label for k in query.keys)


@guarded(EXPORT)
def spend_export(request):
    viewer: Viewer = request.state.viewer
    query = spend_query(request, viewer, PARAMETERS + ("format",))
    fmt = params.one_of(request, "format", FORMATS, "csv")
    if fmt == "xlsx" and viewer.limited:
        raise Refused("a workbook's Summary holds every project's balances and reconciliation: "
                      "export CSV, JSON or FOCUS for the projects you may see")
    body = report_output(request.app.state.settings, request.app.state.ledger, query, fmt)
    name = report_file_name("spend", query.period, fmt, labels(query))
    record(request, "export", name, {"format": fmt, "query": query.query_string(format=fmt),
                                     "projects": None if viewer.projects is None else sorted(viewer.projects)})
    return Response(body, media_type=MEDIA_TYPES[fmt],
                    headers={**_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


@guarded()
def spend_api(request):
    """`credit-ledger report --period P --tz Z --by K1,K2 --format json --output -`, for what the caller may see."""
    query = spend_query(request, request.state.viewer)
    body = report_output(request.app.state.settings, request.app.state.ledger, query, "json")
    return Response(body, media_type="application/json", headers=_HEADERS)


routes = [
    Route("/spend/export", spend_export, name="spend-export"),
    Route("/api/v1/spend", spend_api, name="api-spend"),
]
