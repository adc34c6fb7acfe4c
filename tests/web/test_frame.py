"""The dashboard's frame: the gate, refusals in a clear shape, escaping, and headers that keep data inert."""

from __future__ import annotations

from ledger.web.viewer import Viewer

FINANCE = Viewer("fin", "finance", csrf="t" * 32)


def test_a_request_not_signed_in_goes_to_the_sign_in_page_and_the_api_answers_401(client_as):
    client = client_as(None)
    page = client.get("/?tz=Asia/Kolkata")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Ftz%3DAsia%2FKolkata"
    assert client.get("/healthz").text == "ok\n"


def test_a_bad_parameter_is_a_400_page_naming_it_never_a_traceback(client_as):
    client = client_as(FINANCE)
    page = client.get("/?tz=Mars/Olympus")
    assert page.status_code == 400
    assert "tz" in page.text and "Traceback" not in page.text
    unknown = client.get("/?colour=red")
    assert unknown.status_code == 400 and "colour" in unknown.text


def test_the_page_prints_its_zone_and_as_of_and_keeps_scripts_out(client_as):
    page = client_as(FINANCE).get("/?tz=Asia/Kathmandu")
    assert page.status_code == 200
    assert "Asia/Kathmandu" in page.text and "As of" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_text_from_callers_is_escaped_in_every_refusal(client_as):
    page = client_as(FINANCE).get("/", params={"<script>alert(1)</script>": "x"})
    assert page.status_code == 400
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text


def test_an_unknown_page_is_a_404_page_and_static_files_are_served(client_as):
    client = client_as(FINANCE)
    assert client.get("/nowhere").status_code == 404
    css = client.get("/static/dashboard.css")
    assert css.status_code == 200 and "font" in css.text
