"""A hard limit holds through `credit-ledger proxy --workers 2`: from a new ledger, 16 clients at once, the scope
passes its limit by less than one call (each worker admits through the ledger near the limit, not from its own room)."""

from __future__ import annotations

from decimal import Decimal

import openai

import test_command
from limit_callers import KEY, PROJECT, call_from_threads, scope_spend, tokens
from test_command import start, stopped

LIMIT = Decimal(3)
BUDGET = f'''
[recorder]
limits_refresh_seconds = 0.5
[[budgets]]
name = "search-cap"
scope = {{project = "{PROJECT}"}}
period = "month"
limit = "{LIMIT}"
enforce = true
'''


def test_two_workers_together_pass_the_limit_by_less_than_one_call(database_url, tmp_path, simulator, monkeypatch):
    written = test_command.config_file
    monkeypatch.setattr(test_command, "config_file", lambda *args, **kwargs: written(*args[:2], BUDGET, **kwargs))
    process, root = start(tmp_path, database_url, "--upstream", simulator.base_url, "--workers", "2")
    try:
        with openai.OpenAI(base_url=root + "/v1", api_key=KEY, max_retries=0) as client:
            outcomes = call_from_threads(client, 16, 4, tokens(300))
    finally:
        code, err = stopped(process)
    assert code == 0, err
    found = scope_spend(database_url)
    assert set(outcomes) == {"200", "402"} and found.charged == outcomes.count("200")
    assert found.spent < LIMIT + found.largest, (found, outcomes.count("200"))
