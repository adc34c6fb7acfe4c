"""The closes page: what `credit-ledger closes` lists, and finance closing and reopening a period through its forms
(the CSRF token required, other roles refused, the ledger's refusals shown, each an audit event)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from web_money_rows import MONTH_START, direct, table_rows

from ledger.accounting.periods import MONTH, calendar_period, preceding
from ledger.commands import closes
from ledger.exactjson import loads
from ledger.money import fmt
from ledger.store.closes import close_rows
from ledger_rows import call_values, insert
from ledger.web.viewer import Viewer

FINANCE = Viewer("fin", "finance", csrf="t" * 32)
ADMIN = Viewer("adm", "admin", csrf="a" * 32)
VIEWER = Viewer("vie", "viewer", csrf="v" * 32)
SEARCH_ONLY = Viewer("lim", "viewer", projects=frozenset({"search"}), csrf="l" * 32)
LAST_MONTH = preceding(calendar_period(MONTH, MONTH_START, "UTC"))


@pytest.fixture
def last_month(ledger):
    """Two calls of last month (no accounts, no snapshots: a close records nothing to reconcile)."""
    insert(ledger, [call_values(started_at=LAST_MONTH.start.replace(day=3), project="search", charged="0.5"),
                    call_values(started_at=LAST_MONTH.start.replace(day=9), project="support", charged="0.25")])


def closed_rows(ledger) -> list:
    with ledger.session() as session:
        return [(r.action, r.period_label) for r in close_rows(session)]


def test_finance_closes_and_reopens_a_period_through_the_forms_and_the_page_lists_what_closes_lists(
        last_month, ledger, web_settings, client_as):
    from web_audit import audit_rows

    client = client_as(FINANCE)
    page = client.get("/closes")
    assert page.status_code == 200 and "No period has been closed" in page.text and 'action="/closes/close"' in page.text
    closed = client.post("/closes/close", data={"csrf": FINANCE.csrf, "period": LAST_MONTH.label, "tz": "UTC"})
    assert closed.status_code == 200, closed.text
    assert f"closed {LAST_MONTH.label} (UTC)" in closed.text and "2 calls, 0.75 credits charged" in closed.text
    listed = loads(direct(closes.show_closes, web_settings, as_json=True))
    (row,) = table_rows(closed.text, "closes")[1:]
    (entry,) = listed
    assert row[:8] == [entry["period"], entry["zone"], "close (in force)", entry["at"], str(entry["calls"]),
                       fmt(Decimal(entry["credits_charged"])), fmt(Decimal(entry["credits_expected"])),
                       entry["reconciliation"]]
    assert row[8] == entry["digest"][:16]
    again = client.post("/closes/close", data={"csrf": FINANCE.csrf, "period": LAST_MONTH.label, "tz": "UTC"})
    assert again.status_code == 409 and "is closed already" in again.text
    reopened = client.post("/closes/reopen", data={"csrf": FINANCE.csrf, "period": LAST_MONTH.label, "tz": "UTC",
                                                   "reason": "a late <b>refund</b>\nforged line"})
    assert reopened.status_code == 200 and f"reopened {LAST_MONTH.label} (UTC)" in reopened.text
    assert "a late &lt;b&gt;refund&lt;/b&gt;\nforged line" in reopened.text and "<b>refund" not in reopened.text
    assert closed_rows(ledger) == [("close", LAST_MONTH.label), ("reopen", LAST_MONTH.label)]
    target = f"{LAST_MONTH.label} (UTC)"
    assert audit_rows(ledger) == [  # the refused second close is not audited: it changed nothing
        ("fin", "close", target, {"period": LAST_MONTH.label, "zone": "UTC", "accept_gap": None}),
        ("fin", "reopen", target, {"period": LAST_MONTH.label, "zone": "UTC", "reason": "a late <b>refund</b>\nforged line"})]


def test_the_ledgers_refusals_are_the_pages_message_and_change_nothing(last_month, ledger, client_as):
    client = client_as(FINANCE)
    this_month = calendar_period(MONTH, MONTH_START, "UTC").label
    running = client.post("/closes/close", data={"csrf": FINANCE.csrf, "period": this_month})
    assert running.status_code == 409 and "has not ended" in running.text
    not_closed = client.post("/closes/reopen", data={"csrf": FINANCE.csrf, "period": LAST_MONTH.label, "reason": "x"})
    assert not_closed.status_code == 409 and "is not closed" in not_closed.text
    no_reason = client.post("/closes/reopen", data={"csrf": FINANCE.csrf, "period": LAST_MONTH.label})
    assert no_reason.status_code == 400 and "reason" in no_reason.text
    bad = client.post("/closes/close", data={"csrf": FINANCE.csrf, "period": "2026-13"})
    assert bad.status_code == 400 and "period" in bad.text
    bad_zone = client.post("/closes/close", data={"csrf": FINANCE.csrf, "period": "2026-11", "tz": "Mars/Olympus"})
    assert bad_zone.status_code == 400 and "tz" in bad_zone.text
    assert closed_rows(ledger) == []


@pytest.mark.parametrize("viewer, token", [(FINANCE, None), (FINANCE, "w" * 32), (ADMIN, ADMIN.csrf),
                                           (VIEWER, VIEWER.csrf), (SEARCH_ONLY, SEARCH_ONLY.csrf)])
def test_a_close_without_the_csrf_token_or_by_another_role_is_refused(viewer, token, last_month, ledger, client_as):
    client = client_as(viewer)
    data = {"period": LAST_MONTH.label, "reason": "x"} | ({"csrf": token} if token else {})
    for path in ("/closes/close", "/closes/reopen"):
        answer = client.post(path, data=data)
        assert answer.status_code == 403, (path, answer.text)
    assert closed_rows(ledger) == []
    page = client.get("/closes")
    assert ('action="/closes/close"' in page.text) == viewer.may("close")


def test_a_limited_viewer_sees_the_closes_without_their_totals(last_month, ledger, client_as):
    client_as(FINANCE).post("/closes/close", data={"csrf": FINANCE.csrf, "period": LAST_MONTH.label})
    page = client_as(SEARCH_ONLY).get("/closes")
    assert page.status_code == 200
    header, row = table_rows(page.text, "closes")
    assert "Charged" not in header and "Calls" not in header and row[0] == LAST_MONTH.label
    assert "0.75" not in page.text and "covers every project" in page.text
