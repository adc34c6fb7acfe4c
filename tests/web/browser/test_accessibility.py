"""No serious or critical accessibility violation (axe-core) on the sign-in, link and admin pages."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from accessibility import assert_accessible, violations
from conftest import sign_in
from signing import add_user

from ledger.store.users import add_link, add_token, user_named


def test_the_sign_in_page_has_no_serious_accessibility_violation(page, live_dashboard):
    page.goto(f"{live_dashboard.url}/login")
    assert_accessible(page)
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "not a password of anyone")
    page.click("form.signin button[type=submit]")
    assert page.locator(".error-message").is_visible()
    assert_accessible(page)  # with its error message


def test_the_admin_and_link_pages_have_no_serious_accessibility_violation(page, live_dashboard):
    now = datetime.now(timezone.utc)
    add_user(live_dashboard.ledger, "newcomer", password=None)
    with live_dashboard.ledger.session() as session:
        add_token(session, "nightly", "finance", ["alpha"], now, now + timedelta(days=1))
        link = add_link(session, user_named(session, "newcomer"), now, timedelta(hours=1))
    page.goto(f"{live_dashboard.url}/login/link/{link}")
    assert_accessible(page)
    sign_in(page, live_dashboard, "root", "admin", then="/admin")
    assert page.locator("table.tokens").is_visible()
    assert_accessible(page)


def test_the_check_finds_a_violation_where_there_is_one(page, live_dashboard):
    page.goto(f"{live_dashboard.url}/login")
    page.evaluate("document.querySelector('label[for=password]').remove()")  # a field without a name
    assert "label" in {v["id"] for v in violations(page) if v["impact"] in ("serious", "critical")}
