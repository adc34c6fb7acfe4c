"""The /v1/credits client: figures, anomalies, retries, refused keys; a scripted server on loopback."""

from __future__ import annotations

import json
import random
import socket
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from factories import LoopbackServer

from ledger.accounting import snapshots as c
from ledger.config import AccountConfig, KeyConfig
from ledger.accounting.snapshots import parse_credits
from ledger.service.credits import CreditsClient, RetryPolicy, retry_after_seconds
from ledger.keys import fingerprint

SECRET = b"test-secret-0123456789"
GOOD = b'{"code": 200, "msg": "success", "data": {"balance": 9800, "total_purchased": 10000, "total_consumed": 200}}'


@pytest.mark.parametrize(
    "body, status",
    [
        (GOOD, c.OK),
        (b"<html>502 Bad Gateway</html>", c.MALFORMED_BODY),
        (b'{"code": 200, "data": {"balance": 1', c.MALFORMED_BODY),
        (b"[1, 2]", c.UNEXPECTED_SHAPE),
        (b'{"code": 200, "msg": "success"}', c.UNEXPECTED_SHAPE),
        (b'{"code": 200, "data": [9800]}', c.UNEXPECTED_SHAPE),
        (b'{"code": 500, "msg": "internal", "data": null}', c.API_ERROR),
        (b'{"code": 200, "data": {"balance": 9800, "total_purchased": 10000}}', c.MISSING_FIGURE),
        (b'{"code": 200, "data": {"balance": 9800.5, "total_purchased": 10000, "total_consumed": 199.5}}', c.NON_INTEGER_FIGURE),
        (b'{"code": 200, "data": {"balance": "9800", "total_purchased": 10000, "total_consumed": 200}}', c.NON_INTEGER_FIGURE),
        (b'{"code": 200, "data": {"balance": true, "total_purchased": 10000, "total_consumed": 200}}', c.NON_INTEGER_FIGURE),
        (b'{"code": 200, "data": {"balance": NaN, "total_purchased": 10000, "total_consumed": 200}}', c.MALFORMED_BODY),
        (b'{"code": 200, "data": {"balance": 10200, "total_purchased": 10000, "total_consumed": -200}}', c.NEGATIVE_FIGURE),
        # Beyond what the ledger holds: an anomaly row, never a traceback or a bigint out of range.
        (b'{"code": 200, "data": {"balance": 12345678901234567890123456789, "total_purchased": 1, "total_consumed": 1}}',
         c.ABSURD_FIGURE),
        (b'{"code": 200, "data": {"balance": 1, "total_purchased": 9000000001, "total_consumed": 1}}', c.ABSURD_FIGURE),
    ],
)
def test_a_body_not_in_the_documented_shape_is_a_named_anomaly(body, status):
    parsed = parse_credits(body)
    assert parsed.status == status
    if status == c.OK:
        assert (parsed.balance, parsed.total_purchased, parsed.total_consumed) == (9800, 10000, 200)
        assert all(isinstance(v, Decimal) for v in (parsed.balance, parsed.total_purchased, parsed.total_consumed))
    else:
        assert parsed.detail


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(base_seconds=1, cap_seconds=8)
    rng = random.Random(0)
    for attempt in range(6):
        delays = [policy.backoff(attempt, None, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= min(8, 2**attempt)
        assert max(delays) > 0.7 * min(8, 2**attempt)  # spread over the whole range
    assert policy.backoff(0, 5.0, rng) == 5.0


# ---------------------------------------------------------------- a scripted API on loopback


class Script:
    """Answers /v1/credits from a list of (status, headers, body); the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict, bytes]] = [(200, {}, GOOD)]
        self.requests: list[tuple[float, str]] = []
        self.delay = 0.0

    async def credits(self, request: Request) -> Response:
        self.requests.append((time.monotonic(), request.headers.get("authorization", "")))
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(body, status_code=status, headers=headers, media_type="application/json")


@pytest.fixture
def script():
    script = Script()
    app = Starlette(routes=[Route("/v1/credits", script.credits)])
    with LoopbackServer(app) as server:
        script.base_url = server.root_url + "/v1"
        yield script


def account(base_url, *keys):
    return AccountConfig("acme", base_url, tuple(KeyConfig(f"k{i}", key=k) for i, k in enumerate(keys)))


FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05, read_timeout=0.5, connect_timeout=0.5)


def test_a_poll_returns_exact_figures_with_the_key_fingerprint_and_raw_response(script):
    with CreditsClient(SECRET, FAST) as client:
        before = datetime.now(timezone.utc)
        value = client.poll(account(script.base_url, "sk-first-key-0001"))
    assert value.ok and value.account == "acme"
    assert (value.balance, value.total_purchased, value.total_consumed) == (9800, 10000, 200)
    assert value.key_fingerprint == fingerprint("sk-first-key-0001", SECRET)
    assert json.loads(value.raw_response)["data"]["balance"] == 9800
    assert before <= value.taken_at <= datetime.now(timezone.utc)
    assert script.requests[0][1] == "Bearer sk-first-key-0001"
    assert "sk-first-key-0001" not in repr(value)


class Waits(list):
    """The client's sleeps, kept instead of slept: a test reads the schedule of retries, not the wall clock."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_429_and_5xx_are_retried_honouring_retry_after(script):
    script.answers = [(429, {"Retry-After": "1"}, b'{"error": {}}'), (503, {}, b"down"), (500, {}, b""), (200, {}, GOOD)]
    waits = Waits()
    with CreditsClient(SECRET, FAST, sleep=waits) as client:
        value = client.poll(account(script.base_url, "sk-k1"))
    assert value.ok and value.attempts == 4 == len(script.requests) and len(waits) == 3
    assert waits[0] >= 1  # Retry-After: 1 second
    assert sum(waits[1:]) < 0.5  # the backoff itself is short here


def test_retries_end_and_the_failure_is_a_snapshot_value_not_an_exception(script):
    script.answers = [(503, {}, b'{"error": {"code": "upstream_error"}}')]
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(account(script.base_url, "sk-k1"))
    assert value.status == c.SERVER_ERROR and value.attempts == FAST.attempts == len(script.requests)
    assert value.balance is None and "upstream_error" in value.raw_response


def test_a_retry_after_longer_than_allowed_ends_the_poll_at_once(script):
    script.answers = [(429, {"Retry-After": "3600"}, b"")]
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(account(script.base_url, "sk-k1"))
    assert value.status == c.RATE_LIMITED and len(script.requests) == 1


def test_a_refused_key_is_not_retried_and_the_next_key_answers(script, caplog):
    script.answers = [(401, {}, b'{"error": {"code": "invalid_api_key"}}'), (200, {}, GOOD)]
    acct = account(script.base_url, "sk-disabled-1", "sk-working-2")
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(acct)
        assert value.ok and value.key_label == "k1"
        assert [auth for _, auth in script.requests] == ["Bearer sk-disabled-1", "Bearer sk-working-2"]
        # Next poll: the refused key is tried last.
        client.poll(acct)
        assert script.requests[-1][1] == "Bearer sk-working-2"
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "sk-disabled-1" not in caplog.text


def test_a_key_refused_every_time_is_reported_once(script, caplog):
    script.answers = [(403, {}, b'{"error": {"code": "ip_not_allowed"}}')]
    with CreditsClient(SECRET, FAST) as client:
        values = [client.poll(account(script.base_url, "sk-k1")) for _ in range(3)]
    assert [v.status for v in values] == [c.FORBIDDEN] * 3
    assert len(script.requests) == 3  # one request per poll, no retries
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1


def test_a_garbled_answer_is_kept_with_its_raw_response(script):
    script.answers = [(200, {}, b'{"code": 200, "data": {"balance": "lots"}}')]
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(account(script.base_url, "sk-k1"))
    assert value.status == c.NON_INTEGER_FIGURE and value.raw_response == '{"code": 200, "data": {"balance": "lots"}}'


def test_a_slow_server_times_out_and_is_retried(script):
    script.delay = 1.0
    with CreditsClient(SECRET, RetryPolicy(attempts=2, base_seconds=0.01, read_timeout=0.2)) as client:
        started = time.monotonic()
        value = client.poll(account(script.base_url, "sk-k1"))
    assert value.status == c.UNREACHABLE and "Timeout" in value.detail
    assert value.attempts == 2 and time.monotonic() - started < 1.5


def test_nothing_listening_is_unreachable_after_the_retries():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(account(f"http://127.0.0.1:{port}/v1", "sk-k1"))
    assert value.status == c.UNREACHABLE and value.attempts == FAST.attempts


def test_a_key_whose_variable_is_unset_is_no_key(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    acct = AccountConfig("acme", "http://127.0.0.1:9/v1", (KeyConfig("missing", env="NO_SUCH_KEY_VAR"),))
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(acct)
    assert value.status == c.NO_KEY and "NO_SUCH_KEY_VAR" in value.detail


def test_a_bad_base_url_is_reported_without_retries():
    with CreditsClient(SECRET, FAST) as client:
        value = client.poll(account("htp://127.0.0.1/v1", "sk-k1"))
    assert value.status == c.UNREACHABLE and value.attempts == 1 and "bad base_url" in value.detail


def test_an_absurd_answer_is_stored_as_an_anomaly_snapshot_on_every_database(ledger):
    from ledger.accounting.snapshots import BalanceSnapshotValue
    from ledger.store.balances import insert_snapshot, ok_snapshots
    from ledger.store.models import BalanceSnapshot
    from sqlalchemy import select

    body = b'{"code": 200, "data": {"balance": 12345678901234567890123456789, "total_purchased": 1, "total_consumed": 1}}'
    parsed = parse_credits(body)
    with ledger.session() as session:
        insert_snapshot(session, BalanceSnapshotValue("acme", datetime.now(timezone.utc), parsed.status,
                                                      raw_response=body.decode(), detail=parsed.detail))
    with ledger.session() as session:
        (row,) = session.scalars(select(BalanceSnapshot)).all()
        assert row.status == c.ABSURD_FIGURE and row.balance is None and "123456789012345678901234567" in row.raw_response
        assert ok_snapshots(session, "acme") == []
