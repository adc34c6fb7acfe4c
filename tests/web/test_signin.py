"""Signing in and out of the dashboard as it runs: sessions in the ledger, cookies, timeouts, rate limits, redirects."""

from __future__ import annotations

from dataclasses import replace

import pytest
from signing import PASSWORD, add_user
from sqlalchemy import select

from ledger.config.dashboard import DashboardSettings
from ledger.store.access import AuditEntry, WebSession
from ledger.store.users import disable_user


def audit_actions(ledger) -> list[tuple[str, str, str | None]]:
    with ledger.session() as session:
        return [(e.actor, e.action, e.target) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def signed_in_page(client) -> bool:
    return client.get("/").status_code == 200


def test_signing_in_opens_the_page_asked_for_with_an_httponly_samesite_cookie(ledger, signed_in):
    add_user(ledger, "alice", "finance")
    client = signed_in()
    assert client.get("/?tz=UTC").headers["location"] == "/login?next=%2F%3Ftz%3DUTC"
    form = client.get("/login?next=%2F%3Ftz%3DUTC")
    assert form.status_code == 200 and 'name="username"' in form.text and 'name="password"' in form.text
    answer = client.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/?tz=UTC"})
    assert answer.status_code == 303 and answer.headers["location"] == "/?tz=UTC"
    cookie = answer.headers["set-cookie"]
    assert "ledger_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https makes it Secure (the next test)
    page = client.get("/?tz=UTC")
    assert page.status_code == 200 and "alice (finance)" in page.text
    assert audit_actions(ledger) == [("alice", "signin", "alice")]



def test_the_cookie_is_secure_when_the_request_came_over_https(ledger, signed_in):
    add_user(ledger, "alice")
    client = signed_in()
    client.base_url = client.base_url.copy_with(scheme="https")
    answer = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 303 and "Secure" in answer.headers["set-cookie"]


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer_and_no_cookie(ledger, signed_in):
    add_user(ledger, "alice")
    client = signed_in()
    wrong = client.post("/login", data={"username": "alice", "password": "not the password at all"})
    unknown = client.post("/login", data={"username": "mallory", "password": PASSWORD})
    for answer in (wrong, unknown):
        assert answer.status_code == 401 and "wrong name or password" in answer.text
        assert "set-cookie" not in answer.headers
    assert not signed_in_page(client)
    # A failure is audited under the name only when it is a user's (a password typed as a name is not kept).
    assert audit_actions(ledger) == [("alice", "signin.failed", "alice"), ("(unknown name)", "signin.failed", None)]


def test_each_sign_in_is_a_new_session_and_the_one_the_browser_held_ends(ledger, signed_in):
    add_user(ledger, "alice")
    client = signed_in("alice")
    first = client.cookies["ledger_session"]
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 303
    second = client.cookies["ledger_session"]
    assert second != first
    old = signed_in()
    old.cookies.set("ledger_session", first)
    assert not signed_in_page(old)
    assert signed_in_page(client)


def test_sign_out_needs_the_forms_csrf_token_and_ends_the_session(ledger, signed_in):
    add_user(ledger, "alice")
    client = signed_in("alice")
    cookie = client.cookies["ledger_session"]
    page = client.get("/")
    assert 'action="/logout"' in page.text
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert len(csrf) == 64
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf": "0" * 64}).status_code == 403
    assert signed_in_page(client)  # a refused sign-out signed nobody out
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert 'ledger_session=""' in answer.headers["set-cookie"]
    again = signed_in()
    again.cookies.set("ledger_session", cookie)
    assert not signed_in_page(again)  # the session is over in the ledger, not only in the browser
    assert audit_actions(ledger)[-1] == ("alice", "signout", "alice")


def test_sign_out_everywhere_ends_every_session_of_that_user_only(ledger, signed_in):
    add_user(ledger, "alice")
    add_user(ledger, "bob")
    laptop, phone, other = signed_in("alice"), signed_in("alice"), signed_in("bob")
    csrf = laptop.get("/").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert laptop.post("/logout-everywhere").status_code == 403
    assert laptop.post("/logout-everywhere", data={"csrf": csrf}).status_code == 303
    assert not signed_in_page(laptop) and not signed_in_page(phone)
    assert signed_in_page(other)
    with ledger.session() as session:
        ended = session.scalars(select(AuditEntry).where(AuditEntry.action == "signout.everywhere")).one()
    assert ended.actor == "alice" and '"sessions_ended":2' in ended.detail.replace(" ", "")


def test_a_session_ends_after_the_idle_timeout(ledger, signed_in, clock):
    add_user(ledger, "alice")
    client = signed_in("alice")
    clock.advance(seconds=1799)
    assert signed_in_page(client)  # a request: the idle time starts again
    clock.advance(seconds=1799)
    assert signed_in_page(client)
    clock.advance(seconds=1800)
    assert client.get("/").headers["location"] == "/login?next=%2F"
    clock.advance(seconds=1)
    assert not signed_in_page(client)  # ended, not idle again
    with ledger.session() as session:
        assert session.scalars(select(WebSession.ended_at)).one() is not None


def test_a_session_ends_at_the_absolute_timeout_however_busy(ledger, signed_in, clock):
    add_user(ledger, "alice")
    client = signed_in("alice")
    for _ in range(11):
        clock.advance(hours=1)
        clock.advance(minutes=-31)  # every 29 minutes: never idle
        assert signed_in_page(client)
    clock.advance(hours=12)
    assert not signed_in_page(client)


def test_failed_sign_ins_of_one_name_are_limited_with_429_even_for_the_right_password(ledger, signed_in, clock):
    add_user(ledger, "alice")
    client = signed_in()
    for _ in range(5):
        assert client.post("/login", data={"username": "alice", "password": "wrong guess number"}).status_code == 401
    limited = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "900"
    assert "set-cookie" not in limited.headers
    clock.advance(seconds=901)  # the window has passed
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 303
    assert [a for _, a, _ in audit_actions(ledger)] == ["signin.failed"] * 5 + ["signin"]  # the refusal is not logged


def test_failed_sign_ins_from_one_address_are_limited_whatever_the_names(ledger, signed_in, web_settings):
    add_user(ledger, "alice")
    settings = replace(web_settings, dashboard=DashboardSettings(signin_max_failures_per_address=3))
    client = signed_in(settings=settings)
    for name in ("bob", "carol", "dave"):
        assert client.post("/login", data={"username": name, "password": "a guess of theirs"}).status_code == 401
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 429


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                                    "http:/evil.example", "/\x00x", "evil"])
def test_a_sign_in_never_redirects_to_another_site(ledger, signed_in, target):
    add_user(ledger, "alice")
    answer = signed_in().post("/login", data={"username": "alice", "password": PASSWORD, "next": target})
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_a_sign_in_keeps_a_local_next_path_and_escapes_it_in_the_form(ledger, signed_in):
    add_user(ledger, "alice")
    client = signed_in()
    form = client.get("/login", params={"next": '/calls?project="><script>x</script>'})
    assert "<script>x" not in form.text and "&lt;script&gt;" in form.text
    answer = client.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/calls?project=a&by=day"})
    assert answer.headers["location"] == "/calls?project=a&by=day"


def test_a_sign_in_posted_from_another_sites_page_is_refused(ledger, signed_in):
    add_user(ledger, "alice")
    answer = signed_in().post("/login", data={"username": "alice", "password": PASSWORD},
                              headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


def test_disabling_a_user_ends_their_sessions_and_their_sign_in(ledger, signed_in, clock):
    add_user(ledger, "alice")
    client = signed_in("alice")
    with ledger.session() as session:
        assert disable_user(session, "alice", clock()) == 1
    assert not signed_in_page(client)
    assert signed_in().post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 401


def test_a_project_limited_user_is_a_viewer_of_those_projects_only(ledger, signed_in):
    add_user(ledger, "pat", "viewer", ["beta", "alpha"])
    client = signed_in("pat")
    assert client.get("/api/v1/me").json() == {"name": "pat", "role": "viewer", "via": "session",
                                               "projects": ["alpha", "beta"]}
    assert "pat (viewer: alpha, beta)" in client.get("/").text
    assert client.get("/admin").status_code == 403
