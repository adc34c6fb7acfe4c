"""A key the upstream echoes back is never stored, journalled, logged or printed."""

from __future__ import annotations

import gzip
import io
import json
import logging

import openai
import pytest
from factories import LoopbackServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ledger.accounting.snapshots import parse_credits
from ledger.cli import main
from ledger.config import Settings, load_settings
from ledger.keys import load_secret
from ledger.record.recorder import Recorder
from ledger.sink.writer import replay_journal
from ledger.redact import REDACTED, RedactingFilter, redact, redact_bytes, remember
from ledger.store.engine import Ledger

KEY = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
ECHO = {"error": {"code": "invalid_api_key", "type": "authentication_error",
                  "message": f"Incorrect API key provided: {KEY}. Authorization: Bearer {KEY}"}}


def test_redact_replaces_keys_and_bearer_tokens_and_leaves_words_alone():
    assert KEY not in redact(f"bad key {KEY}!") and REDACTED in redact(f"bad key {KEY}!")
    assert redact(f"Authorization: Bearer {KEY[3:]}") == "Authorization: Bearer [redacted]"
    assert redact("risk-assessment-team and task-runner-v2 and sk-short1") == "risk-assessment-team and task-runner-v2 and sk-short1"
    assert KEY not in redact("x" + KEY)  # glued to a word, still a key
    assert redact("the key 0123456789abcdef", known=("0123456789abcdef",)) == f"the key {REDACTED}"
    assert redact_bytes(json.dumps(ECHO).encode()).decode().count(REDACTED) == 2
    json.loads(redact_bytes(json.dumps(ECHO).encode()))  # JSON stays JSON


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60), st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_no_key_survives_redaction_whatever_surrounds_it(before, after):
    cleaned = redact(before + KEY + after)
    assert KEY not in cleaned and KEY not in redact_bytes((before + KEY + after).encode()).decode("utf-8", "replace")


def test_the_logging_filter_redacts_messages_and_their_arguments():
    record = logging.LogRecord("ledger.x", logging.ERROR, __file__, 1, "upstream said %s", (json.dumps(ECHO),), None)
    RedactingFilter().filter(record)
    assert KEY not in record.getMessage() and "upstream said" in record.getMessage()


# ---------------------------------------------------------------- an upstream that echoes the key


class Echoing:
    """An API that answers every call with the caller's key in its body: errors (plain and gzip) and a stream."""

    def __init__(self) -> None:
        self.mode = "error"

    async def chat(self, request: Request) -> Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {**ECHO["error"], "message": f"Incorrect API key provided: {key}"}}).encode()
        if self.mode == "gzip":
            return Response(gzip.compress(body), 401, {"content-encoding": "gzip"}, media_type="application/json")
        if self.mode == "stream":
            chunk = {"id": f"chatcmpl-{key}", "model": "gemini-3.1-pro-preview", "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": f"your key is {key}"}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, "credits_consumed": 0.01}

            async def events():
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return Response(body, 401, media_type="application/json")

    async def credits(self, request: Request) -> Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        return Response(json.dumps({"code": 401, "msg": f"Incorrect API key provided: {key}"}), 401,
                        media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]),
                                 Route("/v1/credits", self.credits)])


@pytest.fixture
def echoing():
    api = Echoing()
    with LoopbackServer(api.app()) as server:
        api.base_url = server.base_url
        yield api


def _texts_of(database_url: str) -> str:
    """Every text in every table of the ledger, as one string."""
    with Ledger(database_url) as ledger, ledger.engine.connect() as connection:
        found = []
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                found.extend(str(value) for value in row)
    return "\n".join(found)


def test_a_key_the_upstream_echoes_is_neither_journalled_nor_stored_nor_logged(echoing, database_url, tmp_path, caplog):
    journal = tmp_path / "journal"
    settings = Settings(secret_path=str(tmp_path / "secret"))
    caplog.set_level(logging.INFO)
    # The database is down while the calls are made: everything waits in the journal.
    with Recorder("postgresql://nobody@127.0.0.1:9/none", settings=settings, journal_dir=journal) as rec:
        client = openai.OpenAI(base_url=echoing.base_url, api_key=KEY, http_client=rec.client(), max_retries=0)
        with client:
            for mode in ("error", "gzip"):
                echoing.mode = mode
                with pytest.raises(openai.AuthenticationError):
                    client.chat.completions.create(model="gemini-3.1-pro", messages=[{"role": "user", "content": KEY}])
            echoing.mode = "stream"
            with rec.attribute(project=f"leaky {KEY}"):
                for _ in client.chat.completions.create(model="gemini-3.1-pro", messages=[{"role": "user", "content": "hi"}],
                                                        extra_headers={"X-Ledger-User": KEY}):
                    pass
        rec.flush(0.5)
        held = b"".join(path.read_bytes() for path in journal.iterdir())
        assert held.count(b"gemini-3.1-pro") >= 3  # the three calls are there...
        assert KEY.encode() not in held and KEY[3:].encode() not in held  # ...and the key is not
    result = replay_journal(database_url, journal)
    assert result.inserted == 3
    assert KEY not in _texts_of(database_url) and KEY[3:] not in _texts_of(database_url)
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_a_key_the_credits_api_echoes_is_neither_stored_nor_printed(echoing, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECHOED_KEY", KEY)
    (tmp_path / "credit-ledger.toml").write_text(
        f'[[accounts]]\nname = "prod"\nbase_url = "{echoing.base_url}"\nkeys = [{{env = "ECHOED_KEY"}}]\n')
    out = io.StringIO()
    assert main(["balance"], out=out) == 1
    printed = out.getvalue() + capsys.readouterr().err
    assert "unauthorized" in printed and KEY not in printed
    with Ledger("sqlite:///ledger.db") as ledger, ledger.session() as session:
        from ledger.store.models import BalanceSnapshot

        (raw,) = session.scalars(select(BalanceSnapshot.raw_response)).all()
    assert "Incorrect API key provided" in raw and KEY not in raw
    assert KEY not in _texts_of(f"sqlite:///{tmp_path / 'ledger.db'}")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["code", "msg", "data", "balance", "total_purchased", "total_consumed"]), inner, max_size=4), max_leaves=12))))
def test_any_credits_answer_is_a_snapshot_status_never_an_exception(body):
    parsed = parse_credits(body + KEY.encode())
    parsed_plain = parse_credits(body)
    for found in (parsed, parsed_plain):
        assert isinstance(found.status, str) and (found.detail is None or KEY not in found.detail)
        if found.status == "ok":
            assert found.balance is not None and abs(found.total_consumed) < 10**10


# ---------------------------------------------------------------- secrets known by value, whatever their shape

# What the shape rule misses: a key without a digit, a key of another shape. Each test has its own, so
# that no earlier test has made the process know it.
DIGITLESS = "sk-liveKeyWithoutAnyDigitsAtAll"
OTHER_SHAPE = "ak_live_QWErtyUIOPasdfGHJKlzxcVB"


@pytest.mark.parametrize("key", [DIGITLESS, OTHER_SHAPE])
def test_a_key_of_any_shape_the_upstream_echoes_is_neither_journalled_nor_stored_nor_logged(
        key, echoing, database_url, tmp_path, caplog):
    journal = tmp_path / "journal"
    caplog.set_level(logging.INFO)
    with Recorder("postgresql://nobody@127.0.0.1:9/none", settings=Settings(secret_path=str(tmp_path / "secret")),
                  journal_dir=journal) as rec:
        with openai.OpenAI(base_url=echoing.base_url, api_key=key, http_client=rec.client(), max_retries=0) as client:
            for mode in ("error", "gzip", "stream"):
                echoing.mode = mode
                try:
                    for _ in client.chat.completions.create(model="gemini-3.1-pro", stream=True,
                                                            messages=[{"role": "user", "content": f"my key is {key}"}]):
                        pass
                except openai.AuthenticationError as error:
                    assert key in str(error)  # the caller holds its key: its own answer is untouched
        # A log line that quotes what the upstream said (the key the recorder saw is a secret from now on).
        logging.getLogger("ledger.record").error("the upstream said: Incorrect API key provided: %s", key)
        rec.flush(0.5)
        held = b"".join(path.read_bytes() for path in journal.iterdir())
        assert held.count(b"gemini-3.1-pro") >= 3 and b"Incorrect API key provided" in held
        assert key.encode() not in held
    assert replay_journal(database_url, journal).inserted == 3
    assert key not in _texts_of(database_url)
    assert any("the upstream said" in r.getMessage() for r in caplog.records)
    assert all(key not in r.getMessage() for r in caplog.records)


def test_every_configured_secret_is_redacted_by_value_once_the_settings_are_loaded(tmp_path, monkeypatch):
    secrets = {"ACCOUNT_KEY": "sk-accountKeyWithoutDigits", "WEBHOOK_URL": "https://hooks.example/services/ABCdefGHIjkl",
               "WEBHOOK_SECRET": "whsec_QUJDREVGR0hJSktMTU5PUA==", "SMTP_PASSWORD": "correct horse battery staple",
               "UPSTREAM_KEY": "sk-upstreamKeyNoDigitsHere", "TEAM_KEY": "sk-team-key-with-digit-1abcdef"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CREDIT_LEDGER_FINGERPRINT_SECRET", "fingerprintSecretOfThisInstall")
    (tmp_path / "c.toml").write_text(
        'database_url = "postgresql://ledger:dbPass%2Fword@db.example/ledger"\n'
        '[[accounts]]\nname = "prod"\nkeys = [{env = "ACCOUNT_KEY"}]\n'
        '[[channels]]\nname = "hook"\nkind = "webhook"\nurl_env = "WEBHOOK_URL"\nsecret_env = "WEBHOOK_SECRET"\n'
        '[[channels]]\nname = "mail"\nkind = "email"\nhost = "smtp.example"\nusername = "u"\npassword_env = "SMTP_PASSWORD"\n'
        'from = "a@example.com"\nto = ["b@example.com"]\n'
        '[[proxy.keys]]\nname = "team"\nkey_env = "TEAM_KEY"\nupstream_key_env = "UPSTREAM_KEY"\n')
    load_settings(str(tmp_path / "c.toml"))
    load_secret(tmp_path / "unused")
    said = ("; ".join(f"{name} is {value}" for name, value in secrets.items()) + " fingerprintSecretOfThisInstall"
            + " dbPass/word")
    for cleaned in (redact(said), redact_bytes(said.encode()).decode()):
        assert [value for value in (*secrets.values(), "fingerprintSecretOfThisInstall", "dbPass/word")
                if value in cleaned] == []
        assert "ACCOUNT_KEY is sk-[redacted]" in cleaned


def test_a_key_in_a_url_is_found_percent_encoded_and_a_known_one_whatever_its_escapes():
    key = "sk-abc123def456ghi789"
    for form in (key, key.replace("-", "%2D"), key.replace("-", "%2d"), "sk%2Dabc%31%32%33def456ghi789"):
        assert redact(f"GET /v1/models?key={form}&x=1") == f"GET /v1/models?key={REDACTED}&x=1", form
        assert redact_bytes(f"/v1/{form}/chat".encode()) == f"/v1/{REDACTED}/chat".encode(), form
    assert redact("risk%2Dassessment and sk%2Dshort1") == "risk%2Dassessment and sk%2Dshort1"
    known = "ak_live_NoDigitsInThisKeyAtAll"
    remember(known)
    for form in (known, known.replace("_", "%5F"), known.replace("_", "%5f"), "ak_%6Cive_NoDigitsInThisKeyAtAll"):
        assert redact(f"?key={form}") == f"?key={REDACTED}" and redact_bytes(f"?key={form}".encode()) == f"?key={REDACTED}".encode()
