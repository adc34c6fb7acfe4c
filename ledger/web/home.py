"""The overview (`/`) and the balances' API (`/api/v1/balances`): this month so far, each account's balance, burn
and runway with its 30-day chart, the budgets, the reconciliation's verdict and the alerts open.

Every figure is the ledger's own: the month's spend is the spend report's total
(`build_report`, of the viewer's projects), its projection the budgets' (spent /
elapsed x the month's length, `accounting.budgets.projection`), the runways
those `credit-ledger budgets` reads. The reconciliation is the verdict the
service's hourly run kept (`credit-ledger run`, job_runs), with its time: not
reconciled again on each view (every window since the first snapshot is read
for the cumulative line: seconds on a large ledger); before any run, the page
says so and links to the Reconciliation page, which reconciles on request. A
viewer limited to projects sees no account money.
"""

from __future__ import annotations

from starlette.routing import Route

from ..accounting.budgets import projection
from ..accounting.periods import MONTH, calendar_period, to_date, zone_named
from ..exactjson import dumps
from ..money import fmt
from ..reports.spend import build_report
from ..accounting.verdict import StoredVerdict
from ..service.jobs import RECONCILE_WINDOW_DAYS
from ..store.alerts import alert_history
from ..store.job_runs import RECONCILED, last_job_run
from . import charts, figures, params
from .budgets import budget_chart
from .figures import ACCOUNT_MONEY, account_balances, budget_names, evaluation, json_text, refuse_limited
from .gate import guarded
from .rendering import render




def balance_chart(index: int, found) -> charts.Chart:
    return charts.lines(f"balance-{index}", f"Balance of {found.account} at the end of each day, in credits",
                        found.days, [(found.account, list(found.balances))])


@guarded()
def overview(request):
    params.only(request, ("tz",))
    settings = request.app.state.settings
    zone = params.zone(request, settings.timezone)
    viewer = request.state.viewer
    ledger = request.app.state.ledger
    now = figures.utc_now()
    month = calendar_period(MONTH, now, zone)
    with ledger.session() as session:
        report = build_report(session, to_date(month, now), (), projects=viewer.projects, now=now)
        accounts = [] if viewer.limited else account_balances(session, settings, now, zone_named(zone))
        open_alerts = alert_history(session, budgets=budget_names(settings, viewer), open_only=True)
        last_run = None if viewer.limited else last_job_run(session, "reconcile", RECONCILED)
    statuses = evaluation(request, viewer, now, balances=False).budgets  # the balances: account_balances above
    kept = None if last_run is None else StoredVerdict.from_detail(last_run.detail)
    return render(
        request, "home.html", zone=zone, as_of=now, month=month, total=report.total,
        projected=projection(report.total.credits_charged, month, now), accounts=accounts,
        balance_charts=[balance_chart(i, a) for i, a in enumerate(accounts)], statuses=statuses,
        budget_chart=budget_chart(statuses) if statuses else None, last_run=last_run, kept=kept,
        window_days=RECONCILE_WINDOW_DAYS, open_alerts=[h.alert for h in open_alerts], account_money=ACCOUNT_MONEY,
        fmt=fmt)


@guarded()
def balances_api(request):
    """Each account's newest balance, burn a day, runway and the last days' consumption (the figures of
    `credit-ledger budgets --json`'s balances, for every account); 403 JSON for a viewer limited to projects."""
    params.only(request, ())
    refuse_limited(request.state.viewer, "account balances")
    settings = request.app.state.settings
    now = figures.utc_now()
    with request.app.state.ledger.session() as session:
        found = account_balances(session, settings, now, zone_named(settings.timezone))
    balances = [{"account": a.account, "balance": a.runway.balance, "snapshot_at": a.runway.at,
                 "burn_per_day": a.runway.burn_per_day, "runway_days": a.runway.days_left,
                 "daily_consumption": list(a.runway.daily)} for a in found]
    return json_text(dumps({"at": now, "balances": balances}, indent=2) + "\n")


routes = [Route("/", overview, name="overview"), Route("/api/v1/balances", balances_api, name="api-balances")]
