"""The money pages and their API: the CLI's figures (`budgets`, `reconcile`, `check`), a viewer limited to projects
seeing its budgets and findings and no account money, a fixed number of queries whatever the data, hostile text
inert and bad parameters a 400."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from web_money_rows import (FINGERPRINT, HOSTILE, MONTH_START, NOW, calls, direct, fill, hold_clock, money_settings,
                            table_rows)

from ledger.accounting.budgets import projection
from ledger.accounting.periods import MONTH, calendar_period
from ledger.commands import alerts as alert_commands, balances, budgets, calls as call_commands
from ledger.accounting.verdict import StoredVerdict
from ledger.exactjson import loads
from ledger.service.jobs import reconcile_job, run_job
from ledger.service.runtime import Service
from ledger.store.job_runs import finish_job_run, job_runs, start_job_run
from ledger.web.rendering import local_time
from ledger.money import fmt
from ledger_rows import insert, snapshot
from ledger.web.viewer import Viewer

FINANCE = Viewer("fin", "finance", csrf="t" * 32)
SEARCH_ONLY = Viewer("lim", "viewer", projects=frozenset({"search"}), csrf="l" * 32)
ALL_CHARGED = Decimal("3.25")  # the six calls of web_money_rows.calls
SEARCH_CHARGED = Decimal("1.25")


def d(value) -> Decimal | None:
    """An amount of the CLI's JSON (an exact decimal string)."""
    return None if value is None else Decimal(value)


@pytest.fixture
def money(ledger, web_settings, monkeypatch):
    settings = money_settings(web_settings)
    fill(ledger, settings)
    hold_clock(monkeypatch)
    return settings


def test_the_budgets_api_is_what_budgets_json_prints_and_a_limited_viewer_gets_its_budgets_alone(money, client_as):
    answer = client_as(FINANCE, money).get("/api/v1/budgets")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    assert answer.text == direct(budgets.budgets, money, as_json=True)
    limited = loads(client_as(SEARCH_ONLY, money).get("/api/v1/budgets").text)
    assert [b["name"] for b in limited["budgets"]] == ["search-month"]
    assert Decimal(limited["budgets"][0]["spent"]) == SEARCH_CHARGED and limited["balances"] == []


def test_the_reconciliation_api_is_what_reconcile_json_prints_and_is_refused_to_a_limited_viewer(money, client_as):
    start, end = NOW - timedelta(days=5), NOW - timedelta(hours=1)
    query = {"from": start.isoformat(), "to": end.isoformat()}
    answer = client_as(FINANCE, money).get("/api/v1/reconciliation", params=query)
    assert answer.status_code == 200
    assert answer.text == direct(balances.reconcile, money, start=start, end=end, as_json=True)
    assert loads(answer.text)["accounts"][0]["account"] == "prod"
    refused = client_as(SEARCH_ONLY, money).get("/api/v1/reconciliation", params=query)
    assert refused.status_code == 403 and "every project" in refused.json()["error"]["message"]
    assert client_as(SEARCH_ONLY, money).get("/api/v1/balances").status_code == 403


def test_the_balances_api_gives_the_runway_budgets_reads(money, client_as):
    found = loads(client_as(FINANCE, money).get("/api/v1/balances").text)
    expected = loads(direct(budgets.budgets, money, as_json=True))["balances"][0]
    (prod,) = found["balances"]
    for name in ("account", "balance", "snapshot_at", "burn_per_day", "runway_days", "daily_consumption"):
        assert prod[name] == expected[name], name


def test_the_overview_shows_the_month_the_balances_the_budgets_the_verdict_and_the_open_alerts(money, client_as):
    page = client_as(FINANCE, money).get("/")
    assert page.status_code == 200
    month = calendar_period(MONTH, NOW, "UTC")
    figures = dict((row[0], row[1]) for row in table_rows(page.text, "figures"))
    assert figures["Spent"].startswith(f"{fmt(ALL_CHARGED, 2)} credits")
    assert figures["Projected to the month's end"] == f"{fmt(projection(ALL_CHARGED, month, NOW), 2)} credits"
    assert figures["Calls"] == "6" and figures["Pricing findings"] == "3"
    expected = loads(direct(budgets.budgets, money, as_json=True))
    (balance,) = table_rows(page.text, "balances")[1:]
    prod = expected["balances"][0]
    assert balance[:4] == ["prod", fmt(d(prod["balance"]), 2), fmt(d(prod["burn_per_day"]), 2),
                           fmt(d(prod["runway_days"]), 1)]
    assert 'id="balance-0"' in page.text and len(table_rows(page.text, "daily")) == 31
    rows = {row[0]: row for row in table_rows(page.text, "budgets")[1:]}
    assert set(rows) == {"search-month", "support-month", "all-month"}
    for b in expected["budgets"]:
        assert rows[b["name"]][2:7] == [fmt(d(b["spent"]), 2), fmt(d(b["limit"]), 2), fmt(d(b["percent"]), 1) + "%",
                                        fmt(d(b["projection"]), 2), b["state"]]
    assert rows["all-month"][7] == "enforced" and 'id="budgets-chart"' in page.text
    assert "search-month" in page.text.split("Alerts open")[1]


def reconciliation_section(text: str) -> str:
    return text.split('<section class="reconciliation">')[1].split("</section>")[0]


def test_the_overview_before_any_reconciliation_says_so_and_links_to_the_reconciliation_page(money, client_as):
    """The Overview reconciled on each view (every window since the first snapshot: seconds on a large ledger) and
    showed that as "Last 2 days: ..."; it shows the service's kept verdict, and before the first run says so."""
    section = reconciliation_section(client_as(FINANCE, money).get("/").text)
    assert "Not reconciled yet." in section and 'href="/reconciliation"' in section
    assert table_rows(section, "unrecorded") == [] and "reconciled by the service" not in section


def kept_run(ledger):
    with ledger.session() as session:
        run = job_runs(session, "reconcile")[-1]
    kept = StoredVerdict.from_detail(run.detail)
    assert kept is not None and kept.end is not None
    return run, kept


def shows_what_reconcile_gives(section: str, settings, run, kept) -> None:
    """The verdict, its time, and each account's cumulative line as `reconcile --json --to (the run's end)` gives."""
    assert f'reconciled by the service at <span class="reconciled-at">{local_time(run.ended_at, "UTC")}' in section
    cli = loads(direct(balances.reconcile, settings, end=kept.end, as_json=True))
    assert f"<strong>{html.escape(kept.verdict_text, quote=False)}</strong>" in section
    assert kept.verdict == cli["verdict"]
    assert f"credit-ledger reconcile --to {kept.end:%Y-%m-%dT%H:%M:%SZ}" in section
    (prod,) = table_rows(section, "unrecorded")[1:]
    (expected,) = cli["accounts"]
    line = expected["cumulative"]
    unrecorded = next((e["credits"] for e in line["explanations"] if e["name"] == "unrecorded_spend"), None)
    assert prod == ["prod", local_time(datetime.fromisoformat(line["start"]), "UTC"), line["status"],
                    fmt(d(line["difference"]), 2), "none" if unrecorded is None else fmt(d(unrecorded), 2)]
    assert kept.accounts[0].difference == d(line["difference"])  # exact, as reconcile --json gives it
    assert kept.accounts[0].unrecorded_spend == d(unrecorded)


def test_the_overview_shows_the_verdict_the_service_kept_as_reconcile_gives_its_cumulative_lines(
        money, ledger, client_as):
    service = Service(money, ledger, reconcile_settle_seconds=0)
    assert run_job(service, "reconcile", reconcile_job) == "gap"  # the platform took 105 credits, the ledger 3.25
    run, kept = kept_run(ledger)
    section = reconciliation_section(client_as(FINANCE, money).get("/").text)
    shows_what_reconcile_gives(section, money, run, kept)
    assert "<strong>unexplained gap (prod)</strong>" in section and kept.accounts[0].difference == Decimal("101.75")
    # a later poll and run: the newest verdict is the one shown
    snapshot(ledger, "prod", NOW - timedelta(minutes=1), 10_000, 255)
    assert run_job(service, "reconcile", reconcile_job) == "gap"
    later, kept = kept_run(ledger)
    assert later.id != run.id and kept.accounts[0].difference == Decimal("151.75")
    shows_what_reconcile_gives(reconciliation_section(client_as(FINANCE, money).get("/").text), money, later, kept)


def test_the_overview_shows_a_run_of_an_earlier_version_in_its_own_words(money, ledger, client_as):
    with ledger.session() as session:
        run_id = start_job_run(session, "reconcile", NOW - timedelta(hours=2), "old-host")
        finish_job_run(session, run_id, NOW - timedelta(hours=2), "gap", "prod gap difference 101.75")
        failed = start_job_run(session, "reconcile", NOW - timedelta(hours=1), "old-host")
        finish_job_run(session, failed, NOW - timedelta(hours=1), "failed", "OperationalError: away")
    section = reconciliation_section(client_as(FINANCE, money).get("/").text)
    when = local_time(NOW - timedelta(hours=2), "UTC")
    assert f"at {when}: <strong>gap</strong> (prod gap difference 101.75)" in section
    assert "away" not in section  # a failed run kept no verdict


def test_a_limited_viewer_sees_its_projects_month_and_budgets_and_no_account_money(money, client_as):
    page = client_as(SEARCH_ONLY, money).get("/")
    assert page.status_code == 200
    figures = dict((row[0], row[1]) for row in table_rows(page.text, "figures"))
    assert figures["Spent"].startswith(f"{fmt(SEARCH_CHARGED, 2)} credits")
    assert figures["Calls"] == "3" and figures["Pricing findings"] == "1"
    assert table_rows(page.text, "balances") == [] and 'id="balance-0"' not in page.text
    assert "covers every project" in reconciliation_section(page.text)
    assert table_rows(reconciliation_section(page.text), "unrecorded") == []
    assert [row[0] for row in table_rows(page.text, "budgets")[1:]] == ["search-month"]
    open_alerts = page.text.split("Alerts open")[1]
    assert "search-month" in open_alerts and "all-month" not in open_alerts
    budgets_page = client_as(SEARCH_ONLY, money).get("/budgets")
    assert [row[0] for row in table_rows(budgets_page.text, "budgets")[1:]] == ["search-month"]
    alerts = table_rows(budgets_page.text, "alerts")[1:]
    assert alerts and all(":search-month:" in f":{row[1]}" for row in alerts)
    assert "all-month" not in budgets_page.text
    reconciliation = client_as(SEARCH_ONLY, money).get("/reconciliation")
    assert reconciliation.status_code == 403 and "covers every project" in reconciliation.text


def test_the_budgets_page_shows_each_budget_and_the_alerts_with_their_deliveries(money, client_as):
    page = client_as(FINANCE, money).get("/budgets")
    expected = loads(direct(budgets.budgets, money, as_json=True))
    rows = {row[0]: row for row in table_rows(page.text, "budgets")[1:]}
    for b in expected["budgets"]:
        assert rows[b["name"]][3] == fmt(d(b["spent"]), 2) and rows[b["name"]][8] == b["state"]
    assert rows["all-month"][9].startswith("enforced")
    history = loads(direct(alert_commands.show_alerts, money, as_json=True))["alerts"]
    alerts = table_rows(page.text, "alerts")[1:]
    assert [row[1] for row in alerts] == [a["alert"] for a in history]
    assert all("alert to rec: pending" in row[4] for row in alerts)


def test_the_pricing_page_gives_the_totals_check_gives_and_a_limited_viewer_its_projects_alone(money, client_as):
    page = client_as(FINANCE, money).get("/pricing")
    assert page.status_code == 200
    check = loads(direct(call_commands.check, money, since=MONTH_START, until=NOW, as_json=True))
    totals = table_rows(page.text, "totals")[1:]
    assert totals == [[t["pricing_class"], str(t["calls"]), fmt(d(t["credits_expected"])), fmt(d(t["credits_charged"])),
                       fmt(d(t["difference"]))] for t in check["totals"]]
    assert len(table_rows(page.text, "findings")) - 1 == len(check["findings"]) == 3
    link = re.search(r'href="(/calls\?[^"]*class=overcharge[^"]*)"', page.text).group(1)
    drilled = client_as(FINANCE, money).get(html.unescape(link))
    assert drilled.status_code == 200
    overcharged = {f["call_id"] for f in check["findings"] if f["pricing_class"] == "overcharge"}
    assert len(overcharged) == 2 and all(f"/calls/{call_id}" in drilled.text for call_id in overcharged)
    assert all(f"/calls/{f['call_id']}" not in drilled.text for f in check["findings"] if f["call_id"] not in overcharged)
    assert "&lt;script&gt;alert(1)" in page.text and "<script>alert(1)" not in page.text
    limited = client_as(SEARCH_ONLY, money).get("/pricing")
    assert [row[:2] for row in table_rows(limited.text, "totals")[1:]] == [["overcharge", "1"]]
    assert "wrong_rate" not in limited.text and "&lt;script&gt;" not in limited.text


def test_the_reconciliation_page_gives_reconciles_windows_and_verdict(money, client_as):
    start, end = NOW - timedelta(days=5), NOW - timedelta(hours=1)
    page = client_as(FINANCE, money).get("/reconciliation", params={"from": start.isoformat(), "to": end.isoformat()})
    assert page.status_code == 200
    result = loads(direct(balances.reconcile, money, start=start, end=end, as_json=True))
    account = result["accounts"][0]
    windows = table_rows(page.text, "windows")[1:]
    assert len(windows) == len(account["windows"]) + 1  # and the cumulative line
    assert [row[8] for row in windows[:-1]] == [w["status"] for w in account["windows"]]
    assert windows[-1][6] == fmt(d(account["cumulative"]["difference"]), 2)
    assert f"Verdict: {result['verdict']}" in page.text
    assert "credit-ledger reconcile --from" in page.text
    default = client_as(FINANCE, money).get("/reconciliation")
    assert default.status_code == 200 and "over the last 7 days" in default.text


def test_the_rate_cards_page_shows_the_default_card_in_force_and_its_rates(money, client_as):
    from ledger.accounting.pricing import default_rate_book

    page = client_as(FINANCE, money).get("/rate-cards")
    assert page.status_code == 200
    card = default_rate_book().cards[-1]
    assert card.name in page.text and "in force now" in page.text
    rows = table_rows(page.text, "rates")[1:]
    for model, rate in card.rates.items():
        assert [model, rate.endpoint, fmt(rate.input_per_million), fmt(rate.output_per_million)] in rows


def statements(counter) -> list[str]:
    """What a request ran, less the temporary table a connection creates at its first reconciliation."""
    return [s[:120] for s in counter.statements if not s.lstrip().startswith("CREATE TEMPORARY TABLE")]


@pytest.mark.parametrize("path", ["/", "/budgets", "/pricing", "/reconciliation", "/closes", "/rate-cards",
                                  "/api/v1/budgets", "/api/v1/balances", "/api/v1/reconciliation"])
def test_a_page_makes_as_many_queries_whatever_the_data(path, money, ledger, client_as, count_queries):
    client = client_as(FINANCE, money)
    assert client.get(path).status_code == 200  # the first request: the app's first connections
    counter = count_queries()
    client.get(path)
    first = statements(counter)
    insert(ledger, calls(copies=4))
    for hours in range(1, 40):
        snapshot(ledger, "prod", NOW - timedelta(hours=hours, minutes=30), 10_000, 1000 + hours)
    for _ in range(2):  # the Overview's verdict: none kept before, the newest of two now
        run_job(Service(money, ledger, reconcile_settle_seconds=0), "reconcile", reconcile_job)
    counter = count_queries()
    assert client.get(path).status_code == 200
    assert len(statements(counter)) == len(first), (first, statements(counter))
    assert len(first) <= 34  # nor do budgets, accounts, closes and rate cards (test_page_queries)


@pytest.mark.parametrize("path, parameter", [
    ("/pricing?period=2026-13", "period"), ("/pricing?from=yesterday", "from"), ("/reconciliation?to=soon", "to"),
    ("/reconciliation?from=2026-12-02&to=2026-12-01", "from"), ("/budgets?since=x", "since"),
    ("/closes?colour=red", "colour"), ("/rate-cards?tz=Mars/Olympus", "tz"), ("/?period=2026-11", "period"),
])
def test_a_bad_parameter_is_a_400_naming_it(path, parameter, money, client_as):
    page = client_as(FINANCE, money).get(path)
    assert page.status_code == 400 and parameter in page.text and "Traceback" not in page.text


def test_the_api_refuses_a_bad_parameter_as_json(money, client_as):
    answer = client_as(FINANCE, money).get("/api/v1/reconciliation", params={"from": "2026-12-02", "to": "2026-12-01"})
    assert answer.status_code == 400 and answer.json()["error"]["parameter"] == "from"
    assert client_as(FINANCE, money).get("/api/v1/budgets?x=1").json()["error"]["parameter"] == "x"


def test_an_empty_ledger_renders_every_page(ledger, web_settings, client_as):
    client = client_as(FINANCE)
    for path in ("/", "/budgets", "/pricing", "/reconciliation", "/closes", "/rate-cards"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[-500:])
    assert FINGERPRINT not in client.get("/").text
    assert HOSTILE not in client.get("/pricing").text
