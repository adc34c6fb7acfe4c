"""Through the proxy, what a caller sends cannot keep its call out of the ledger or out of its limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import httpx2

from factories import insert_records, make_call
from hostile_input import (  # noqa: F401 (counting_sim: a fixture)
    DEEP_TAGS, HELLO, KEY, Flush, capped, counting_sim, counts, one_row_per_call_reaching_the_upstream,
)
from proxy_parts import ProxyUnderTest, proxy_settings

from ledger.config.alerts import AlertSettings
from ledger.keys import fingerprint, load_secret
from ledger.config.proxy import ProxyKey
from ledger.store.engine import Ledger



def test_through_the_proxy_a_pinned_project_holds_its_limit_whatever_the_tags(database_url, tmp_path, counting_sim):
    team_key = "sk-team-hostile-000000000042"
    with Ledger(database_url) as ledger:
        insert_records(ledger, [make_call(datetime.now(timezone.utc), 5, project="search")])
    settings = replace(proxy_settings(database_url, tmp_path, keys=(
        ProxyKey("search-team", "TEST_UPSTREAM_KEY", fingerprint=fingerprint(team_key, load_secret(tmp_path / "secret")),
                 project="search"),)), alerting=AlertSettings((capped("by-project", project="search"),
                                                               capped("by-tag", "100", tags=(("team", "beta"),)))))
    with ProxyUnderTest(counting_sim.base_url, settings, environ={"TEST_UPSTREAM_KEY": KEY}) as proxy:
        with httpx2.Client() as client:
            answers = [client.post(proxy.base_url + "/chat/completions", json={"model": "gemini-3.1-pro", "messages": HELLO},
                                   headers={"Authorization": f"Bearer {team_key}", "X-Ledger-Tags": DEEP_TAGS})
                       for _ in range(3)]
        rows = proxy.rows()
    assert [a.status_code for a in answers] == [402] * 3 and counting_sim.reached == 0
    assert [(r.project, r.status) for r in rows if r.status == "refused"] == [("search", "refused")] * 3
    assert counts(database_url)[1] == 0


def test_any_header_and_body_leave_one_row_per_call_through_the_proxy(database_url, tmp_path, counting_sim):
    settings = replace(proxy_settings(database_url, tmp_path),
                       alerting=AlertSettings((capped("by-tag", "1000000", tags=(("team", "beta"),)),
                                               capped("by-model", "1000000", model="gemini-3.1-pro"))))
    with ProxyUnderTest(counting_sim.base_url, settings) as proxy:
        flush = Flush(proxy.recorder, httpx2.HTTPTransport())
        one_row_per_call_reaching_the_upstream(proxy.base_url, counting_sim, flush, database_url, f"Bearer {KEY}")
