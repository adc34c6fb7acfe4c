"""The Spend page (`/spend`): a period's report grouped by up to two keys, its daily chart and its table.

The figures are `build_report`'s, the same as `credit-ledger report` gives
for the same period, zone and keys, read from one snapshot of the ledger and
limited in the queries to the projects the viewer may see. Every bar,
segment and row links to the calls behind it on `/calls`, with the group's
values as the report labels them (`(none)` for no value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import urlencode

from starlette.routing import Route

from ..accounting.group_keys import GroupKey
from ..accounting.periods import RANGE, Period
from ..errors import ReportError
from ..money import fmt
from ..reports.cells import group_label
from ..reports.run import check_account
from ..reports.spend import CALLER_TEXT, Figures, SpendReport, bucket_bounds, build_report, grouped, share
from ..reports.xlsx_figures import MAX_SERIES, Daily, daily, daily_of
from ..store.call_filters import value_of
from ..store.reading import one_snapshot
from ..store.spend import usd_per_credit
from . import params
from . import figures as web_figures  # the pages' clock (figures: a group's, here)
from .charts import stacked_bars
from .gate import guarded
from .rendering import render
from .viewer import EXPORT, Viewer

PARAMETERS = ("period", "from", "to", "tz", "by", "account", "project")
# The /calls page's parameter of each group key (tag:NAME is tag=NAME=value; time keys narrow the period).
CALLS_PARAMETER = {"project": "project", "user": "user", "key": "key", "model": "model", "account": "account"}


@dataclass(frozen=True)
class SpendQuery:
    """What a Spend view, its export and the API's spend route ask for, checked."""

    period: Period
    zone: str
    keys: tuple[GroupKey, ...]
    account: str | None
    project: str | None  # the view's project filter (a project's name as recorded)
    projects: frozenset[str] | None  # what the queries are limited to: the filter within the viewer's projects

    def query_string(self, **extra: str) -> str:
        """The view's own parameters (for its export links and its form), plus `extra`."""
        return urlencode({**self.period_parameters(self.period.start, self.period.end), **self.filters(), **extra})

    def filters(self) -> dict[str, str]:
        found = {"tz": self.zone}
        if self.keys:
            found["by"] = ",".join(k.label for k in self.keys)
        if self.account is not None:
            found["account"] = self.account
        if self.project is not None:
            found["project"] = self.project
        return found

    def period_parameters(self, start: datetime, end: datetime, label: str | None = None) -> dict[str, str]:
        """`period=NAME` when [start, end) is a named period (the view's own, or a bucket's), else from/to."""
        if label is None and (start, end) == (self.period.start, self.period.end) and named(self.period):
            label = self.period.label
        if label is not None:
            return {"period": label}
        return {"from": _utc(start), "to": _utc(end)}


def named(period: Period) -> bool:
    """A period given by its name (2026-11), not a range nor a month so far (`2026-12-to-date`, which moves)."""
    return period.kind != RANGE and not period.label.endswith("-to-date")


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def spend_query(request, viewer: Viewer, names: tuple[str, ...] = PARAMETERS) -> SpendQuery:
    """The view's parameters, each checked (a BadQuery naming the bad one), and the projects its queries may read."""
    params.only(request, names)
    zone = params.zone(request, request.app.state.settings.timezone)
    if params.single(request, "to") and not params.single(request, "from"):
        raise params.BadQuery("to", "needs from")
    period = params.period(request, zone, web_figures.utc_now())
    keys = params.group_keys(request)
    account = params.text(request, "account")
    project = params.text(request, "project")
    return SpendQuery(period, zone, keys, account, project, scope(viewer.projects, project))


def scope(visible: frozenset[str] | None, project: str | None) -> frozenset[str] | None:
    """The projects a query reads: the filter's, within what the viewer may see (none: another's project)."""
    if project is None:
        return visible
    return frozenset({project}) & visible if visible is not None else frozenset({project})


def report_error(error: ReportError, query: SpendQuery) -> params.BadQuery:
    """A report the parameters cannot make, as a 400 naming the parameter to change."""
    message = str(error)
    if query.account is not None and "account" in message:
        return params.BadQuery("account", message)
    if "groups in one report" in message:
        return params.BadQuery("by", message)
    return params.BadQuery("period" if "period" in message or query.period.kind != "range" else "from", message)


# ---------------------------------------------------------------- drill-down links


class CallsLinks:
    """The /calls view of each group of `keys`: its period (narrowed to its day, week or month) and its key values."""

    def __init__(self, query: SpendQuery, keys: tuple[GroupKey, ...]) -> None:
        self.query, self.keys = query, keys
        _, spans = bucket_bounds(keys, query.period)
        self.buckets = {name: {b.label: b for b in found} for name, found in spans.items()}

    def __call__(self, values: tuple[str, ...]) -> str | None:
        return calls_link(self.query, self.keys, values, self.buckets)


# A model group "reported (requested asked)" opens the calls of the model reported (/calls matches either name).
_REQUESTED = re.compile(r" \(requested .+\)\Z", re.S)


def calls_link(query: SpendQuery, keys: tuple[GroupKey, ...], values: tuple[str, ...],
               buckets_of: dict[str, dict[str, Period]]) -> str | None:
    start, end = query.period.start, query.period.end
    buckets, found = [], {}
    for key, value in zip(keys, values):
        if key.is_time:
            bucket = buckets_of[key.name][value]
            buckets.append(bucket)
            start, end = max(start, bucket.start), min(end, bucket.end)
        elif key.name == "tag":
            text = value_of(value)
            if text is None:
                return None  # calls without the tag: /calls has no filter for them
            found["tag"] = f"{key.tag}={text}"
        elif key.name == "model":
            found["model"] = _REQUESTED.sub("", value) if value[:1] != '"' else value
        else:
            found[CALLS_PARAMETER[key.name]] = value
    if query.account is not None:
        found.setdefault("account", query.account)
    if query.project is not None:
        found.setdefault("project", group_label(query.project))  # /calls reads a project as its group label
    # A bucket's name when the calls are exactly its own (a day inside the period), else the UTC bounds.
    label = next((b.label for b in buckets if (b.start, b.end) == (start, end)), None)
    window = query.period_parameters(start, end, label)
    return "/calls?" + urlencode({**window, "tz": query.zone, **found})


# ---------------------------------------------------------------- the page


@dataclass(frozen=True)
class Row:
    """A table row: its group's values (or a label), figures and share, and the calls behind it."""

    values: tuple[str, ...]
    cells: tuple[str, ...]
    link: str | None  # None: no view of /calls holds just this group's calls


def cells(figures: Figures, share: Decimal | None) -> tuple[str, ...]:
    """As the CLI's table shows them (`reports.spend_out`): exact credits, USD to the cent, share in percent."""
    return (str(figures.calls), str(figures.failed_calls), f"{figures.prompt_tokens:,}",
            f"{figures.completion_tokens:,}", fmt(figures.credits_charged), fmt(figures.credits_expected),
            fmt(figures.difference), str(figures.findings), "?" if figures.usd is None else fmt(figures.usd, 2),
            "" if share is None else f"{fmt(share * 100, 1)}%")


COLUMNS = ("calls", "failed", "prompt", "completion", "charged", "expected", "difference", "findings", "usd", "share")


def daily_figures(report: SpendReport, session) -> Daily:
    """The chart's figures: from the report's own groups when they are by day and the stacked key; else its top
    values' sums a day and each day's total (its "(other)" the rest), two small queries whatever the key's values."""
    stack = next((k for k in report.keys if not k.is_time), None)
    wanted = (GroupKey("day"),) + ((stack,) if stack is not None else ())
    if set(report.keys) == set(wanted):
        order = [report.keys.index(k) for k in wanted]
        return daily_of([(tuple(g.values[i] for i in order), g.figures) for g in report.groups], stack, report.period)
    rates = usd_per_credit(session)
    if stack is None:
        return daily(session, report, rates)
    return top_daily(session, report, stack, rates)


def top_daily(session, report: SpendReport, stack: GroupKey, rates) -> Daily:
    """The Daily figures of `stack`'s top MAX_SERIES values (as `daily_of` picks them, from the report's groups:
    their credits over the period), summed a day over their calls alone, and "(other)" as each day's total less
    theirs: the same figures as grouping every value by day, without its day x value groups."""
    position = report.keys.index(stack)
    per_value: dict[str, Decimal] = {}
    for group in report.groups:
        label = group.values[position]
        per_value[label] = per_value.get(label, Decimal(0)) + group.figures.credits_charged
    top = sorted(per_value, key=lambda v: (-per_value[v], v))[:MAX_SERIES]
    raw = frozenset(value_of(v) if stack.name in CALLER_TEXT else v for v in top)
    among = replace(report.selection, key_values=(stack, raw))
    items, _ = grouped(session, among, (GroupKey("day"), stack), report.period, rates)
    found = daily_of(items, stack, report.period)
    columns = [found.series.index(v) if v in found.series else None for v in top]
    table = {day: [Decimal(0) if c is None else sums[c] for c in columns] for day, sums in found.table.items()}
    # Each day's total, read even when no value is left over: the page's queries are as many whatever the data.
    totals = daily_of(grouped(session, report.selection, (GroupKey("day"),), report.period, rates)[0], None,
                      report.period)
    if len(per_value) > len(top):
        for day, sums in table.items():
            sums.append(totals.table[day][0] - sum(sums, Decimal(0)))
    return Daily(stack, top + (["(other)"] if len(per_value) > len(top) else []), found.days, table)


def chart_of(query: SpendQuery, report: SpendReport, session):
    """Credits charged a local day, a segment per value of the first non-time key (its top values, then "(other)")."""
    figures = daily_figures(report, session)
    days = [day.label for day in figures.days]
    series = [(name, [figures.table[day][i] for day in days]) for i, name in enumerate(figures.series)]
    link = CallsLinks(query, (GroupKey("day"),) + ((figures.stack,) if figures.stack is not None else ()))
    links = []
    for i, name in enumerate(figures.series):
        # "(other)" is many values: no one view of /calls holds just its calls.
        other = figures.stack is not None and i == MAX_SERIES
        links.append([None if other else link((day,) + ((name,) if figures.stack else ())) for day in days])
    title = "Credits charged a day" + (f" by {figures.stack.label}" if figures.stack else "")
    return stacked_bars("spend-daily", title, days, series, links), figures


# The table shows the biggest groups (or the first, when the first key is a time): 2,000 rows of links cost the
# page a second to render and nobody reads them; the rest is one row of their sums, and the exports have every row.
MAX_ROWS = 200


def page_rows(query: SpendQuery, report: SpendReport) -> tuple[list[Row], Row | None]:
    """The first MAX_ROWS groups' rows, and one row summing the rest (None: none left): they add up to the total."""
    link = CallsLinks(query, report.keys)
    rows = [Row(group.values, cells(group.figures, group.share), link(group.values))
            for group in report.groups[:MAX_ROWS]]
    rest = report.groups[MAX_ROWS:]
    if not rest:
        return rows, None
    figures = Figures()
    for group in rest:
        figures = figures + group.figures
    label = f"({len(rest):,} more groups: every row in the export)"
    return rows, Row((label,), cells(figures, share(figures.credits_charged, report.total.credits_charged)), None)


@guarded()
def spend_page(request):
    viewer: Viewer = request.state.viewer
    query = spend_query(request, viewer)
    ledger = request.app.state.ledger
    try:
        if query.account is not None:
            check_account(request.app.state.settings, ledger, query.account)
        with one_snapshot(ledger) as session:
            report = build_report(session, query.period, query.keys, query.account, projects=query.projects,
                                  now=web_figures.utc_now())
            chart, figures = chart_of(query, report, session)
    except ReportError as error:
        raise report_error(error, query) from None
    total_link = CallsLinks(query, ())(())
    rows, rest = page_rows(query, report) if report.keys else ([], None)
    return render(
        request, "spend.html", zone=query.zone, as_of=report.generated_at, query=query, report=report, chart=chart,
        daily=figures, rows=rows, rest=rest, columns=COLUMNS, fmt=fmt, labels=[k.label for k in report.keys],
        total=cells(report.total, None), total_link=total_link,
        adjustments=report.adjustments,
        may_export=viewer.may(EXPORT), formats=("csv", "json", "focus") + (("xlsx",) if not viewer.limited else ()),
        export_query=query.query_string(),
        period_name=query.period.label if named(query.period) else "",
    )


routes = [Route("/spend", spend_page, name="spend")]
