"""Bearer tokens, one-time sign-in links, secrets kept only as hashes, the append-only audit log and the admin page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from signing import PASSWORD, add_user
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ledger.store import audit
from ledger.store.access import ROLES, ApiToken, AuditEntry, DashboardUser
from ledger.store.models import Base
from ledger.store.users import add_link, add_token, revoke_token, user_named
from ledger.web import viewer


def new_token(ledger, clock, name="ci", role="viewer", projects=None, days=30) -> str:
    with ledger.session() as session:
        return add_token(session, name, role, projects, clock(), clock() + timedelta(days=days))


def csrf_of_page(client, path="/") -> str:
    return client.get(path).text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_roles_kept_are_the_roles_the_gate_knows():
    assert ROLES == viewer.ROLES


def test_a_bearer_token_reads_the_api_as_its_role_and_projects_and_its_use_is_noted(ledger, signed_in, clock):
    token = new_token(ledger, clock, projects=["alpha"])
    client = signed_in()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json() == {"name": "ci", "role": "viewer", "via": "token", "projects": ["alpha"]}
    with ledger.session() as session:
        assert session.scalars(select(ApiToken.last_used_at)).one() == clock()
    # A page is for a browser's session: a bearer token opens none.
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 303


@pytest.mark.parametrize("case", ["revoked", "expired", "unknown", "malformed", "basic"])
def test_a_revoked_expired_or_unknown_token_is_refused_with_401(ledger, signed_in, clock, case):
    token = new_token(ledger, clock)
    header = f"Bearer {token}"
    if case == "revoked":
        with ledger.session() as session:
            revoke_token(session, "ci", clock())
    elif case == "expired":
        clock.advance(days=30)
    elif case == "unknown":
        header = f"Bearer {token[:-2]}xx"
    elif case == "malformed":
        header = "Bearer"
    else:
        header = f"Basic {token}"
    answer = signed_in().get("/api/v1/me", headers={"Authorization": header})
    assert answer.status_code == 401 and answer.json()["error"]["status"] == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_the_api_takes_a_browsers_session_too(ledger, signed_in):
    add_user(ledger, "alice", "finance")
    assert signed_in("alice").get("/api/v1/me").json()["via"] == "session"
    assert signed_in().get("/api/v1/me").status_code == 401  # never a redirect to the sign-in page


def test_a_sign_in_link_sets_a_password_once_and_signs_in(ledger, signed_in, clock):
    add_user(ledger, "newcomer", "viewer", password=None)
    with ledger.session() as session:
        token = add_link(session, user_named(session, "newcomer"), clock(), timedelta(hours=24))
    client = signed_in()
    page = client.get(f"/login/link/{token}")
    assert page.status_code == 200 and "newcomer" in page.text
    mismatch = client.post(f"/login/link/{token}", data={"password": PASSWORD, "password_again": PASSWORD + "x"})
    assert mismatch.status_code == 400 and "differ" in mismatch.text
    short = client.post(f"/login/link/{token}", data={"password": "short", "password_again": "short"})
    assert short.status_code == 400 and "too short" in short.text
    done = client.post(f"/login/link/{token}", data={"password": PASSWORD, "password_again": PASSWORD})
    assert done.status_code == 303 and "ledger_session=" in done.headers["set-cookie"]
    assert client.get("/").status_code == 200
    assert signed_in().get(f"/login/link/{token}").status_code == 404  # used
    assert signed_in().post(f"/login/link/{token}", data={"password": PASSWORD, "password_again": PASSWORD}).status_code == 404
    assert signed_in("newcomer").get("/").status_code == 200  # the password it set signs in


def test_an_expired_sign_in_link_is_refused(ledger, signed_in, clock):
    add_user(ledger, "newcomer", password=None)
    with ledger.session() as session:
        token = add_link(session, user_named(session, "newcomer"), clock(), timedelta(hours=24))
    clock.advance(hours=24)
    assert signed_in().get(f"/login/link/{token}").status_code == 404
    assert signed_in().post("/login", data={"username": "newcomer", "password": ""}).status_code == 401


def every_stored_text(ledger) -> str:
    """Every value of every table of the ledger, as text (and the SQLite file's bytes, its WAL included)."""
    found = []
    with ledger.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(table.select()):
                found.append(repr(tuple(row)))
    if ledger.dialect == "sqlite":
        path = Path(make_url(ledger.url).database)
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                found.append(file.read_bytes().decode("latin-1"))
    return "\n".join(found)


def test_passwords_sessions_links_and_tokens_are_stored_only_as_hashes(ledger, signed_in, clock):
    add_user(ledger, "alice", "admin")
    add_user(ledger, "newcomer", password=None)
    with ledger.session() as session:
        link = add_link(session, user_named(session, "newcomer"), clock(), timedelta(hours=1))
    token = new_token(ledger, clock)
    client = signed_in("alice")
    cookie = client.cookies["ledger_session"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    stored = every_stored_text(ledger)
    for secret in (PASSWORD, cookie, link, token, token.removeprefix("clt_")):
        assert secret not in stored
    with ledger.session() as session:
        assert session.scalars(select(DashboardUser.password_hash).where(DashboardUser.name == "alice")).one() \
            .startswith("$argon2id$")
    admin_page = client.get("/admin").text
    assert token not in admin_page and "ci" in admin_page


def test_the_package_hashes_passwords_with_argon2id_at_its_own_cost(monkeypatch):
    from ledger.store import credentials

    monkeypatch.undo()  # the tests' quick hasher off: the package's own parameters
    made = credentials.hash_password(PASSWORD)
    assert made.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert credentials.password_matches(made, PASSWORD) and not credentials.password_matches(made, PASSWORD + "!")
    assert not credentials.password_matches(None, PASSWORD)


def test_the_audit_log_refuses_an_update_or_a_delete_in_the_database(ledger, clock):
    with ledger.session() as session:
        audit.record(session, actor="alice", action="export", target="spend 2026-11", detail={"rows": 3},
                     address="127.0.0.1", at=clock())
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with ledger.engine.begin() as connection:
                connection.execute(text(statement))
    with ledger.session() as session:
        entry = session.scalars(select(AuditEntry)).one()
    assert (entry.actor, entry.action, audit.detail_of(entry)) == ("alice", "export", {"rows": 3})


def test_the_admin_page_lists_users_tokens_and_the_audit_log_for_admins_only(ledger, signed_in, clock):
    add_user(ledger, "root", "admin")
    add_user(ledger, "fin", "finance")
    add_user(ledger, "lim", "admin", ["alpha"])
    new_token(ledger, clock, "nightly", "finance", ["alpha", "<script>"])
    admin = signed_in("root")
    page = admin.get("/admin")
    assert page.status_code == 200
    for shown in ("fin", "lim", "nightly", "&lt;script&gt;, alpha", "signin"):
        assert shown in page.text
    assert signed_in("fin").get("/admin").status_code == 403
    assert signed_in("lim").get("/admin").status_code == 403  # an admin of some projects administers nothing
    assert admin.get("/admin?before=x").status_code == 400


def test_an_admin_disables_a_user_and_revokes_a_token_by_form_with_its_csrf_token(ledger, signed_in, clock):
    add_user(ledger, "root", "admin")
    add_user(ledger, "fin", "finance")
    token = new_token(ledger, clock)
    admin, fin = signed_in("root"), signed_in("fin")
    csrf = csrf_of_page(admin, "/admin")
    assert admin.post("/admin/users/fin/disable").status_code == 403
    assert fin.get("/").status_code == 200
    assert admin.post("/admin/users/fin/disable", data={"csrf": csrf}).status_code == 303
    assert fin.get("/").status_code == 303
    assert admin.post("/admin/tokens/ci/revoke", data={"csrf": csrf}).status_code == 303
    assert signed_in().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert admin.post("/admin/tokens/nobody/revoke", data={"csrf": csrf}).status_code == 404
    with ledger.session() as session:
        done = [(e.actor, e.action, e.target) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert ("root", "user.disable", "fin") in done and ("root", "token.revoke", "ci") in done


def test_a_page_records_what_its_viewer_did_with_audit_record(ledger, signed_in, clock):
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ledger.web.audit import record
    from ledger.web.gate import guarded

    @guarded()
    def export(request):
        record(request, "export", "spend 2026-11", {"format": "csv", "rows": 3})
        return JSONResponse({})

    add_user(ledger, "fin", "finance")
    token = new_token(ledger, clock)
    person, script = signed_in("fin"), signed_in()
    for client in (person, script):
        client.app.router.routes.insert(0, Route("/api/v1/test-export", export))
    assert person.get("/api/v1/test-export").status_code == 200
    assert script.get("/api/v1/test-export", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with ledger.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)).all()
    assert [(r.actor, r.target, r.address, r.at) for r in rows] == [("fin", "spend 2026-11", "testclient", clock()),
                                                                   ("token:ci", "spend 2026-11", "testclient", clock())]
    assert audit.detail_of(rows[0]) == {"format": "csv", "rows": 3}
