"""The GET /v1/credits client: one balance snapshot value per account and poll.

Transient failures (429, 5xx, network) are retried with exponential backoff
and full jitter, honouring Retry-After; a refused key (401/403) is not
retried and is logged once. An answer that is not the documented shape
becomes a snapshot whose status names the anomaly, with the raw response.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable

import httpx2

from .. import redact
from ..accounting.snapshots import (
    FORBIDDEN, HTTP_ERROR, MAX_RAW, NO_KEY, OK, RATE_LIMITED, REFUSED, SERVER_ERROR, UNAUTHORIZED, UNREACHABLE,
    BalanceSnapshotValue, parse_credits,
)
from ..config import AccountConfig, KeyConfig
from ..errors import ConfigError
from ..keys import fingerprint, last4

log = redact.logger(__name__)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff: attempt n waits uniform(0, min(cap, base * 2**n)), at least Retry-After."""

    attempts: int = 4
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    max_retry_after: float = 60.0  # a longer Retry-After ends this poll instead
    connect_timeout: float = 5.0
    read_timeout: float = 15.0

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        delay = rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))
        return max(delay, retry_after or 0.0)


class CreditsClient:
    """Polls /v1/credits; one instance per process keeps the refused keys it logged."""

    def __init__(
        self,
        secret: bytes,
        policy: RetryPolicy = RetryPolicy(),
        *,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.secret = secret
        self.policy = policy
        self._sleep = sleep
        self._clock = clock or _now  # when a reading was taken (aware, UTC)
        self._rng = rng or random.Random()
        self._refused: dict[str, str] = {}  # fingerprint -> status, logged once
        timeout = httpx2.Timeout(policy.read_timeout, connect=policy.connect_timeout)
        self._http = httpx2.Client(timeout=timeout, transport=transport, follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CreditsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def poll(self, account: AccountConfig) -> BalanceSnapshotValue:
        """The account's figures, asked with its first working key.

        Keys refused before are tried after the others (a key may be re-enabled).
        """
        keys: list[tuple[KeyConfig, str | None]] = []
        for key in account.keys:
            try:
                keys.append((key, key.value()))
            except ConfigError as exc:
                keys.append((key, None))
                missing = str(exc)
        usable = [(k, v) for k, v in keys if v is not None]
        if not usable:
            return BalanceSnapshotValue(
                account.name, self._clock(), NO_KEY, detail=missing if keys else "the account has no keys"
            )
        usable.sort(key=lambda kv: fingerprint(kv[1], self.secret) in self._refused)
        reading: BalanceSnapshotValue | None = None
        for key, value in usable:
            reading = self._poll_key(account, key, value)
            if reading.status not in REFUSED and reading.status != NO_KEY:
                return reading
        assert reading is not None
        return reading

    def _poll_key(self, account: AccountConfig, key: KeyConfig, value: str) -> BalanceSnapshotValue:
        fp = fingerprint(value, self.secret)
        url = f"{account.base_url.rstrip('/')}/credits"
        headers = {"Authorization": f"Bearer {value}", "Accept": "application/json"}

        def reading(status: str, taken_at: datetime, attempts: int, *, raw_response: str | None = None,
                    detail: str | None = None, **figures) -> BalanceSnapshotValue:
            # What the upstream sent is kept and shown without anything key-shaped, nor the key itself.
            return BalanceSnapshotValue(
                account.name, taken_at, status, key_fingerprint=fp, key_label=key.label, attempts=attempts,
                raw_response=None if raw_response is None else redact.redact(raw_response, (value,)),
                detail=None if detail is None else redact.redact(detail, (value,)), **figures,
            )

        attempt = 0
        while True:
            attempt += 1
            sent_at = self._clock()
            try:
                response = self._http.get(url, headers=headers)
                received_at = self._clock()
            except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:  # configuration: no retry helps
                return reading(UNREACHABLE, sent_at, attempt, detail=f"bad base_url {account.base_url!r}: {_reason(exc)}")
            except httpx2.TransportError as exc:
                last = reading(UNREACHABLE, sent_at, attempt, detail=f"{type(exc).__name__}: {_reason(exc)}")
                if attempt < self.policy.attempts:
                    self._wait(attempt, None, account, last.detail)
                    continue
                return last
            raw = response.content.decode("utf-8", "replace")[:MAX_RAW]
            status_code = response.status_code
            if status_code in (401, 403):
                status = UNAUTHORIZED if status_code == 401 else FORBIDDEN
                if self._refused.get(fp) != status:
                    log.warning(
                        "credits: account %s key %s (…%s) refused with HTTP %s; not retried",
                        account.name, key.label, last4(value), status_code,
                    )
                self._refused[fp] = status
                return reading(status, sent_at, attempt, raw_response=raw, detail=f"HTTP {status_code}")
            if status_code == 429 or status_code >= 500:
                status = RATE_LIMITED if status_code == 429 else SERVER_ERROR
                last = reading(status, sent_at, attempt, raw_response=raw, detail=f"HTTP {status_code}")
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if attempt < self.policy.attempts and (wait is None or wait <= self.policy.max_retry_after):
                    self._wait(attempt, wait, account, last.detail)
                    continue
                return last
            if status_code != 200:
                return reading(HTTP_ERROR, sent_at, attempt, raw_response=raw, detail=f"HTTP {status_code}")
            if fp in self._refused:
                log.info("credits: account %s key %s works again", account.name, key.label)
                del self._refused[fp]
            parsed = parse_credits(response.content)
            if parsed.status != OK:
                log.warning("credits: account %s answered %s: %s", account.name, parsed.status,
                            redact.redact(parsed.detail or "", (value,)))
            return reading(
                parsed.status,
                sent_at,
                attempt,
                balance=parsed.balance,
                total_purchased=parsed.total_purchased,
                total_consumed=parsed.total_consumed,
                raw_response=raw,
                detail=parsed.detail,
                received_at=received_at,
            )

    def _wait(self, attempt: int, retry_after: float | None, account: AccountConfig, why: str | None) -> None:
        delay = self.policy.backoff(attempt - 1, retry_after, self._rng)
        log.info("credits: account %s %s; retry %d in %.2fs", account.name, why, attempt, delay)
        self._sleep(delay)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no detail"
