"""What the money pages share: which budgets and alerts a viewer sees, the budgets' evaluation as `budgets` makes it,
each account's balance and runway, and the refusal of account-level money to a viewer limited to some projects.

A viewer limited to projects sees a budget only when its scope names one of
them (a budget of every call, of an account or of a model counts other
projects' spend); its alerts only those of such budgets. Account money
(balances, runway, reconciliation, closes' totals) covers every project: such
a viewer does not see it, and the pages say so.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from starlette.responses import Response

from ..accounting.budgets import Budget, Runway, runway
from ..accounting.snapshots import SnapshotPoint
from ..config import Settings
from ..service.alerting import Evaluation, evaluate
from ..service.runtime import host_name
from ..store.balances import ok_snapshots_of, snapshot_accounts
from .gate import Refused
from .viewer import Viewer

ACCOUNT_MONEY = ("account money (balances, runway, reconciliation, the closes' totals) covers every project's calls: "
                 "a viewer limited to some projects does not see it")
RUNWAY_DAYS = 8  # the snapshots `budgets` reads a runway from (ledger.service.alerting.balance_runways)
CHART_DAYS = 30


def utc_now() -> datetime:
    """The pages' clock (one place, so a test can hold it still)."""
    return datetime.now(timezone.utc)


def budgets_of(settings: Settings, viewer: Viewer) -> tuple[Budget, ...]:
    """The budgets the viewer sees: all, or those whose scope names one of its projects."""
    if viewer.projects is None:
        return settings.budgets
    return tuple(b for b in settings.budgets if b.scope.project is not None and b.scope.project in viewer.projects)


def budget_names(settings: Settings, viewer: Viewer) -> list[str] | None:
    """The names of the viewer's budgets for the alerts' query (None: every alert)."""
    return None if viewer.projects is None else [b.name for b in budgets_of(settings, viewer)]


def evaluation(request, viewer: Viewer, now: datetime, *, balances: bool = True) -> Evaluation:
    """Each of the viewer's budgets and (unlimited, and `balances`) each balance alert at `now`, as `credit-ledger
    budgets` gives them (nothing raised or resolved): a limited viewer's evaluation sums its budgets alone. A page
    that shows the budgets only asks for no balances (their runways read the snapshots again)."""
    settings: Settings = request.app.state.settings
    if viewer.projects is not None:
        alerting = replace(settings.alerting, budgets=budgets_of(settings, viewer), balance_alerts=())
        settings = replace(settings, alerting=alerting)
    elif not balances:
        settings = replace(settings, alerting=replace(settings.alerting, balance_alerts=()))
    return evaluate(request.app.state.ledger, settings, now=now, host=host_name(), write=False)


def refuse_limited(viewer: Viewer, what: str) -> None:
    if viewer.projects is not None:
        raise Refused(f"{what} is not shown to you: {ACCOUNT_MONEY}")


def json_text(text: str, status: int = 200) -> Response:
    """JSON written by the CLI's own writer (exact decimals), sent as is."""
    return Response(text, status_code=status, media_type="application/json", headers={"Cache-Control": "no-store"})


class AccountBalance(NamedTuple):
    """An account's newest balance and runway (as `budgets` reads them) and its balance at the end of each day."""

    account: str
    runway: Runway
    days: tuple[str, ...]  # the chart's days, oldest first
    balances: tuple  # the last balance of each day (None: no snapshot by then)


def account_names(settings: Settings, session) -> list[str]:
    """The configured accounts, then any other the snapshots name."""
    names = [a.name for a in settings.accounts]
    return names + [n for n in snapshot_accounts(session) if n not in names]


def account_balances(session, settings: Settings, now: datetime, zone) -> list[AccountBalance]:
    """Each account's runway (from the last RUNWAY_DAYS days of snapshots, as `budgets` does) and its balance at the
    end of each of the last CHART_DAYS days in `zone`: one query for every account's snapshots."""
    found = []
    snapshots = ok_snapshots_of(session, account_names(settings, session), now - timedelta(days=CHART_DAYS + 1), now)
    for name, points in snapshots.items():
        recent = [p for p in points if p.taken_at >= now - timedelta(days=RUNWAY_DAYS)]
        days, balances = daily_balances(points, now, zone)
        found.append(AccountBalance(name, runway(name, recent, now), days, balances))
    return found


def daily_balances(points: list[SnapshotPoint], now: datetime, zone) -> tuple[tuple[str, ...], tuple]:
    """The balance of the last snapshot by the end of each of the last CHART_DAYS days (local dates in `zone`)."""
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]
    values, index, last = [], 0, None
    for day in days:
        while index < len(points) and points[index].taken_at.astimezone(zone).date() <= day:
            last = points[index].balance
            index += 1
        values.append(last)
    return tuple(d.isoformat() for d in days), tuple(values)
