"""The simulated platform's core: accounts, keys, billing and faults, without I/O.

`Platform.complete()` takes one chat request and returns a `SimResponse` (status,
payload, lazily generated SSE events); `ledger.sim.server` serves it over HTTP.
Deterministic under `SimulatorConfig.seed`: one `random.Random`, drawn under a lock.

Rules worth knowing (see `SimulatorConfig` for the knobs):

* charge = prompt x in/1M + completion x out/1M (reasoning not billed), rounded
  to `charge_precision` half-up; emitted in JSON as an exact decimal literal;
* an account's exact consumption is a Decimal; `/v1/credits` reports
  `total_consumed` rounded by `consumed_rounding` ("floor" by default, so the
  exact figure lies in [C, C+1)), and `balance = total_purchased - total_consumed`;
* 402 when the exact balance (purchased - exact consumed) is <= 0 before the
  call, so a balance may end slightly negative by at most one call;
* spend limits (hourly/daily sliding windows, total) refuse a call with 429 once
  the key's spend has reached the limit: the call that crosses it goes through;
* gpt-5-4 is served on /v1/responses, so a chat request for it is 404 model_not_found;
* X-Sim-Error / X-Sim-Fault are honoured only with `allow_fault_headers`;
  X-Sim-Completion-Tokens (forced output size, finish "stop") always is;
* the /v1/credits knobs (credits_latency, credits_status, credits_garbled) are
  applied by the HTTP shell: they concern the endpoint, not the accounts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import string
import threading
import time
from collections import deque
from dataclasses import replace
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Callable, Mapping

from ..money import quantize
from .chat import ChatPlan, id_digits, parse_request
from .values import (
    BILLING_FAULTS, ERRORS, FAULTS, MILLION, MODELS, AccountConfig, CallCharge, KeySettings, SimError,
    SimResponse, SimulatorConfig, Usage, dumps, validate_config,
)

__all__ = [
    "AccountConfig", "BILLING_FAULTS", "CallCharge", "ERRORS", "FAULTS", "KeySettings", "MODELS", "Platform",
    "SimError", "SimResponse", "SimulatorConfig", "Usage", "dumps", "fingerprint",
]


def fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class _Account:
    def __init__(self, name: str, purchased: int):
        self.name, self.purchased, self.consumed = name, purchased, Decimal(0)
        self.calls = self.refunds = self.rejected = 0
        self.keys: list[str] = []


class _Key:
    def __init__(self, settings: KeySettings, account: _Account):
        self.settings, self.account = settings, account
        self.requests: deque[float] = deque()  # times of the last second's requests
        self.spends: deque[tuple[float, Decimal]] = deque()  # the last day's charges
        self.spent_total = Decimal(0)
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.ip_allowlist]


class Platform:
    """Accounts and billing of the simulated API; thread-safe, deterministic under the seed."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Callable[[], float] = time.time):
        self.initial_config = config or SimulatorConfig()
        validate_config(self.initial_config)
        self._clock = clock
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Back to the configuration it started with: accounts, knobs, seed, log."""
        with self._lock:
            self.config = self.initial_config
            self.rng = random.Random(self.config.seed)
            self.accounts: dict[str, _Account] = {}
            self._keys: dict[str, _Key] = {}  # by SHA-256 of the key, as the platform stores them
            self.call_log: list[CallCharge] = []
            for name, account in (self.config.accounts or {}).items():
                opened = self.accounts[name] = _Account(name, int(account.balance))
                for key in account.keys:
                    self._add_key(key if isinstance(key, KeySettings) else KeySettings(key), opened)

    def _add_key(self, settings: KeySettings, account: _Account) -> _Key:
        key = self._keys[hashlib.sha256(settings.key.encode()).hexdigest()] = _Key(settings, account)
        account.keys.append(fingerprint(settings.key))
        return key

    def set_knobs(self, **changes: Any) -> SimulatorConfig:
        """Change runtime knobs (faults, credits endpoint behaviour...); returns the new config."""
        with self._lock:
            config = replace(self.config, **changes)
            validate_config(config)
            self.config = config
            return config

    # --- accounts -------------------------------------------------------------------

    def _lookup(self, api_key: str | None) -> _Key:
        if not api_key or not api_key.startswith("sk-"):
            raise SimError("invalid_api_key", "Invalid API key: keys start with 'sk-'.")
        key = self._keys.get(hashlib.sha256(api_key.encode()).hexdigest())
        if key is None:
            if self.config.accounts is not None:
                raise SimError("invalid_api_key", "Invalid API key.")
            name = f"key-{fingerprint(api_key)}"
            account = self.accounts[name] = _Account(name, self.config.starting_balance)
            key = self._add_key(KeySettings(api_key), account)
        if key.settings.disabled:
            raise SimError("invalid_api_key", "This API key is disabled.")
        return key

    def account_for(self, api_key: str) -> str:
        """The account name a key belongs to (opening it in open mode)."""
        with self._lock:
            return self._lookup(api_key).account.name

    def top_up(self, credits: int, *, account: str | None = None, api_key: str | None = None) -> str:
        """Add purchased credits to an account (by name or by one of its keys); its name."""
        if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
            raise ValueError("credits is a positive integer")
        with self._lock:
            name = account if account is not None else self._lookup(api_key).account.name
            if name not in self.accounts:
                raise KeyError(name)
            self.accounts[name].purchased += credits
            return name

    def reported(self, name: str) -> dict[str, int]:
        """The integers /v1/credits reports for an account."""
        with self._lock:
            account = self.accounts[name]
            rounding = ROUND_FLOOR if self.config.consumed_rounding == "floor" else ROUND_HALF_UP
            consumed = int(account.consumed.to_integral_value(rounding))
            return {"balance": account.purchased - consumed, "total_purchased": account.purchased,
                    "total_consumed": consumed}

    def state(self) -> dict[str, Any]:
        """Every account's exact figures (for tests): consumed_exact is a Decimal."""
        with self._lock:
            return {name: {**self.reported(name), "consumed_exact": a.consumed, "calls": a.calls,
                           "refunds": a.refunds, "rejected": a.rejected, "keys": list(a.keys)}
                    for name, a in self.accounts.items()}

    def credits(self, api_key: str | None, client_ip: str | None = None) -> SimResponse:
        """GET /v1/credits: the key's account figures (the HTTP shell adds the endpoint's faults)."""
        with self._lock:
            try:
                key = self._lookup(api_key)
                self._check_ip(key, client_ip)
            except SimError as error:
                return error.response()
            return SimResponse(200, {"code": 200, "msg": "success", "data": self.reported(key.account.name)})

    # --- calls ----------------------------------------------------------------------

    def complete(self, body: Any, api_key: str | None, headers: Mapping[str, str] | None = None,
                 client_ip: str | None = None) -> SimResponse:
        """POST /v1/chat/completions: validate, authorise, bill, and plan the answer."""
        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        with self._lock:
            key = None
            try:
                key = self._lookup(api_key)
                return self._complete(key, body, lowered, client_ip)
            except SimError as error:
                if key is not None:
                    key.account.rejected += 1
                    if error.code == "upstream_error":
                        key.account.refunds += 1
                return error.response()

    def _check_ip(self, key: _Key, client_ip: str | None) -> None:
        if not key.networks:
            return
        try:
            address = ipaddress.ip_address(client_ip or "")
        except ValueError:
            address = None
        if address is None or not any(address in network for network in key.networks):
            raise SimError("ip_not_allowed", f"IP {client_ip} is not in this key's allowlist.")

    def _complete(self, key: _Key, body: Any, headers: Mapping[str, str], client_ip: str | None) -> SimResponse:
        config, now, settings = self.config, self._clock(), key.settings
        self._check_ip(key, client_ip)
        forced = headers.get("x-sim-error") if config.allow_fault_headers else None
        if forced:
            if forced.strip() not in ERRORS:
                raise SimError("invalid_request", f"unknown X-Sim-Error code {forced!r}")
            raise SimError(forced.strip())
        if settings.rate_limit_per_second is not None:
            while key.requests and key.requests[0] <= now - 1:
                key.requests.popleft()
            if len(key.requests) >= settings.rate_limit_per_second:
                raise SimError("rate_limit_exceeded", "Rate limit reached for this key: retry in a second.")
            key.requests.append(now)
        request = parse_request(body, config.max_output_tokens)
        self._check_spend(key, now)
        if key.account.purchased - key.account.consumed <= 0:
            raise SimError("insufficient_credits")
        faults = self._faults(headers)
        completion_draw = self.rng.randint(*config.completion_range)
        effort_percent = self.rng.randint(200, 400) if request.effort == "high" else self.rng.randint(10, 50)
        suffix = "".join(self.rng.choices(string.ascii_letters + string.digits, k=8))
        forced_tokens = headers.get("x-sim-completion-tokens")
        if forced_tokens is not None:
            try:
                completion, finish = int(forced_tokens), "stop"
            except ValueError:
                raise SimError("invalid_request", "X-Sim-Completion-Tokens is an integer") from None
            if completion < 0:
                raise SimError("invalid_request", "X-Sim-Completion-Tokens is not negative")
        else:
            completion = min(completion_draw, request.max_tokens)
            finish = "length" if completion_draw > request.max_tokens else "stop"
        usage = Usage(request.prompt_tokens, completion, completion * effort_percent // 100)
        call_id = "chatcmpl-" + id_digits(now) + suffix
        rates = MODELS[request.model]

        if "charge_refund" in faults:  # a 503 that says "refunded" but keeps the prompt's charge
            charged = quantize(Decimal(usage.prompt_tokens) * rates.input / MILLION, config.charge_precision)
            usage = Usage(usage.prompt_tokens, 0, 0)
            self._book(key, call_id, request.model, 503, usage, charged, faults, now)
            error = SimError("upstream_error", extra={"usage": usage.as_json(), "credits_consumed": charged})
            return replace(error.response(), usage=usage, credits_charged=charged)
        charged = self.price(request.model, usage, faults)
        self._book(key, call_id, request.model, 200, usage, charged, faults, now)
        plan = ChatPlan(
            id=call_id, created=int(now), model=rates.served_as, usage=usage, finish_reason=finish,
            include_thoughts=request.include_thoughts, credits_consumed=charged,
            show_usage="omit_usage" not in faults, show_charge="omit_charge" not in faults, malformed="malformed_body" in faults,
            cut_after=config.cut_after_chunks if "cut_stream" in faults else None,
        )
        delay = config.chunk_latency if "slow_chunks" in faults else 0.0
        common = dict(usage=usage, credits_charged=charged, chunk_delay=delay, abort=plan.cut_after is not None)
        if request.stream:
            return SimResponse(200, events=plan.events(), **common)
        return SimResponse(200, plan.payload(), malformed=plan.malformed, **common)

    def price(self, model: str, usage: Usage, faults: frozenset[str] = frozenset()) -> Decimal:
        """What the platform charges for a call, faults included (rounded once)."""
        config = self.config
        rates = MODELS[config.wrong_rate_model if "wrong_rate" in faults else model]
        output = usage.completion_tokens + (usage.reasoning_tokens if "bill_reasoning" in faults else 0)
        exact = (Decimal(usage.prompt_tokens) * rates.input + Decimal(output) * rates.output) / MILLION
        if "overcharge" in faults:
            exact *= config.overcharge_factor
        return quantize(exact, config.charge_precision)

    def _faults(self, headers: Mapping[str, str]) -> frozenset[str]:
        chosen = set()
        if self.config.allow_fault_headers and headers.get("x-sim-fault"):
            chosen = {name.strip() for name in headers["x-sim-fault"].split(",") if name.strip()}
            if chosen - FAULTS:
                raise SimError("invalid_request", f"unknown X-Sim-Fault {sorted(chosen - FAULTS)}")
        for name in sorted(self.config.faults):
            rate = self.config.faults[name]
            if rate and self.rng.random() < rate:
                chosen.add(name)
        return frozenset(chosen)

    def _check_spend(self, key: _Key, now: float) -> None:
        settings = key.settings
        while key.spends and key.spends[0][0] <= now - 86_400:
            key.spends.popleft()
        windows = ((settings.total_limit, None, "total"), (settings.daily_limit, 86_400, "daily"),
                   (settings.hourly_limit, 3_600, "hourly"))
        for limit, seconds, label in windows:
            if limit is None:
                continue
            spent = key.spent_total if seconds is None else sum(
                (charge for at, charge in key.spends if at > now - seconds), Decimal(0))
            if spent >= limit:
                raise SimError("spend_limit_exceeded", f"The key's {label} spend limit ({limit} credits) is reached.")

    def _book(self, key: _Key, call_id: str, model: str, status: int, usage: Usage, charged: Decimal,
              faults: frozenset[str], now: float) -> None:
        key.account.consumed += charged
        key.account.calls += 1
        key.spent_total += charged
        if any(limit is not None for limit in (key.settings.hourly_limit, key.settings.daily_limit)):
            key.spends.append((now, charged))
        self.call_log.append(CallCharge(call_id, key.account.name, fingerprint(key.settings.key), model,
                                        status, usage, charged, tuple(sorted(faults))))


# --- rendering: JSON with exact decimals, SSE chunks generated lazily ---------------

