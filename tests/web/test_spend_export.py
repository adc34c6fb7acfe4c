"""The Spend view's exports and the API's spend route: the CLI's own output for the same arguments, only what the
viewer may see, bad parameters a 400 naming them; the page's queries fixed whatever the data; caller text inert."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone

import openpyxl
import pytest
from ledger_rows import call_values, insert, register, snapshot

from ledger.cli import main
from ledger.web.viewer import Viewer

FINANCE = Viewer("fin", "finance", csrf="t" * 32)
SEARCH_ONLY = Viewer("sam", "viewer", projects=frozenset({"search"}), csrf="s" * 32)
NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)
FORMAT_ARGS = [("2026-11", "UTC", "project,day"), ("2026-W46", "Asia/Kolkata", "model"), ("2026-Q4", "America/New_York", ""),
               ("2026-11-03", "Europe/Berlin", "tag:team,user")]


def ledger_of_projects(ledger, projects=("search", "billing", "ads"), calls=30) -> None:
    rows = []
    for i in range(calls):
        rows.append(call_values(started_at=NOV + timedelta(days=i % 7, hours=i * 5), project=projects[i % len(projects)],
                                charged=f"0.{i + 1:02d}", end_user=f"u-{i % 4}", tags={"team": f"t{i % 2}"}))
    insert(ledger, rows)


def cli(url: str, *args: str) -> str:
    out = io.StringIO()
    assert main(["--database-url", url, "report", *args], out=out) == 0, out.getvalue()
    return out.getvalue()


def cli_args(period: str, zone: str, by: str, fmt: str) -> list[str]:
    return ["--period", period, "--tz", zone, *(["--by", by] if by else []), "--format", fmt]


def without_generated_at(text: str) -> str:
    """The JSON report less its one line that moves between two runs (when it was made); it must be there."""
    kept, count = re.subn(r'\n  "generated_at": "[0-9TZ:-]+",', "", text)
    assert count == 1, text
    return kept


@pytest.mark.parametrize("period, zone, by", FORMAT_ARGS)
def test_the_api_and_the_json_export_are_what_the_cli_writes(ledger, client_as, tmp_path, monkeypatch, period, zone, by):
    monkeypatch.chdir(tmp_path)
    ledger_of_projects(ledger)
    client = client_as(FINANCE)
    query = {"period": period, "tz": zone, **({"by": by} if by else {})}
    expected = without_generated_at(cli(ledger.url, *cli_args(period, zone, by, "json"), "--output", "-"))
    api = client.get("/api/v1/spend", params=query)
    assert api.status_code == 200 and api.headers["content-type"] == "application/json"
    assert without_generated_at(api.text) == expected
    export = client.get("/spend/export", params={**query, "format": "json"})
    assert export.status_code == 200 and without_generated_at(export.text) == expected
    assert json.loads(export.text)["totals"]["calls"] == json.loads(expected)["totals"]["calls"]


@pytest.mark.parametrize("period, zone, by", FORMAT_ARGS)
def test_the_csv_and_focus_exports_are_the_cli_output_byte_for_byte(ledger, client_as, tmp_path, monkeypatch, period,
                                                                     zone, by):
    monkeypatch.chdir(tmp_path)
    ledger_of_projects(ledger)
    register(ledger, "f" * 64, "Zq9x", "prod-key", "prod")
    snapshot(ledger, "prod", NOV + timedelta(days=2), 1000, 10)
    snapshot(ledger, "prod", NOV + timedelta(days=3), 2000, 20)  # a top-up: a Purchase row in FOCUS
    client = client_as(FINANCE)
    for fmt in ("csv", "focus"):
        expected = cli(ledger.url, *cli_args(period, zone, by, fmt), "--output", "-").encode()
        export = client.get("/spend/export", params={"period": period, "tz": zone, "by": by, "format": fmt})
        assert export.status_code == 200, export.text
        assert export.content == expected
        assert export.headers["content-disposition"].startswith('attachment; filename="spend-')
    account = client.get("/spend/export", params={"period": period, "tz": zone, "account": "prod", "format": "csv"})
    assert account.content == cli(ledger.url, *cli_args(period, zone, "", "csv"), "--account", "prod",
                                  "--output", "-").encode()


def workbook_values(content: bytes) -> dict:
    book = openpyxl.load_workbook(io.BytesIO(content))
    try:
        return {name: [[c.value for c in row] for row in book[name].iter_rows() if row[0].value != "generated (UTC)"]
                for name in book.sheetnames}
    finally:
        book.close()


def test_the_workbook_export_is_the_cli_workbook(ledger, client_as, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ledger_of_projects(ledger)
    path = tmp_path / "cli.xlsx"
    cli(ledger.url, *cli_args("2026-11", "Europe/Berlin", "project,day", "xlsx"), "--output", str(path))
    export = client_as(FINANCE).get("/spend/export", params={"period": "2026-11", "tz": "Europe/Berlin",
                                                             "by": "project,day", "format": "xlsx"})
    assert export.status_code == 200, export.text
    assert export.headers["content-disposition"] == (
        'attachment; filename="spend-2026-11-Europe-Berlin-by-project-day.xlsx"')
    assert workbook_values(export.content) == workbook_values(path.read_bytes())


def test_a_viewer_of_one_project_gets_none_of_another_projects_spend_by_any_route(ledger, client_as, tmp_path,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    april = datetime(2026, 4, 1, tzinfo=timezone.utc)
    ledger_of_projects(ledger, projects=("search", "billing-secret"))
    insert(ledger, [call_values(started_at=NOV, project=None, charged="9")])  # a call of no project
    register(ledger, "f" * 64, "Zq9x", "prod-key", "prod")
    snapshot(ledger, "prod", NOV + timedelta(days=2), 1000, 10)
    snapshot(ledger, "prod", NOV + timedelta(days=3), 2000, 20)
    client = client_as(SEARCH_ONLY)
    everyone = json.loads(cli(ledger.url, *cli_args("2026-11", "UTC", "project", "json"), "--output", "-"))
    search = next(g for g in everyone["groups"] if g["key"]["project"] == "search")
    for project in ("billing-secret", None):
        query = {"period": "2026-11", "tz": "UTC", "by": "project,user", **({"project": project} if project else {})}
        page = client.get("/spend", params=query)
        api = client.get("/api/v1/spend", params=query)
        exports = {fmt: client.get("/spend/export", params={**query, "format": fmt}) for fmt in ("csv", "json", "focus")}
        for answer in (page, api, *exports.values()):
            assert answer.status_code == 200, answer.text
            assert "(none)" not in answer.text
            # The page's form, heading and links echo a filter the viewer typed; no figure names the project.
            assert "billing-secret" not in answer.text or (answer is page and project is not None)
        report = json.loads(api.text)
        assert json.loads(exports["json"].text)["totals"] == report["totals"]
        if project is None:  # their own project's figures, exactly the CLI's
            assert report["totals"]["calls"] == search["calls"] and {g["key"]["project"] for g in report["groups"]} == {
                "search"}
            assert report["totals"]["credits_charged"] == search["credits_charged"] == "2.25"
            assert "search" in exports["focus"].text
        else:  # another project's filter: nothing
            assert "No calls in this period." in page.text and '<tr class="group">' not in page.text
            assert 'id="spend-daily"' not in page.text
            assert report["totals"]["calls"] == 0 and report["groups"] == [] and report["empty"] is True
            assert exports["csv"].text.count("\n") == 2  # the header and the total of nothing
            assert exports["focus"].text.count("\n") == 1  # the header only
        assert "Purchase" not in exports["focus"].text  # top-ups pay for every project
    workbook = client.get("/spend/export", params={"period": "2026-11", "format": "xlsx"})
    assert workbook.status_code == 403 and "Summary" in workbook.text
    del april


def test_an_export_is_in_the_audit_log_with_its_actor_and_what_it_gave(ledger, client_as):
    from web_audit import audit_rows

    ledger_of_projects(ledger, calls=3)
    answer = client_as(FINANCE).get("/spend/export", params={"period": "2026-11", "tz": "UTC", "format": "json"})
    assert answer.status_code == 200
    assert audit_rows(ledger) == [("fin", "export", "spend-2026-11-UTC.json",
                                   {"format": "json", "query": "period=2026-11&tz=UTC&format=json", "projects": None})]
    search = Viewer("sam", "finance", projects=frozenset({"search"}), csrf="s" * 32)
    assert client_as(search).get("/spend/export", params={"period": "2026-11", "format": "csv"}).status_code == 200
    assert audit_rows(ledger)[-1][0] == "sam" and audit_rows(ledger)[-1][3]["projects"] == ["search"]


@pytest.mark.parametrize(
    "path, query, parameter",
    [
        ("/spend", {"tz": "Mars/Olympus"}, "tz"),
        ("/spend", {"period": "2026-13"}, "period"),
        ("/spend", {"period": "2026-11", "from": "2026-11-01"}, "period"),
        ("/spend", {"from": "yesterday"}, "from"),
        ("/spend", {"to": "2026-11-02"}, "to"),
        ("/spend", {"from": "2026-12-01", "to": "2026-11-01"}, "from"),
        ("/spend", {"by": "project,colour"}, "by"),
        ("/spend", {"by": "project,user,model"}, "by"),
        ("/spend", {"colour": "red"}, "colour"),
        ("/spend", {"period": "2026-11", "account": "nope"}, "account"),
        ("/spend", {"from": "1971-01-01", "by": "day,project"}, "by"),
        ("/spend/export", {"format": "pdf"}, "format"),
        ("/spend/export", {"period": "2026-11", "account": "nope", "format": "json"}, "account"),
        ("/api/v1/spend", {"by": "colour"}, "by"),
        ("/api/v1/spend", {"period": "2026-W54"}, "period"),
        ("/api/v1/spend", {"format": "csv"}, "format"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(ledger, client_as, path, query, parameter):
    answer = client_as(FINANCE).get(path, params=query)
    assert answer.status_code == 400, answer.text
    assert "Traceback" not in answer.text
    if path.startswith("/api/"):
        assert answer.json()["error"]["parameter"] == parameter
    else:
        assert f"<code>{parameter}</code>" in answer.text


def test_the_page_makes_the_same_few_queries_whatever_the_rows_and_groups(ledger, client_as, count_queries):
    client = client_as(FINANCE)
    query = {"period": "2026-11", "tz": "Europe/Berlin", "by": "project,user"}
    insert(ledger, [call_values(started_at=NOV + timedelta(hours=1))])
    counter, counts = count_queries(), []
    for more in (0, 400):
        insert(ledger, [call_values(started_at=NOV + timedelta(hours=i % 600, minutes=i % 13), project=f"p{i % 40}",
                                    end_user=f"u{i % 17}") for i in range(more)])
        before = counter.count
        page = client.get("/spend", params=query)
        assert page.status_code == 200
        counts.append(counter.count - before)
    # every (project, user) pair apart, and search's: the first 200 rows, the rest summed in one
    assert page.text.count('<tr class="group">') == 200 and "(201 more groups: every row in the export)" in page.text
    assert counts[0] == counts[1] <= 12, counts


HOSTILE = ("</script><script>alert(1)</script>", "\u202egnissecorp\u202c", "<img src=x onerror=alert(2)>", "x" * 200)  # the column holds 200 characters


def test_hostile_project_names_are_inert_in_the_page_and_the_charts_json(ledger, client_as):
    insert(ledger, [call_values(started_at=NOV + timedelta(hours=i), project=name) for i, name in enumerate(HOSTILE)])
    page = client_as(FINANCE).get("/spend", params={"period": "2026-11", "tz": "UTC", "by": "project"})
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert page.text.count("<script") == 3  # ECharts, charts.js and the chart's inert JSON block
    block = re.search(r'<script type="application/json" id="spend-daily">(.*?)</script>', page.text, re.S).group(1)
    assert "<" not in block and ">" not in block
    names = {s["name"] for s in json.loads(block)["option"]["series"]}
    assert names == set(HOSTILE)
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert f'title="{"x" * 200}"' in page.text  # the long one cut for display, whole in its title
    assert f'>{"x" * 200}<' not in page.text
