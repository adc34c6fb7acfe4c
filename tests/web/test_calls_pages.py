"""The Calls pages, their API and exports: filters, keyset pages, who sees what, the CLI's own bytes, hostile text."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
from ledger_rows import call_values, insert, register

from ledger.accounting.periods import parse_period
from ledger.cli import main
from ledger.config import Settings
from ledger.service import closing
from ledger.store.calls import CALL_COLUMNS
from ledger.store import retention
from ledger.web.viewer import Viewer

FINANCE = Viewer("fin", "finance", csrf="t" * 32)
SEARCH_ONLY = Viewer("sam", "viewer", projects=frozenset({"search"}), csrf="s" * 32)
NOV = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
ALL_NOVEMBER = {"period": "2026-11", "tz": "UTC"}


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["call_id"] for c in json.loads(response.text)]


def page_ids(response) -> list[str]:
    """The call ids a /calls page lists, in its order."""
    assert response.status_code == 200, response.text
    return [unescape(i) for i in re.findall(r'<td><a href="/calls/([^"?]+)\?tz=', response.text)]


def cli(url: str, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--database-url", url, "calls", *argv], out=out), out.getvalue()


@pytest.fixture
def mixed(ledger) -> dict[str, str]:
    """One call of each thing a filter picks, in November 2026, and one in October; {name: call id}."""
    register(ledger, "a" * 64, "Aa11", "batch-key", "acme")
    register(ledger, "b" * 64, "Bb22", "ops-key", "other")
    rows = {
        "plain": call_values(started_at=NOV, call_id="plain"),
        "chat": call_values(started_at=NOV + timedelta(minutes=1), call_id="chat", project="chat", end_user="u-2"),
        "no_project": call_values(started_at=NOV + timedelta(minutes=2), call_id="no_project", project=None),
        "user9": call_values(started_at=NOV + timedelta(minutes=3), call_id="user9", end_user="u-9"),
        "batch": call_values(started_at=NOV + timedelta(minutes=4), call_id="batch", key_fingerprint="a" * 64,
                             key_last4="Aa11"),
        "ops": call_values(started_at=NOV + timedelta(minutes=5), call_id="ops", key_fingerprint="b" * 64,
                           key_last4="Bb22"),
        "flash": call_values(started_at=NOV + timedelta(minutes=6), call_id="flash", model_requested="gemini-3-flash",
                             model_reported="gemini-3-flash-001"),
        "failed": call_values(started_at=NOV + timedelta(minutes=7), call_id="failed", status="error"),
        "over": call_values(started_at=NOV + timedelta(minutes=8), call_id="over", pricing_class="overcharge",
                            charged="0.5"),
        "tagged": call_values(started_at=NOV + timedelta(minutes=9), call_id="tagged", tags={"team": "red"}),
        "october": call_values(started_at=NOV - timedelta(days=20), call_id="october"),
    }
    insert(ledger, list(rows.values()))
    return {name: row[0] for name, row in rows.items()}


@pytest.mark.parametrize("query, expected", [
    ({"project": "chat"}, {"chat"}),
    ({"project": "(none)"}, {"no_project"}),
    ({"user": "u-9"}, {"user9"}),
    ({"key": "batch-key"}, {"batch"}),
    ({"key": "…Bb22"}, {"ops"}),
    ({"key": "...Aa11"}, {"batch"}),
    ({"model": "gemini-3-flash"}, {"flash"}),
    ({"model": "gemini-3-flash-001"}, {"flash"}),
    ({"status": "error"}, {"failed"}),
    ({"class": "overcharge"}, {"over"}),
    ({"tag": "team=red"}, {"tagged"}),
    ({"account": "other"}, {"ops"}),
    ({"period": "2026-10"}, {"october"}),
    ({"from": "2026-10-01", "to": "2026-10-31"}, {"october"}),
])
def test_each_filter_picks_its_calls_in_the_page_the_api_and_the_export(client_as, mixed, query, expected):
    client = client_as(FINANCE)
    params = {**ALL_NOVEMBER, **query} if "from" not in query else {"tz": "UTC", **query}
    if "period" in query:
        params["period"] = query["period"]
    assert set(page_ids(client.get("/calls", params=params))) == expected
    assert set(ids_of(client.get("/api/v1/calls", params=params))) == expected
    assert set(ids_of(client.get("/calls/export", params={**params, "format": "json"}))) == expected


def test_no_filter_lists_the_period_newest_first(client_as, mixed):
    listed = page_ids(client_as(FINANCE).get("/calls", params=ALL_NOVEMBER))
    assert listed == ["tagged", "over", "failed", "flash", "ops", "batch", "user9", "no_project", "chat", "plain"]


@pytest.mark.parametrize("name, value", [
    ("status", "lost"), ("class", "cheap"), ("tag", "team"), ("project", '"unclosed'), ("tz", "Mars/Base"),
    ("period", "2026-13"), ("after", "bm90IGEgY3Vyc29y"), ("after", "%%%"), ("after", "LTk5OTk5OTk5OTk5OTk5OToz"),
    ("after", "MTcwMDAwMDAwMDAwMDAwMDo5OTk5OTk5OTk5OTk5OTk5OTk5"),
    ("colour", "red"),
])
def test_a_bad_filter_or_cursor_is_a_400_naming_it(client_as, mixed, name, value):
    client = client_as(FINANCE)
    page = client.get("/calls", params={name: value})
    assert page.status_code == 400 and f"<code>{name}</code>" in page.text and "Traceback" not in page.text
    api = client.get("/api/v1/calls", params={name: value})
    assert api.status_code == 400 and api.json()["error"]["parameter"] == name


def test_keyset_pages_lose_and_repeat_no_call_when_many_start_at_the_same_instant(client_as, ledger):
    # 250 calls over 4 instants (three hold 70, one 40): pages of 100 cut inside a run of equal starts.
    rows = [call_values(started_at=NOV + timedelta(seconds=i % 4), call_id=f"c{i:04d}") for i in range(250)]
    insert(ledger, rows)
    client = client_as(FINANCE)
    seen, url, pages = [], "/calls?period=2026-11&tz=UTC", 0
    while url:
        page = client.get(unescape(url))
        seen += page_ids(page)
        found = re.search(r'<a href="([^"]+)" rel="next"', page.text)
        url = found and found[1]
        pages += 1
        if pages > 1:
            assert 'rel="first"' in page.text  # the "newest" link
    assert pages == 3 and len(seen) == 250 and set(seen) == {r[0] for r in rows}
    # The API walks the same pages by its Link header, each body the CLI's JSON (oldest first within a page).
    api_seen, url = [], "/api/v1/calls?period=2026-11&tz=UTC"
    while url:
        response = client.get(url)
        api_seen += ids_of(response)[::-1]
        link = response.headers.get("link")
        url = link and re.fullmatch(r'<([^>]+)>; rel="next"', link)[1]
    assert api_seen == seen


def test_a_viewer_of_some_projects_pages_through_their_calls_only_and_each_once(client_as, ledger):
    projects = ("search", "chat", "ops", None)
    rows = [call_values(started_at=NOV + timedelta(seconds=i % 3), call_id=f"c{i:04d}", project=projects[i % 4])
            for i in range(400)]
    insert(ledger, rows)
    client = client_as(Viewer("two", "viewer", projects=frozenset({"search", "chat"})))
    seen, url = [], "/api/v1/calls?period=2026-11&tz=UTC"
    while url:
        response = client.get(url)
        seen += ids_of(response)[::-1]
        link = response.headers.get("link")
        url = link and re.fullmatch(r'<([^>]+)>; rel="next"', link)[1]
    theirs = {r[0] for r in rows if r[CALL_COLUMNS.index("project")] in ("search", "chat")}
    assert len(seen) == 200 and set(seen) == theirs
    started = {r[0]: r[CALL_COLUMNS.index("started_at")] for r in rows}
    assert [started[c] for c in seen] == sorted((started[c] for c in seen), reverse=True)  # newest first throughout


def test_the_api_and_the_export_are_the_clis_own_bytes_for_the_same_filters(client_as, ledger, mixed):
    client = client_as(FINANCE)
    window = ["--since", "2026-11-01T00:00:00Z", "--until", "2026-12-01T00:00:00Z"]
    for query, argv in (({}, []), ({"project": "search", "user": "u-1"}, ["--project", "search", "--user", "u-1"]),
                        ({"key": "batch-key"}, ["--key", "batch-key"]), ({"account": "acme"}, ["--account", "acme"]),
                        ({"tag": "team=red"}, ["--tag", "team=red"]), ({"class": "overcharge"}, ["--class", "overcharge"])):
        code, expected = cli(ledger.url, *window, *argv, "--limit", "100", "--format", "json")
        assert code == 0
        assert client.get("/api/v1/calls", params={**ALL_NOVEMBER, **query}).text == expected
        for output in ("json", "csv"):
            code, expected = cli(ledger.url, *window, *argv, "--format", output)
            export = client.get("/calls/export", params={**ALL_NOVEMBER, **query, "format": output})
            assert export.status_code == 200 and export.content == expected.encode()
    one = client.get(f"/api/v1/calls/{mixed['tagged']}")
    code, expected = cli(ledger.url, *window, "--tag", "team=red", "--format", "json")
    assert json.loads(one.text) == json.loads(expected)[0]


def test_a_limited_viewer_gets_nothing_of_another_project_by_filter_id_export_or_api(client_as, mixed):
    client = client_as(SEARCH_ONLY)
    assert page_ids(client.get("/calls", params={**ALL_NOVEMBER, "project": "chat"})) == []
    assert page_ids(client.get("/calls", params={**ALL_NOVEMBER, "project": "(none)"})) == []
    mine = set(page_ids(client.get("/calls", params=ALL_NOVEMBER)))
    assert mine and "chat" not in mine and "no_project" not in mine
    for other in ("chat", "no_project"):
        assert client.get(f"/calls/{other}").status_code == 404
        assert client.get(f"/api/v1/calls/{other}").status_code == 404
    assert set(page_ids(client.get("/calls", params={**ALL_NOVEMBER, "project": "search"}))) == mine
    assert client.get("/calls/missing").status_code == 404  # the same answer as another project's call
    assert client.get("/calls/plain").status_code == 200
    assert ids_of(client.get("/api/v1/calls", params={**ALL_NOVEMBER, "project": "chat"})) == []
    assert set(ids_of(client.get("/api/v1/calls", params=ALL_NOVEMBER))) == mine
    export = client.get("/calls/export", params={**ALL_NOVEMBER, "format": "csv"})
    lines = export.text.strip().split("\n")
    assert len(lines) == len(mine) + 1 and not [line for line in lines if line.startswith(("chat,", "no_project,"))]
    assert ids_of(client.get("/calls/export", params={**ALL_NOVEMBER, "format": "json", "project": "chat"})) == []


def test_an_export_needs_the_export_right_and_is_in_the_audit_log(client_as, mixed, ledger, monkeypatch):
    from web_audit import audit_rows
    from ledger.web import viewer as viewer_module

    client = client_as(FINANCE)
    assert client.get("/calls/export", params={**ALL_NOVEMBER, "format": "csv"}).status_code == 200
    query = "&".join(f"{k}={v}" for k, v in {**ALL_NOVEMBER, "format": "csv"}.items()).replace(":", "%3A")
    assert audit_rows(ledger) == [("fin", "export", "calls as csv", {"format": "csv", "calls": 10, "query": query})]
    monkeypatch.setitem(viewer_module._ALLOWED, "viewer", frozenset({viewer_module.READ}))
    refused = client_as(SEARCH_ONLY).get("/calls/export", params={"format": "csv"})
    assert refused.status_code == 403


def test_a_calls_page_shows_its_figures_and_the_key_only_by_label_or_last_four(client_as, mixed):
    client = client_as(FINANCE)
    page = client.get(f"/calls/{mixed['over']}", params={"tz": "Asia/Kolkata"})
    assert page.status_code == 200
    text = page.text
    for shown in ("overcharge", "charged more than the rate card", "0.5", "0.25088", "0.24912", "194", "229", "457",
                  "2026-11-10 17:38:00", "0.3 s after the start", "0.7 s in all", "gemini-3.1-pro-preview",
                  "aivideoapi-2026-04", "160 credits per 1M prompt tokens, 960 per 1M completion tokens, $0.005 a credit",
                  "…Zq9x", "Asia/Kolkata"):
        assert shown in text, shown
    assert "f" * 64 not in text  # the fingerprint is not shown
    batch = client.get(f"/calls/{mixed['batch']}").text
    assert "batch-key" in batch and "acme" in batch


HOSTILE = ["<script>alert(1)</script>", "\u202eevil\u202c", "x" * 10_000]


def test_hostile_text_from_callers_is_inert_on_every_page(client_as, ledger):
    rows = [call_values(started_at=NOV, call_id="hostile", project=HOSTILE[0], end_user=HOSTILE[1],
                        tags={"<b>n</b>": HOSTILE[2], "note": HOSTILE[0]}, model_requested=HOSTILE[0])]
    insert(ledger, rows)
    client = client_as(FINANCE)
    for url in ("/calls?period=2026-11", "/calls/hostile", f"/calls?project={HOSTILE[0]}&period=2026-11"):
        page = client.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<b>n</b>" not in page.text
    detail = client.get("/calls/hostile").text
    assert "<bdi" in detail and "\u202eevil" in detail  # shown, isolated from the text around it
    assert "x" * 121 not in detail.replace('title="' + "x" * 10_000, "")  # cut for display, whole in the title
    assert page_ids(client.get("/calls", params={"project": HOSTILE[0], "period": "2026-11"})) == ["hostile"]
    too_long = client.get("/calls", params={"user": HOSTILE[2]})
    assert too_long.status_code == 400 and "<code>user</code>" in too_long.text and HOSTILE[2] not in too_long.text


def test_the_list_and_a_call_make_as_many_queries_with_three_calls_as_with_three_hundred(client_as, ledger, count_queries):
    client = client_as(FINANCE)
    counts = []
    for n in (3, 297):
        insert(ledger, [call_values(started_at=NOV + timedelta(seconds=i)) for i in range(n)])
        counter = count_queries()
        assert client.get("/calls", params=ALL_NOVEMBER).status_code == 200
        listed = counter.count
        counter = count_queries()
        call_id = page_ids(client.get("/calls", params=ALL_NOVEMBER))[0]
        before = counter.count
        assert client.get(f"/calls/{call_id}").status_code == 200
        counts.append((listed, counter.count - before))
    assert counts[0] == counts[1]
    assert counts[0][0] <= 3 and counts[0][1] == 1


def test_the_list_says_when_retention_deleted_the_rows_before_a_date(client_as, ledger, monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)
    april = datetime(2026, 4, 1, tzinfo=timezone.utc)
    insert(ledger, [call_values(started_at=april + timedelta(days=d), recorded_at=april + timedelta(days=d, hours=1))
                    for d in range(10)] + [call_values(started_at=april + timedelta(days=40), call_id="may")])
    cutoff = datetime(2026, 5, 11, 9, 7, 30, tzinfo=timezone.utc)
    clock = iter([cutoff] * 2 + [cutoff + timedelta(seconds=1)])
    closing.close_period(Settings(database_url=ledger.url), ledger, parse_period("2026-04", "UTC"), now=lambda: next(clock))
    assert retention.delete_old_calls(ledger, 30, datetime(2026, 12, 1, tzinfo=timezone.utc)).calls_deleted == 10
    client = client_as(FINANCE)
    april_page = client.get("/calls", params={"period": "2026-04", "tz": "UTC"})
    assert "Calls of closed periods started before" in april_page.text and ">2026-11-01 00:00</time> are gone" in april_page.text
    assert "this list has no rows of those periods before that date" in april_page.text and page_ids(april_page) == []
    may_page = client.get("/calls", params={"period": "2026-05", "tz": "UTC"})
    assert "are gone" not in may_page.text and page_ids(may_page) == ["may"]
    api = client.get("/api/v1/calls", params={"period": "2026-04", "tz": "UTC"})
    assert api.text == "[]\n" and "deleted by retention" in api.headers["x-ledger-note"]


def test_the_clis_filters_take_a_group_label_as_reports_print_it(ledger):
    insert(ledger, [call_values(started_at=NOV, call_id="none", project=None),
                    call_values(started_at=NOV, call_id="empty", project=""),
                    call_values(started_at=NOV, call_id="named-none", project="(none)"),
                    call_values(started_at=NOV, call_id="quoted", project='"q"')])
    for label, expected in (("(none)", ["none"]), ("(empty)", ["empty"]), ('"(none)"', ["named-none"]),
                            ('"\\"q\\""', ["quoted"])):
        code, out = cli(ledger.url, "--project", label, "--format", "json")
        assert code == 0 and [c["call_id"] for c in json.loads(out)] == expected, label
