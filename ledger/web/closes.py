"""Closes (`/closes`): every close and reopen with its totals, digest, who and when, as `credit-ledger closes`
gives them; for finance, forms that close and reopen a period through the functions `close` and `reopen` call.

A refusal (the period not over, closed already, a reconciliation gap, a later
period closed) is shown as the page's message, the ledger unchanged. Each
close and reopen is an audit event. A viewer limited to projects sees the
periods, when and by whom, but no totals: they count every project's calls.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from ..accounting.closes import CLOSE as CLOSED
from ..accounting.periods import CALENDAR_KINDS, parse_period, zone_named
from ..errors import LedgerError
from ..money import fmt
from ..reports.closes import close_entries
from ..service.closing import close_period, reopen_period
from . import figures, params
from .audit import record
from .figures import ACCOUNT_MONEY
from .gate import guarded, require_csrf
from .params import BadQuery
from .rendering import render
from .viewer import CLOSE

MAX_REASON = 1000


def closes_view(request, zone: str, *, message: str | None = None, refusal: str | None = None, status: int = 200,
                form: dict | None = None):
    """The closes page, with the outcome of a form when there was one."""
    viewer = request.state.viewer
    with request.app.state.ledger.session() as session:
        entries, overlaps = close_entries(session)
    for entry in entries:
        entry["state"] = entry["action"] if entry["action"] != CLOSED else (
            "close (in force)" if entry["in_force"] else "close (reopened since)")
    return render(request, "closes.html", status=status, zone=zone, entries=entries,
                  overlaps=[o.describe() for o in overlaps], totals=viewer.projects is None,
                  may_close=viewer.may(CLOSE), message=message, refusal=refusal, form=form or {},
                  account_money=ACCOUNT_MONEY, kinds=CALENDAR_KINDS, fmt=fmt,
                  as_of=figures.utc_now())


@guarded()
def closes_page(request):
    params.only(request, ("tz",))
    return closes_view(request, params.zone(request, request.app.state.settings.timezone))


def _field(form, name: str, required: bool = True) -> str | None:
    value = form.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if len(value) > MAX_REASON or "\x00" in value:
        raise BadQuery(name, f"longer than {MAX_REASON} characters or holds a NUL character")
    if not value and required:
        raise BadQuery(name, "is required")
    return value or None


def _period(form, settings):
    zone = _field(form, "tz", required=False) or settings.timezone
    try:
        zone = zone_named(zone).key
    except (ValueError, KeyError) as error:
        raise BadQuery("tz", str(error) or f"not a time zone: {zone!r}") from None
    try:
        return parse_period(_field(form, "period"), zone), zone
    except ValueError as error:
        raise BadQuery("period", str(error)) from None


def _closed_text(period, result) -> str:
    """What `credit-ledger close` prints, in one paragraph."""
    row, report = result.row, result.report
    text = (f"closed {period.label} ({period.zone}) at {row.cutoff_at:%Y-%m-%dT%H:%M:%SZ}: {row.calls} calls, "
            f"{report.total.credits_charged} credits charged, reconciliation {result.verdict}"
            + (f" (accepted: {row.reason})" if row.reason else "") + f"; digest {row.calls_digest}")
    brackets = [f"bracket {a.account}: {a.bracket.describe()}" for a in result.reconciliation.accounts
                if a.bracket is not None]
    return "; ".join([text, *brackets])


@guarded(CLOSE)
async def close_form(request):
    form = await request.form()
    require_csrf(request, form)
    settings = request.app.state.settings
    period, zone = _period(form, settings)
    accept_gap = _field(form, "accept_gap", required=False)
    try:
        result = await run_in_threadpool(close_period, settings, request.app.state.ledger, period,
                                         accept_gap=accept_gap)
    except LedgerError as refused:
        return await run_in_threadpool(closes_view, request, zone, refusal=str(refused), status=409, form=dict(form))
    await run_in_threadpool(record, request, "close", f"{period.label} ({period.zone})",
                            {"period": period.label, "zone": period.zone, "accept_gap": accept_gap})
    return await run_in_threadpool(closes_view, request, zone, message=_closed_text(period, result))


@guarded(CLOSE)
async def reopen_form(request):
    form = await request.form()
    require_csrf(request, form)
    settings = request.app.state.settings
    period, zone = _period(form, settings)
    reason = _field(form, "reason")
    try:
        await run_in_threadpool(reopen_period, request.app.state.ledger, period, reason)
    except LedgerError as refused:
        return await run_in_threadpool(closes_view, request, zone, refusal=str(refused), status=409, form=dict(form))
    await run_in_threadpool(record, request, "reopen", f"{period.label} ({period.zone})",
                            {"period": period.label, "zone": period.zone, "reason": reason})
    return await run_in_threadpool(closes_view, request, zone,
                                   message=f"reopened {period.label} ({period.zone}): {reason}")


routes = [
    Route("/closes", closes_page, name="closes"),
    Route("/closes/close", close_form, methods=["POST"], name="close-period"),
    Route("/closes/reopen", reopen_form, methods=["POST"], name="reopen-period"),
]
