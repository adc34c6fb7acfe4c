"""Hostile callers' input for the recording path's tests: the simulator counting what reached it, and the shapes
of headers and bodies a caller may send (hypothesis strategies), with the check that each call is one `calls` row."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest
from hypothesis import HealthCheck, example, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import func, select

from factories import insert_records, make_call

import ledger.sim.server as sim_server
from ledger.accounting.budgets import Budget, Scope
from ledger.config.alerts import AlertSettings
from ledger.config import Settings
from ledger.record.recorder import Recorder
from ledger.sim.server import SimulatorServer
from ledger.store.engine import Ledger
from ledger.store.models import Call, RejectedRecord

KEY = "sk-hostile-0000000000000001"
HELLO = [{"role": "user", "content": "Hi"}]
DEEP_TAGS = '{"team":"beta","x":' + "[" * 3000 + "]" * 3000 + "}"  # the review's 6 KB header


class CountingSimulator(SimulatorServer):
    """The simulator, counting the chat requests that reached it (whatever it answered)."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = 0

    def start(self) -> "CountingSimulator":
        made = sim_server.create_app

        def counted(*args, **kwargs):
            app = made(*args, **kwargs)

            async def counting(scope, receive, send):
                if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
                    self.reached += 1
                await app(scope, receive, send)

            return counting

        sim_server.create_app = counted
        try:
            return super().start()
        finally:
            sim_server.create_app = made


@pytest.fixture
def counting_sim():
    with CountingSimulator() as server:
        yield server


def capped(name: str, limit: str = "1", **scope) -> Budget:
    return Budget(name, Scope(**scope), "month", "UTC", Decimal(limit), enforce=True)


def counts(database_url: str) -> tuple[int, int]:
    with Ledger(database_url) as ledger, ledger.session() as session:
        return session.scalar(select(func.count()).select_from(Call)), session.scalar(select(func.count()).select_from(RejectedRecord))


# ---------------------------------------------------------------- bodies shaped to pass a model-scoped limit

CAPPED = "gemini-3.1-pro"
PROMPT = [{"role": "user", "content": "x" * 200_000}]  # an ordinary long prompt: the model comes after 4 KB
# Bodies whose model, as the upstream reads it, is the capped one: each must be refused.
CAPPED_BODIES = {
    "after a long prompt": json.dumps({"messages": PROMPT, "model": CAPPED}).encode(),
    "the last of two keys": b'{"model": "gemini-2.5-flash", "messages": [], "model": "gemini-3.1-pro"}',
    "escaped": b'{"model": "gemini-3.1-pr\\u006f", "messages": []}',
    "its key escaped": b'{"\\u006dodel": "gemini-3.1-pro", "messages": []}',
    "a nested model first": b'{"metadata": {"model": "gemini-2.5-flash"}, "model": "gemini-3.1-pro", "messages": []}',
    "spaced and split": b'{\n  "model"\n  :\n  "gemini-3.1-pro"\n, "messages": []}',
    "nested past the interpreter's depth": b'{"model": "gemini-3.1-pro", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}
# Bodies whose model is another one: each goes through.
OTHER_BODIES = {
    "the last of two keys": b'{"model": "gemini-3.1-pro", "messages": [], "model": "gemini-2.5-flash"}',
    "a nested capped model": b'{"metadata": {"model": "gemini-3.1-pro"}, "model": "gemini-2.5-flash", "messages": []}',
}


def model_capped_settings(database_url: str, folder: Path) -> Settings:
    """Settings whose one enforced budget, on the capped model, is spent already."""
    with Ledger(database_url) as ledger:  # the model's limit is spent already
        insert_records(ledger, [make_call(datetime.now(timezone.utc), 5, model=CAPPED)])
    return Settings(database_url=database_url, secret_path=str(folder / "secret"), journal_path=str(folder / "journal"),
                    writer_processes=0, limits_refresh_seconds=0.05,
                    alerting=AlertSettings((capped("by-model", model=CAPPED),)))


# ---------------------------------------------------------------- any shape, at every header and at the body

HEADER_NAMES = ("X-Ledger-Tags", "X-Ledger-Project", "X-Ledger-User", "X-Stainless-Retry-Count", "Authorization")
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@st.composite
def deep(draw) -> str:
    depth = draw(st.integers(1, 4000))
    return '{"team": "beta", "x": ' + "[" * depth + "]" * depth + "}"


header_values = st.one_of(st.binary(max_size=64), json_values.map(json.dumps), deep(),
                          st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"model": st.text(max_size=20), "messages": st.just([{"role": "user", "content": "Hi"}])}, optional={
        "tools": json_values, "reasoning_effort": st.text(max_size=5), "stream": json_values,
    }).map(lambda d: json.dumps(d).encode()),
    deep().map(str.encode),
)


def _header_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def one_row_per_call_reaching_the_upstream(base_url: str, sim: CountingSimulator, flush: "Flush", database_url: str,
                                            authorization: str) -> None:
    """Hypothesis's examples sent through `flush.transport`, into one ledger: each leaves one row per call that reached
    the simulator, and nothing kept aside."""
    client = httpx2.Client(transport=flush.transport, timeout=30)

    @hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values), body=bodies)
    @example(headers={"X-Ledger-Tags": DEEP_TAGS}, body=b'{"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Hi"}]}')
    def check(headers, body):
        before_rows, before_reached = counts(database_url)[0], sim.reached
        sent = [(name.lower().encode(), _header_bytes(value)) for name, value in headers.items()]
        if "Authorization" not in headers:
            sent.append((b"authorization", authorization.encode()))
        sent.append((b"content-type", b"application/json"))
        try:
            request = client.build_request("POST", base_url + "/chat/completions", content=body, headers=sent)
        except Exception:
            return  # no client would send it: nothing left
        try:
            client.send(request).read()
        except httpx2.HTTPError:
            pass  # refused on the wire (by the proxy's server); what reached the upstream is counted all the same
        assert flush()
        rows, aside = counts(database_url)
        reached = sim.reached - before_reached
        # One row for the call that reached the upstream; one that never left (refused by the HTTP stack) may
        # have its failed row too.
        assert rows - before_rows == 1 if reached else rows - before_rows <= 1
        assert reached <= 1 and aside == 0

    check()
    client.close()


class Flush:
    """A recorder's flush, and the transport the examples are sent through."""

    def __init__(self, recorder: Recorder, transport) -> None:
        self.recorder, self.transport = recorder, transport

    def __call__(self) -> bool:
        return self.recorder.flush(30)
