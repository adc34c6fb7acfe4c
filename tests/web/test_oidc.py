"""Single sign-on through an OpenID Connect provider (a real one on loopback): groups mapped to roles, every check."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx2
import pytest
from ledger_rows import call_values, insert
from oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from signing import PASSWORD, add_user
from sqlalchemy import select

from ledger.config import settings_from_mapping
from ledger.config.dashboard import DashboardSettings, OidcSettings
from ledger.errors import ConfigError
from ledger.store.access import AuditEntry, DashboardUser


@pytest.fixture
def provider():
    with Provider() as running:
        yield running


@pytest.fixture
def sso(signed_in, web_settings, provider, clock, monkeypatch):
    """A TestClient of the dashboard whose [dashboard.oidc] is `provider`."""
    monkeypatch.setenv("TEST_OIDC_SECRET", CLIENT_SECRET)
    clock.now = datetime.now(timezone.utc)  # the provider's tokens are timed by the real clock
    oidc = OidcSettings(provider.url, CLIENT_ID, "TEST_OIDC_SECRET", admin_groups=("ledger-admins",),
                        finance_groups=("ledger-finance",), viewer_groups=("everyone",),
                        project_groups=(("team-search", ("search",)), ("team-media", ("video", "images"))))
    return signed_in(settings=replace(web_settings, dashboard=DashboardSettings(oidc=oidc)))


def through_the_provider(client, next_path: str = "/"):
    """The browser's round trip: the dashboard, the provider's authorize (approving at once), the callback."""
    start = client.get("/login/oidc", params={"next": next_path})
    assert start.status_code == 303
    approved = httpx2.get(start.headers["location"], follow_redirects=False)
    assert approved.status_code == 302
    back = urlsplit(approved.headers["location"])
    return client.get(f"{back.path}?{back.query}")


def audit_rows(ledger):
    with ledger.session() as session:
        return [(e.actor, e.action, e.detail) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_a_person_signs_in_through_the_provider_with_the_role_their_groups_give(ledger, sso, provider):
    assert 'href="/login/oidc?next=' in sso.get("/login").text
    done = through_the_provider(sso, "/?tz=UTC")
    assert done.status_code == 303 and done.headers["location"] == "/?tz=UTC"
    assert sso.get("/api/v1/me").json() == {"name": "olga", "role": "finance", "via": "session", "projects": None}
    provider.identity = {"preferred_username": "olga", "groups": ["everyone", "ledger-admins"]}
    assert through_the_provider(sso).status_code == 303
    assert sso.get("/api/v1/me").json()["role"] == "admin"  # the groups decide at each sign-in
    with ledger.session() as session:
        user = session.scalars(select(DashboardUser)).one()
    assert (user.name, user.role, user.password_hash, user.signs_in_with) == ("olga", "admin", None, "oidc")
    assert [(actor, action) for actor, action, _ in audit_rows(ledger)] == [("olga", "signin"), ("olga", "signin")]


def test_a_member_of_project_groups_only_sees_those_projects_and_the_groups_decide_at_each_sign_in(ledger, sso,
                                                                                                    provider):
    insert(ledger, [call_values(call_id=f"c-{project}", project=project) for project in ("search", "video", "billing")])
    provider.identity = {"preferred_username": "tomas", "groups": ["team-search", "team-media", "marketing"]}
    assert through_the_provider(sso).status_code == 303
    assert sso.get("/api/v1/me").json() == {"name": "tomas", "role": "viewer", "via": "session",
                                            "projects": ["images", "search", "video"]}
    november = {"period": "2026-11", "tz": "UTC"}
    assert sorted(c["project"] for c in sso.get("/api/v1/calls", params=november).json()) == ["search", "video"]
    assert sso.get("/api/v1/calls", params={**november, "project": "billing"}).json() == []
    provider.identity = {"preferred_username": "tomas", "groups": ["team-search"]}  # moved off the media team
    assert through_the_provider(sso).status_code == 303
    assert sso.get("/api/v1/me").json()["projects"] == ["search"]
    provider.identity = {"preferred_username": "tomas", "groups": ["team-search", "everyone"]}  # a role's group: all
    assert through_the_provider(sso).status_code == 303
    assert sso.get("/api/v1/me").json()["projects"] is None
    assert [json.loads(detail)["projects"] for _, action, detail in audit_rows(ledger) if action == "signin"] == [
        ["images", "search", "video"], ["search"], None]


def test_someone_in_no_group_of_a_role_is_refused_and_audited(ledger, sso, provider):
    provider.identity = {"preferred_username": "eve", "groups": ["marketing"]}
    refused = through_the_provider(sso)
    assert refused.status_code == 403 and "none of your groups" in refused.text
    assert "set-cookie" not in refused.headers or "ledger_session" not in refused.headers["set-cookie"]
    assert audit_rows(ledger)[-1][1] == "signin.failed"


@pytest.mark.parametrize("tamper, status", [({"aud": "someone-else"}, 401), ({"iss": "http://elsewhere"}, 401),
                                            ({"exp": 1_000_000_000}, 401), ({"nonce": "replayed"}, 401)])
def test_an_id_token_for_another_client_issuer_time_or_sign_in_is_refused(sso, provider, tamper, status):
    provider.tamper = tamper
    refused = through_the_provider(sso)
    assert refused.status_code == status and "ID token is not valid" in refused.text
    assert sso.get("/api/v1/me").status_code == 401


def test_an_answer_for_a_sign_in_not_started_here_is_refused(sso, provider):
    start = sso.get("/login/oidc")
    approved = httpx2.get(start.headers["location"], follow_redirects=False)
    back = urlsplit(approved.headers["location"])
    sso.cookies.clear()  # another browser: it holds no state
    assert sso.get(f"{back.path}?{back.query}").status_code == 400
    assert sso.get("/login/oidc/callback?code=x&state=y").status_code == 400


@pytest.mark.parametrize("password", [PASSWORD, None], ids=["with a password", "waiting for its sign-in link"])
def test_a_local_users_name_is_not_taken_over_by_the_provider(ledger, sso, provider, password):
    add_user(ledger, "olga", "viewer", ["alpha"], password=password)
    refused = through_the_provider(sso)
    assert refused.status_code == 403 and "sign in with the password" in refused.text
    with ledger.session() as session:
        assert session.execute(select(DashboardUser.role, DashboardUser.projects)).one() == ("viewer", '["alpha"]')


def test_single_sign_on_is_a_404_where_it_is_not_configured(signed_in):
    assert signed_in().get("/login/oidc").status_code == 404
    assert "/login/oidc" not in signed_in().get("/login").text


def test_the_oidc_section_is_read_and_checked():
    settings = settings_from_mapping({"dashboard": {"oidc": {
        "issuer": "https://id.example.com/", "client_id": "ledger", "client_secret_env": "LEDGER_OIDC_SECRET",
        "groups_claim": "roles", "finance_groups": ["finance"], "viewer_groups": ["staff"]}}})
    oidc = settings.dashboard.oidc
    assert (oidc.issuer, oidc.groups_claim, oidc.role_of(["staff", "finance"])) == ("https://id.example.com", "roles",
                                                                                      "finance")
    teams = settings_from_mapping({"dashboard": {"oidc": {
        "issuer": "https://id.example.com", "client_id": "ledger", "client_secret_env": "LEDGER_OIDC_SECRET",
        "project_groups": {"team-search": ["search"], "team-media": ["video", "images"]}}}}).dashboard.oidc
    assert teams.access_of(["team-media", "x"]) == ("viewer", frozenset({"video", "images"}))
    assert teams.access_of(["x"]) is None
    with pytest.raises(ConfigError, match="team-search.*at least one project"):
        settings_from_mapping({"dashboard": {"oidc": {"issuer": "https://id.example.com", "client_id": "x",
                                                      "client_secret_env": "X", "project_groups": {"team-search": []}}}})
    with pytest.raises(ConfigError, match="project_groups.*a table"):
        settings_from_mapping({"dashboard": {"oidc": {"issuer": "https://id.example.com", "client_id": "x",
                                                      "client_secret_env": "X", "project_groups": ["search"]}}})
    with pytest.raises(ConfigError, match="name the groups of at least one role"):
        settings_from_mapping({"dashboard": {"oidc": {"issuer": "https://id.example.com", "client_id": "x",
                                                      "client_secret_env": "X"}}})
    with pytest.raises(ConfigError, match="client_secret_env"):
        settings_from_mapping({"dashboard": {"oidc": {"issuer": "https://id.example.com", "client_id": "x",
                                                      "client_secret": "s3cret", "admin_groups": ["a"]}}})
