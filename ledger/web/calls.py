"""The Calls pages: `/calls` (filtered, a page of 100 at a time at any depth) and `/calls/{call_id}` (one call).

Pages are keyset pages, newest first: ordered by (started_at, id) descending, the next page is the calls
before the last one shown, named by an opaque `after=` cursor. No OFFSET and no count: a page deep in a
large ledger costs what the first one does (BENCHMARKS.md, "Dashboard (issue 27)"). Filters are the CLI's
(`credit-ledger calls --project … --user … --key … --model … --status … --class … --tag … --account …`,
`store.call_filters` says how each is matched) and every query is limited to the viewer's projects.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple
from urllib.parse import urlencode

from starlette.routing import Route

from ..accounting import pricing
from ..accounting.periods import Period
from ..accounting.records import ABORTED, COMPLETED, ERROR, FAILED, REFUSED
from ..money import fmt, from_nano
from ..reports.cells import group_label
from ..reports.calls import calls_selection, gone_before
from ..store.call_filters import CallFilter, key_of, tag_of, value_of
from ..store.call_rows import Position, call_page, one_call
from ..store.spend import Selection
from . import figures, params
from .gate import Refused, guarded
from .params import BadQuery
from .rendering import render

PAGE_SIZE = 100
STATUSES = (COMPLETED, ERROR, ABORTED, FAILED, REFUSED)
FILTERS = ("project", "user", "key", "model", "status", "class", "tag", "account")
PARAMETERS = ("period", "from", "to", "tz", *FILTERS)
# The columns a row of the page shows (store.call_rows' names).
PAGE_NAMES = ("call_id", "started_at", "status", "model_requested", "model_reported", "prompt_tokens",
              "completion_tokens", "reasoning_tokens", "credits_charged", "credits_expected", "pricing_class",
              "project", "end_user", "key_label", "key_last4", "account", "anomalies")

CLASS_MEANINGS = {
    pricing.OK: "the charge is the rate card's price to the nano-credit",
    pricing.ROUNDING: "the charge is the rate card's price rounded as the platform rounds (within the tolerance)",
    pricing.OVERCHARGE: "charged more than the rate card's price, beyond rounding",
    pricing.UNDERCHARGE: "charged less than the rate card's price, beyond rounding",
    pricing.REASONING_BILLED: "the charge matches the price with the reasoning tokens billed, which the card does not bill",
    pricing.WRONG_RATE: "the charge matches another model's or card's rate",
    pricing.CHARGED_ON_REFUND: "charged although the call failed upstream, whose credits are refunded",
    pricing.MISSING_CHARGE: "the answer carried no credits_consumed: what was charged is not known",
    pricing.MISSING_USAGE: "the answer carried no usage: the expected price cannot be computed",
    pricing.UNPRICED_MODEL: "no rate card in force prices this model",
}


class CallsQuery(NamedTuple):
    """A view's filters, read from its query string: the period in its zone, the filters, the viewer's selection."""

    zone: str
    period: Period
    filters: CallFilter
    account: str | None
    selection: Selection


def calls_query(request) -> CallsQuery:
    """The filters of /calls (and its API and exports); a value that names nothing is a 400 naming its parameter."""
    zone = params.zone(request, request.app.state.settings.timezone)
    period = params.period(request, zone, figures.utc_now())
    found = {name: params.text(request, name) for name in FILTERS}
    found["status"] = params.one_of(request, "status", STATUSES)
    found["class"] = params.one_of(request, "class", pricing.CLASSES)
    for name, check in (("project", value_of), ("user", value_of), ("model", value_of), ("key", key_of), ("tag", tag_of)):
        if found[name] is not None:
            try:
                check(found[name])
            except ValueError as error:
                raise BadQuery(name, str(error)) from None
    filters = CallFilter(project=found["project"], user=found["user"], key=found["key"], model=found["model"],
                         status=found["status"], pricing_class=found["class"], tag=found["tag"])
    viewer = request.state.viewer
    return CallsQuery(zone, period, filters, found["account"],
                      calls_selection(period.start, period.end, found["account"], viewer.projects))


class CallsPage(NamedTuple):
    """A page of /calls or /api/v1/calls: its filters, the cursor it was asked after, its rows (store.call_rows'
    `names`, newest first), the next page's position (None on the last) and what retention deleted of its range."""

    query: CallsQuery
    before: Position | None
    rows: list
    next_position: Position | None
    gone: object


def calls_page(request, names: tuple[str, ...]) -> CallsPage:
    """The page of calls the request's filters and `after=` cursor name (any other parameter is a 400)."""
    params.only(request, (*PARAMETERS, "after"))
    query = calls_query(request)
    before = position_of(request)
    with request.app.state.ledger.session() as session:
        rows, next_position = call_page(session, query.selection, names, PAGE_SIZE, filters=query.filters,
                                        before=before)
        gone = gone_before(session, query.selection)
    return CallsPage(query, before, rows, next_position, gone)


# ---------------------------------------------------------------- the cursor

_CURSOR = re.compile(r"(-?\d{1,17}):(\d{1,19})")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_LARGEST_ID = 2**63 - 1  # calls.id is a BIGINT: a larger one would reach the database as an error, not a 400


def cursor_of(position: Position) -> str:
    """The opaque `after=` of a page ending at `position`."""
    micros = (position.started_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}:{position.id}".encode()).decode().rstrip("=")


def position_of(request) -> Position | None:
    """The page's `after=` cursor, checked: anything but a cursor this dashboard made is a 400 naming it."""
    value = params.single(request, "after")
    if not value:
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        match = _CURSOR.fullmatch(text)
        if match is None or len(value) > 64:
            raise ValueError
        started_at = _EPOCH + int(match[1]) * _MICROSECOND
        if not _EPOCH <= started_at < _LATEST or int(match[2]) > _LARGEST_ID:
            raise ValueError
        return Position(started_at, int(match[2]))
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise BadQuery("after", "not a page cursor of this list: follow the page's own links") from None


def view_link(request, path: str, **changes) -> str:
    """`path` with the request's query string, `changes` applied (None removes a parameter)."""
    query = {k: v for k, v in request.query_params.multi_items()}
    for name, value in changes.items():
        query.pop(name, None)
        if value is not None:
            query[name] = value
    return path + (f"?{urlencode(query)}" if query else "")


# ---------------------------------------------------------------- values shown


def key_name(label: str | None, last4: str | None) -> str:
    """A key as the dashboard names it: its label, else … and its last four characters; never the key."""
    if label is not None:
        return label
    return f"…{last4}" if last4 is not None else "(none)"


def _credits(nano: int | None) -> Decimal | None:
    return None if nano is None else from_nano(int(nano))


def _started(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


class ListedCall(NamedTuple):
    call_id: str
    started_at: datetime
    status: str
    model_requested: str | None
    model_reported: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    credits_charged: Decimal | None
    credits_expected: Decimal | None
    pricing_class: str
    project: str | None
    user: str | None
    key: str
    account: str | None
    anomalies: str | None


def _listed(row: tuple) -> ListedCall:
    (call_id, started, status, requested, reported, prompt, completion, reasoning, charged, expected, cls, project,
     user, label, last4, account, anomalies) = row
    return ListedCall(call_id, _started(started), status, requested, reported, prompt, completion, reasoning,
                      _credits(charged), _credits(expected), cls, project, user, key_name(label, last4), account,
                      anomalies)


# ---------------------------------------------------------------- pages


@guarded()
def calls_list(request):
    page = calls_page(request, PAGE_NAMES)
    return render(
        request, "calls.html", zone=page.query.zone, as_of=figures.utc_now(), period=page.query.period,
        calls=[_listed(r) for r in page.rows],
        values={name: request.query_params.get(name, "") for name in PARAMETERS},
        statuses=STATUSES, classes=pricing.CLASSES, gone=page.gone,
        next_link=view_link(request, "/calls", after=cursor_of(page.next_position)) if page.next_position else None,
        newest_link=view_link(request, "/calls", after=None) if page.before is not None else None,
        export_csv=view_link(request, "/calls/export", after=None, format="csv"),
        export_json=view_link(request, "/calls/export", after=None, format="json"),
        page_size=PAGE_SIZE, link=lambda **changes: view_link(request, "/calls", after=None, **changes),
        label=group_label, amount=fmt,
    )


def _seconds(start: datetime | None, end: datetime | None) -> str | None:
    """The seconds from `start` to `end`, exact to the microsecond (0.3, not 0.300000)."""
    if start is None or end is None:
        return None
    delta = end - start
    return fmt(Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6))


@guarded()
def call_detail(request):
    params.only(request, ("tz",))
    zone = params.zone(request, request.app.state.settings.timezone)
    call_id = request.path_params["call_id"]
    if len(call_id) > 64:
        raise Refused("there is no such call", 404)
    with request.app.state.ledger.session() as session:
        found = one_call(session, call_id, request.state.viewer.projects)
    if found is None:
        raise Refused("there is no such call", 404)  # another project's call is as missing as an unknown id
    call, label, account, per_input, per_output, usd_per_credit, card_model = found
    return render(
        request, "call.html", zone=zone, as_of=figures.utc_now(), call=call, key=key_name(label, call.key_last4), account=account,
        card=None if per_input is None else {"input": per_input, "output": per_output,
                                             "usd_per_credit": usd_per_credit, "model": card_model},
        meaning=CLASS_MEANINGS.get(call.pricing_class, ""), clean=call.pricing_class in pricing.CLEAN_CLASSES,
        difference=None if call.credits_charged is None or call.credits_expected is None
        else call.credits_charged - call.credits_expected,
        tags=_tags(call.tags), anomalies=call.anomalies.split(",") if call.anomalies else [],
        to_first_byte=_seconds(call.started_at, call.first_byte_at), duration=_seconds(call.started_at, call.ended_at),
        streaming=_seconds(call.first_byte_at, call.ended_at),
        calls_link=view_link(request, "/calls", tz=zone), amount=fmt,
    )


def _tags(text: str | None) -> list[tuple[str, str]]:
    from .. import exactjson

    if not text:
        return []
    try:
        tags = exactjson.loads(text)
    except ValueError:
        return [("(tags)", text)]
    return [(str(k), v if isinstance(v, str) else exactjson.dumps(v)) for k, v in sorted(tags.items())] \
        if isinstance(tags, dict) else [("(tags)", text)]


routes = [
    Route("/calls", calls_list, name="calls"),
    Route("/calls/{call_id}", call_detail, name="call"),
]
