"""Signing in and out in a real browser, and a form that lost its CSRF token refused."""

from __future__ import annotations

from conftest import sign_in


def test_a_person_signs_in_through_the_form_and_signs_out(page, live_dashboard):
    page.goto(f"{live_dashboard.url}/?tz=Asia/Kolkata")
    assert page.url == f"{live_dashboard.url}/login?next=%2F%3Ftz%3DAsia%2FKolkata"
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not her password at all")
    page.click("form.signin button[type=submit]")
    assert page.locator(".error-message").inner_text() == "wrong name or password"
    sign_in(page, live_dashboard, "alice", "finance", then="/?tz=Asia/Kolkata")
    assert page.locator(".who").inner_text() == "alice (finance)"
    assert page.locator(".zone").inner_text() == "Asia/Kolkata"
    cookie = next(c for c in page.context.cookies() if c["name"] == "ledger_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # a script of the page cannot read the session
    page.click("form.signout button:text-is('Sign out')")
    page.wait_for_url(f"{live_dashboard.url}/login")
    page.goto(f"{live_dashboard.url}/")
    assert page.url.startswith(f"{live_dashboard.url}/login")


def test_a_form_posted_without_its_csrf_token_is_refused(page, live_dashboard):
    sign_in(page, live_dashboard, "alice", "admin")
    page.evaluate("document.querySelector('form.signout input[name=csrf]').remove()")
    page.click("form.signout button:text-is('Sign out')")
    assert page.locator("h1").inner_text() == "Not allowed"
    assert "CSRF token" in page.locator(".error-message").inner_text()
    page.goto(f"{live_dashboard.url}/")
    assert page.locator(".who").inner_text() == "alice (admin)"  # still signed in
