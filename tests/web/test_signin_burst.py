"""Sign-ins in a burst, against the dashboard served on loopback: the limits hold for attempts in flight together,
and a one-time link posted twice at once signs in once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import httpx
from factories import LoopbackServer
from signing import PASSWORD, add_user
from sqlalchemy import func, select

from ledger.config.dashboard import DashboardSettings
from ledger.store.access import AuditEntry, WebSession
from ledger.store.users import add_link, user_named
from ledger.web.serve import dashboard_app

BURST = 8


def posted_together(url: str, path: str, forms: list[dict]) -> Counter:
    """POST each form to `path` from a thread of its own, all released at once: how many got each status."""
    ready = threading.Barrier(len(forms))

    def post(form: dict) -> int:
        with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as client:
            ready.wait()
            return client.post(path, data=form).status_code

    with ThreadPoolExecutor(len(forms)) as pool:
        return Counter(pool.map(post, forms))


def audited(ledger, action: str) -> int:
    with ledger.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action))


def test_a_burst_of_wrong_passwords_for_one_name_checks_at_most_the_limit_and_locks_the_right_one_out(
        ledger, web_settings, clock):
    add_user(ledger, "alice")
    settings = replace(web_settings, dashboard=DashboardSettings(signin_max_failures=3))
    with LoopbackServer(dashboard_app(settings, ledger, clock)) as server:
        wrong = [{"username": "alice", "password": f"wrong guess {n}"} for n in range(BURST)]
        answers = posted_together(server.root_url, "/login", wrong)
        right = httpx.post(server.root_url + "/login", data={"username": "alice", "password": PASSWORD})
    assert answers == Counter({401: 3, 429: BURST - 3})  # a 401 is a password checked, a 429 none
    assert audited(ledger, "signin.failed") == answers[401]
    assert right.status_code == 429 and "set-cookie" not in right.headers


def test_a_burst_of_names_from_one_address_checks_at_most_the_addresss_limit(ledger, web_settings, clock):
    add_user(ledger, "alice")
    settings = replace(web_settings, dashboard=DashboardSettings(signin_max_failures_per_address=4))
    with LoopbackServer(dashboard_app(settings, ledger, clock)) as server:
        guesses = [{"username": f"guess{n}", "password": "a guess of theirs"} for n in range(BURST)]
        answers = posted_together(server.root_url, "/login", guesses)
        right = httpx.post(server.root_url + "/login", data={"username": "alice", "password": PASSWORD})
    assert answers == Counter({401: 4, 429: BURST - 4})
    assert right.status_code == 429


def test_a_sign_in_link_posted_twice_at_once_signs_in_once(ledger, web_settings, clock):
    add_user(ledger, "newcomer", password=None)
    with ledger.session() as session:
        token = add_link(session, user_named(session, "newcomer"), clock(), timedelta(hours=24))
    with LoopbackServer(dashboard_app(web_settings, ledger, clock)) as server:
        form = {"password": PASSWORD, "password_again": PASSWORD}
        answers = posted_together(server.root_url, f"/login/link/{token}", [form] * 4)
    assert answers == Counter({303: 1, 404: 3})
    with ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 1
    assert audited(ledger, "signin") == 1
