"""Callers that hammer one enforced budget from threads, in this process or in another (run as a script), for the
hard limits' tests: what each call got, and what the scope spent in the end."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import openai
from sqlalchemy import func, select

from ledger.accounting.budgets import Budget, Scope
from ledger.config.alerts import AlertSettings
from ledger.config import Settings
from ledger.store.engine import Ledger
from ledger.store.models import Call

KEY = "sk-limits-0000000000000001"
PROJECT = "search"
MESSAGES = [{"role": "user", "content": "Count to three."}]


def tokens(completion: int) -> dict:
    """The simulator's headers that make every call with the same prompt cost the same."""
    return {"X-Sim-Completion-Tokens": str(completion)}


def capped_settings(database_url: str, folder: Path, limit: Decimal, refresh: float = 0.05) -> Settings:
    budget = Budget("search-cap", Scope(project=PROJECT), "month", "UTC", limit, enforce=True)
    return Settings(database_url=database_url, secret_path=str(folder / "secret"), journal_path=str(folder / "journal"),
                    writer_processes=0, limits_refresh_seconds=refresh, alerting=AlertSettings((budget,)))


def call_from_threads(client: openai.OpenAI, threads: int, calls_each: int, headers: dict) -> list[str]:
    """`threads` threads started together, each making `calls_each` calls in the scope: each call's HTTP status."""
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def caller() -> None:
        start.wait()
        for _ in range(calls_each):
            try:
                client.chat.completions.create(model="gemini-3.1-pro", messages=MESSAGES, stream=False,
                                               extra_headers={**headers, "X-Ledger-Project": PROJECT})
                result = "200"
            except openai.APIStatusError as error:
                result = str(error.status_code)
            with lock:
                outcomes.append(result)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return outcomes


@dataclass(frozen=True)
class ScopeSpend:
    spent: Decimal
    largest: Decimal  # the largest charge of one call
    charged: int


def scope_spend(database_url: str) -> ScopeSpend:
    with Ledger(database_url) as ledger, ledger.session() as session:
        spent, largest, charged = session.execute(
            select(func.coalesce(func.sum(Call.credits_charged), 0), func.max(Call.credits_charged),
                   func.count(Call.id).filter(Call.credits_charged > 0)).where(Call.project == PROJECT)).one()
    return ScopeSpend(Decimal(spent), Decimal(largest or 0), charged)


def main(argv: list[str]) -> None:
    """As a script: a Recorder of its own, calls from threads once `go` exists, each outcome printed as JSON."""
    from ledger.record.recorder import Recorder

    database_url, folder, limit, base_url, threads, calls_each, completion, go = argv
    settings = capped_settings(database_url, Path(folder), Decimal(limit))
    recorder = Recorder(settings=settings)
    try:
        with openai.OpenAI(base_url=base_url, api_key=KEY, http_client=recorder.client(), max_retries=0) as client:
            print("ready", flush=True)
            while not Path(go).exists():  # both processes start calling together
                time.sleep(0.005)
            outcomes = call_from_threads(client, int(threads), int(calls_each), tokens(int(completion)))
        recorder.flush(60)
    finally:
        recorder.close()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
