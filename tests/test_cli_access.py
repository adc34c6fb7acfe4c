"""`users` and `tokens` as a person runs them: the password on standard input, a token printed once, every change
audited, bad input one line; `dashboard` refusing a network address while the ledger has no user."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from ledger.cli import main
from ledger.store.access import ApiToken, AuditEntry, DashboardUser
from ledger.store.credentials import token_hash

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    from argon2 import PasswordHasher

    from ledger.store import credentials

    monkeypatch.setattr(credentials, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def run(database_url, capsys, monkeypatch, *args, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    try:
        code = main(["--database-url", database_url, *args], out=out)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def audit_rows(ledger):
    with ledger.session() as session:
        return [(e.action, e.target) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_users_add_reads_the_password_from_standard_input_and_keeps_only_its_argon2id_hash(ledger, database_url,
                                                                                          capsys, monkeypatch):
    code, out, err = run(database_url, capsys, monkeypatch, "users", "add", "alice", "--role", "finance",
                         "--project", "alpha", "--project", "beta", stdin=PASSWORD + "\n")
    assert (code, err) == (0, "") and out == "user alice added: finance, alpha, beta\n"
    with ledger.session() as session:
        user = session.scalars(select(DashboardUser)).one()
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert user.projects == '["alpha", "beta"]'
    code, out, _ = run(database_url, capsys, monkeypatch, "users", "list")
    assert code == 0 and out == "alice\tfinance\talpha, beta\tactive\n" and "argon2" not in out
    code, out, _ = run(database_url, capsys, monkeypatch, "users", "disable", "alice")
    assert code == 0 and out == "user alice disabled; 0 session(s) ended\n"
    assert audit_rows(ledger) == [("user.add", "alice"), ("user.disable", "alice")]
    with ledger.session() as session:
        assert session.scalars(select(AuditEntry.actor)).first().startswith("cli:")


@pytest.mark.parametrize("args, stdin, message", [
    (["users", "add", "bob", "--role", "viewer"], "", "the password is empty"),
    (["users", "add", "bob", "--role", "viewer"], "\n", "the password is empty"),
    (["users", "add", "bob", "--role", "viewer"], "Xq7zk\n", "the password is too short: at least 12 characters"),
    (["users", "add", "b b", "--role", "viewer"], PASSWORD, "not a user name: 'b b'"),
    (["users", "add", "bob", "--role", "viewer", "--project", ""], PASSWORD, "not a project name: ''"),
    (["users", "disable", "nobody"], "", "there is no user 'nobody'"),
    (["tokens", "add", "ci", "--role", "viewer", "--expires", "soon"], "", "--expires: not a lifetime: 'soon'"),
    (["tokens", "revoke", "nobody"], "", "there is no token 'nobody'"),
    (["users", "enable", "nobody"], "", "there is no user 'nobody'"),
    (["users", "password", "nobody"], PASSWORD, "there is no user 'nobody'"),
    (["users", "password", "bob"], "Xq7zk\n", "the password is too short: at least 12 characters"),
])
def test_bad_input_is_one_line_and_exit_1_and_nothing_is_written(ledger, database_url, capsys, monkeypatch, args, stdin,
                                                                   message):
    code, out, err = run(database_url, capsys, monkeypatch, *args, stdin=stdin)
    assert (code, out) == (1, "")
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "Xq7zk" not in err  # a password is never echoed
    assert audit_rows(ledger) == []


def test_users_password_sets_a_new_one_ending_every_session_and_earlier_link(ledger, database_url, capsys,
                                                                              monkeypatch):
    from datetime import datetime, timezone

    from ledger.store.credentials import password_matches
    from ledger.store.signins import start_session
    from ledger.store.users import link_user

    code, out, _ = run(database_url, capsys, monkeypatch, "users", "add", "carol", "--role", "viewer", "--link")
    first_link = out.strip().rsplit("/", 1)[1]
    now = datetime.now(timezone.utc)
    with ledger.session() as session:
        user = session.scalars(select(DashboardUser)).one()
        start_session(session, user, now, "127.0.0.1")
        start_session(session, user, now, "10.0.0.9")
    code, out, err = run(database_url, capsys, monkeypatch, "users", "password", "carol", stdin=PASSWORD + "\n")
    assert (code, err, out) == (0, "", "user carol: password set; 2 session(s) ended\n")
    with ledger.session() as session:
        user = session.scalars(select(DashboardUser)).one()
        assert password_matches(user.password_hash, PASSWORD) and PASSWORD not in user.password_hash
        assert link_user(session, first_link, datetime.now(timezone.utc)) is None  # the earlier link signs in no more
    code, out, _ = run(database_url, capsys, monkeypatch, "users", "password", "carol", "--link")
    new_link = re.search(r"/login/link/([A-Za-z0-9_-]{43})$", out.strip()).group(1)
    assert code == 0 and out.startswith("user carol: 0 session(s) ended; sign-in link (good once")
    with ledger.session() as session:
        assert link_user(session, new_link, datetime.now(timezone.utc)).name == "carol"
    assert run(database_url, capsys, monkeypatch, "users", "disable", "carol")[0] == 0
    code, out, _ = run(database_url, capsys, monkeypatch, "users", "enable", "carol")
    assert (code, out) == (0, "user carol enabled\n")
    assert run(database_url, capsys, monkeypatch, "users", "enable", "carol")[1] == "user carol was not disabled\n"
    assert run(database_url, capsys, monkeypatch, "users", "list")[1] == "carol\tviewer\tevery project\tactive\n"
    assert audit_rows(ledger) == [("user.add", "carol"), ("user.password", "carol"), ("user.password", "carol"),
                                  ("user.disable", "carol"), ("user.enable", "carol"), ("user.enable", "carol")]
    assert PASSWORD not in repr(audit_rows(ledger)) and new_link not in repr(audit_rows(ledger))


def test_a_single_sign_on_users_password_is_not_set_here(ledger, database_url, capsys, monkeypatch):
    from datetime import datetime, timezone

    from ledger.store.users import add_user

    with ledger.session() as session:
        add_user(session, "olga", "finance", None, None, datetime.now(timezone.utc), signs_in_with="oidc")
    code, out, err = run(database_url, capsys, monkeypatch, "users", "password", "olga", stdin=PASSWORD)
    assert (code, out) == (1, "") and "olga signs in through single sign-on" in err
    with ledger.session() as session:
        assert session.scalars(select(DashboardUser.password_hash)).one() is None


def test_an_unknown_role_is_a_usage_error(database_url, capsys, monkeypatch):
    code, _, err = run(database_url, capsys, monkeypatch, "users", "add", "bob", "--role", "root", stdin=PASSWORD)
    assert code == 2 and "invalid choice: 'root'" in err


def test_a_user_added_twice_is_refused(ledger, database_url, capsys, monkeypatch):
    assert run(database_url, capsys, monkeypatch, "users", "add", "bob", "--role", "viewer", stdin=PASSWORD)[0] == 0
    code, _, err = run(database_url, capsys, monkeypatch, "users", "add", "bob", "--role", "admin", stdin=PASSWORD)
    assert code == 1 and "there is a user 'bob' already" in err


def test_tokens_add_prints_the_token_once_and_keeps_only_its_hash(ledger, database_url, capsys, monkeypatch):
    code, out, err = run(database_url, capsys, monkeypatch, "tokens", "add", "nightly", "--role", "viewer",
                         "--project", "alpha", "--expires", "30d")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("token nightly added: viewer, alpha, until ") and len(lines) == 2
    token = lines[1]
    assert re.fullmatch(r"clt_[A-Za-z0-9_-]{43}", token)
    with ledger.session() as session:
        row = session.scalars(select(ApiToken)).one()
    assert row.token_hash == token_hash(token) and (row.expires_at - row.created_at).days == 30
    code, out, _ = run(database_url, capsys, monkeypatch, "tokens", "list")
    assert code == 0 and token not in out and row.token_hash not in out
    assert out.startswith("nightly\tviewer\talpha\tuntil ") and out.endswith("\tnever used\n")
    assert run(database_url, capsys, monkeypatch, "tokens", "revoke", "nightly")[0] == 0
    assert "\trevoked " in run(database_url, capsys, monkeypatch, "tokens", "list")[1]
    assert audit_rows(ledger) == [("token.add", "nightly"), ("token.revoke", "nightly")]
    assert token not in repr(audit_rows(ledger))


def test_users_add_with_link_prints_a_one_time_link_to_the_configured_dashboard(ledger, database_url, capsys,
                                                                                 monkeypatch):
    code, out, _ = run(database_url, capsys, monkeypatch, "users", "add", "newcomer", "--role", "viewer", "--link")
    assert code == 0
    link = re.search(r"http://127\.0\.0\.1:8788/login/link/([A-Za-z0-9_-]{43})$", out.strip())
    assert link and "good once, for 24 hours" in out
    assert "waiting for its sign-in link" in run(database_url, capsys, monkeypatch, "users", "list")[1]


def test_the_dashboard_refuses_a_network_address_while_the_ledger_has_no_user(ledger, database_url, capsys,
                                                                              monkeypatch):
    code, out, err = run(database_url, capsys, monkeypatch, "dashboard", "--host", "0.0.0.0", "--port", "0")
    assert (code, out) == (1, "")
    assert "the ledger has no user" in err and len(err.strip().splitlines()) == 1


def test_the_dashboard_refuses_a_ledger_that_is_not_there(tmp_path, capsys, monkeypatch):
    code, _, err = run(f"sqlite:///{tmp_path / 'none.db'}", capsys, monkeypatch, "dashboard")
    assert code == 1 and "no ledger at" in err
