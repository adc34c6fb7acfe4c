"""Hard budget limits: the call past the limit is refused before it leaves, recorded, and N threads stay within the bound."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import httpx2
import openai
import pytest
from sqlalchemy import func, select

from factories import insert_records, make_call

from ledger.accounting.budgets import Budget, Scope
from ledger.config.alerts import AlertSettings
from ledger.config import Settings
from ledger.record.recorder import Recorder
from ledger.store.engine import Ledger
from ledger.store.models import Call

KEY = "sk-limits-0000000000000001"
FIXED = {"X-Sim-Completion-Tokens": "300"}  # with the same prompt, every call costs the same


def settings_for(database_url, tmp_path, *budgets, refresh=0.05) -> Settings:
    return Settings(database_url=database_url, secret_path=str(tmp_path / "secret"), journal_path=str(tmp_path / "journal"),
                    writer_processes=0, limits_refresh_seconds=refresh, alerting=AlertSettings(tuple(budgets)))


def enforced(limit, **scope) -> Budget:
    return Budget("search-cap", Scope(**scope), "month", "Europe/Berlin", Decimal(limit), enforce=True)


def ask(client, project=None, **headers):
    extra = {**FIXED, **headers, **({"X-Ledger-Project": project} if project else {})}
    return client.chat.completions.create(model="gemini-3.1-pro", messages=[{"role": "user", "content": "Count to three."}],
                                          stream=False, extra_headers=extra)


def charge_of_one_call(simulator) -> Decimal:
    with openai.OpenAI(base_url=simulator.base_url, api_key=KEY, max_retries=0) as client:
        ask(client)
    return Decimal(str(simulator.platform.call_log[-1].credits_charged))


def rows(database_url, project=None) -> list[Call]:
    with Ledger(database_url) as ledger, ledger.session() as session:
        query = select(Call).order_by(Call.started_at)
        if project:
            query = query.where(Call.project == project)
        return list(session.scalars(query))


def test_the_call_past_the_limit_gets_402_budget_exceeded_and_never_reaches_the_upstream(database_url, tmp_path, simulator):
    charge = charge_of_one_call(simulator)
    seen = len(simulator.platform.call_log)
    rec = Recorder(settings=settings_for(database_url, tmp_path, enforced(charge * 2, project="search")))
    try:
        with openai.OpenAI(base_url=simulator.base_url, api_key=KEY, http_client=rec.client(), max_retries=2) as client:
            # The limit: 2 calls' worth. On a ledger with no charged call, a call not in the ledger yet counts at
            # the rate card's price of 2,000 + 2,000 tokens (more than this limit): the second waits for the first.
            ask(client, "search")
            rec.flush(30)
            ask(client, "search")
            rec.flush(30)
            rec.limits.refresh()
            with pytest.raises(openai.APIStatusError) as refused:
                ask(client, "search")
            with rec.attribute(project="search"):
                with pytest.raises(openai.APIStatusError):
                    ask(client)
            ask(client, "support")  # another project goes through
            rec.flush(30)
    finally:
        rec.close()
    error = refused.value
    assert error.status_code == 402 and error.code == "budget_exceeded" and error.type == "billing_error"
    assert "search-cap" in error.message and f"{charge * 2:,.2f}" in error.message
    assert len(simulator.platform.call_log) == seen + 3  # two search calls and the support one; no retry of a 402
    search = rows(database_url, "search")
    assert [r.status for r in search] == ["completed", "completed", "refused", "refused"]
    for row in search[2:]:
        assert (row.http_status, row.error_code, row.error_type, row.credits_charged, row.pricing_class) == (
            402, "budget_exceeded", "billing_error", 0, "ok")
        assert row.model_requested == "gemini-3.1-pro" and row.key_last4 == KEY[-4:]
    assert [r.status for r in rows(database_url, "support")] == ["completed"]


def test_n_threads_at_once_overshoot_by_at_most_one_call(database_url, tmp_path, simulator):
    charge = charge_of_one_call(simulator)
    limit = charge * Decimal("10.5")
    rec = Recorder(settings=settings_for(database_url, tmp_path, enforced(limit, project="search")))
    outcomes: list[str] = []
    lock = threading.Lock()
    try:
        with openai.OpenAI(base_url=simulator.base_url, api_key=KEY, http_client=rec.client(), max_retries=0) as client:
            ask(client, "search")  # the ledger knows the scope's charge
            rec.flush(30)
            rec.limits.refresh()
            start = threading.Barrier(8)

            def caller() -> None:
                start.wait()
                for _ in range(5):
                    try:
                        ask(client, "search")
                        result = "ok"
                    except openai.APIStatusError as error:
                        result = str(error.status_code)
                    with lock:
                        outcomes.append(result)

            threads = [threading.Thread(target=caller) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            rec.flush(30)
    finally:
        rec.close()
    with Ledger(database_url) as ledger, ledger.session() as session:
        spent = session.scalar(select(func.sum(Call.credits_charged)).where(Call.project == "search"))
        refused = session.scalar(select(func.count()).where(Call.status == "refused"))
    assert outcomes.count("402") == refused == 40 - outcomes.count("ok")
    # The stated bound: past the limit by less than one call. (Calls in flight count at twice the largest
    # charge: some are refused while others are in flight, and the limit is reached later or not at all here;
    # test_limit_bound shows it reached.)
    assert spent < limit + charge
    assert spent == charge * (1 + outcomes.count("ok"))


def test_keys_models_and_tags_scope_a_limit_and_a_call_outside_every_scope_is_untouched(database_url, tmp_path, monkeypatch):
    from ledger.config import AccountConfig, KeyConfig
    from ledger.keys import fingerprint

    monkeypatch.setenv("CAPPED_KEY", KEY)
    budgets = [replace(enforced(1, account="capped"), name="by-account"),
               replace(enforced(1, model="gemini-2.5-pro"), name="by-model"),
               replace(enforced(1, tags=(("team", "ml"),)), name="by-tag")]
    settings = replace(settings_for(database_url, tmp_path, *budgets),
                       accounts=(AccountConfig("capped", "http://127.0.0.1:9/v1", (KeyConfig("k", env="CAPPED_KEY"),)),))
    now = datetime.now(timezone.utc)
    with Ledger(database_url) as ledger:  # each scope has spent 5 of its 1 already
        insert_records(ledger, [make_call(now, 5, fingerprint=fingerprint(KEY, b"test-secret-0123456789")),
                                make_call(now, 5, model="gemini-2.5-pro"), make_call(now, 5, tags={"team": "ml"})])
    answered = []

    def upstream(request):
        answered.append(request)
        return httpx2.Response(200, json={"id": "chatcmpl-1", "choices": [], "credits_consumed": 1})

    rec = Recorder(settings=settings)
    try:
        client = httpx2.Client(transport=rec.transport(httpx2.MockTransport(upstream)))
        url, body = "http://sim/v1/chat/completions", {"model": "gemini-3.1-pro", "messages": []}
        other = {"Authorization": "Bearer sk-other-0000000000000002"}
        answers = {
            "outside": client.post(url, json=body, headers=other),
            "by-account": client.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}),
            "by-model": client.post(url, json={**body, "model": "gemini-2.5-pro"}, headers=other),
            "by-tag": client.post(url, json=body, headers={**other, "X-Ledger-Tags": "team=ml,x=y"}),
        }
        with rec.attribute(tags={"team": "ml"}):
            answers["by-tag, in context"] = client.post(url, json=body, headers=other)
        answers["not a chat call"] = client.get("http://sim/v1/models")
        rec.flush(30)
    finally:
        rec.close()
    assert {name: a.status_code for name, a in answers.items()} == {
        "outside": 200, "by-account": 402, "by-model": 402, "by-tag": 402, "by-tag, in context": 402, "not a chat call": 200}
    for name in ("by-account", "by-model", "by-tag"):
        assert answers[name].json()["error"]["budget"] == name
    assert len(answered) == 2  # the refused calls never left


def test_httpx_and_async_clients_get_the_402_too(database_url, tmp_path, simulator):
    charge = charge_of_one_call(simulator)
    rec = Recorder(settings=settings_for(database_url, tmp_path, enforced(charge / 2, project="search")))
    try:
        with openai.OpenAI(base_url=simulator.base_url, api_key=KEY, http_client=rec.client(), max_retries=0) as client:
            ask(client, "search")
        rec.flush(30)
        rec.limits.refresh()
        plain = httpx.Client(transport=rec.transport(httpx.HTTPTransport()))
        answer = plain.post(simulator.base_url + "/chat/completions", json={"model": "gemini-3.1-pro", "messages": []},
                            headers={"Authorization": f"Bearer {KEY}", "X-Ledger-Project": "search"})
        assert isinstance(answer, httpx.Response) and answer.status_code == 402
        assert answer.json()["error"]["code"] == "budget_exceeded" and answer.headers["x-should-retry"] == "false"
        plain.close()

        async def call_async() -> int:
            async with openai.AsyncOpenAI(base_url=simulator.base_url, api_key=KEY, http_client=rec.async_client(),
                                          max_retries=0) as client:
                try:
                    await client.chat.completions.create(model="gemini-3.1-pro", messages=[], stream=True,
                                                         extra_headers={"X-Ledger-Project": "search"})
                except openai.APIStatusError as error:
                    return error.status_code
            return 200

        assert asyncio.run(call_async()) == 402
        rec.flush(30)
    finally:
        rec.close()
    assert [r.status for r in rows(database_url, "search")] == ["completed", "refused", "refused"]


def test_when_the_ledger_cannot_be_read_calls_go_through_said_once_and_enforcement_comes_back(tmp_path, caplog):
    broken = tmp_path / "ledger.db"
    broken.write_bytes(b"this is not a database " * 100)
    settings = settings_for(f"sqlite:///{broken}", tmp_path,
                            Budget("cap", Scope(project="search"), "day", "UTC", Decimal("0.000000001"), enforce=True))
    caplog.set_level(logging.WARNING, logger="ledger.record")
    from ledger.record.limits import HardLimits

    limits = HardLimits(settings.budgets, settings, b"secret", None)
    for _ in range(3):
        limits.refresh()
    assert not limits.enforcing and limits.refreshes == 3
    failures = [r for r in caplog.records if "cannot read the ledger's spend" in r.getMessage()]
    assert len(failures) == 1 and "calls go through unchecked" in failures[0].getMessage()

    class Context:
        project, user, tags = "search", None, {}

    started = datetime.now(timezone.utc).timestamp()
    assert limits.check(None, started, Context, None, None) is None  # fails open
    broken.unlink()
    Ledger(f"sqlite:///{broken}").close()  # a real ledger there now
    from ledger.accounting.pricing import default_rate_book

    limits.rate_book = default_rate_book()
    limits.refresh()
    assert limits.enforcing and "can be read again" in caplog.text
    assert limits.check(None, started, Context, None, None) is None  # nothing spent, no estimate: it goes
    limits.close()


def test_the_recorder_finds_its_enforced_budgets_where_the_cli_finds_its_config(tmp_path, monkeypatch):
    path = tmp_path / "ledger.toml"
    path.write_text(f'''
database_url = "sqlite:///{tmp_path / 'ledger.db'}"
journal = "{tmp_path / 'journal'}"
secret = "{tmp_path / 'secret'}"
[recorder]
writer_processes = 0
[[budgets]]
name = "capped"
scope = {{project = "search"}}
limit = "10"
enforce = true
[[budgets]]
name = "watched"
limit = "10"
''')
    monkeypatch.delenv("CREDIT_LEDGER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    for make in (lambda: Recorder(config=path), lambda: (monkeypatch.setenv("CREDIT_LEDGER_CONFIG", str(path)), Recorder())[1]):
        rec = make()
        try:
            assert [limit.budget.name for limit in rec.limits.limits] == ["capped"]  # only what is enforced
            assert rec.limits.enforcing  # the first refresh is done before the first call
        finally:
            rec.close()
    monkeypatch.delenv("CREDIT_LEDGER_CONFIG")
    rec = Recorder(f"sqlite:///{tmp_path / 'other.db'}", settings=Settings(secret_path=str(tmp_path / "secret"), writer_processes=0))
    try:
        assert rec.limits is None  # no enforced budget: nothing on the caller's path
    finally:
        rec.close()
