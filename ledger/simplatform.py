"""The simulated platform's core: accounts, keys, billing and faults, without I/O.

`Platform.complete()` takes one chat request and returns a `SimResponse` (status,
payload, lazily generated SSE events); `ledger.simulator` serves it over HTTP.
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
import itertools
import json
import random
import re
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

from .money import quantize

MILLION = Decimal(1_000_000)


class ModelRates(NamedTuple):
    input: Decimal  # credits per 1M prompt tokens
    output: Decimal  # credits per 1M completion tokens
    served_as: str  # the versioned name the response carries
    endpoint: str


MODELS: dict[str, ModelRates] = {
    "gemini-3.1-pro": ModelRates(Decimal(160), Decimal(960), "gemini-3.1-pro-preview", "chat"),
    "gemini-3-pro": ModelRates(Decimal(160), Decimal(960), "gemini-3-pro-preview", "chat"),
    "gemini-2.5-pro": ModelRates(Decimal(57), Decimal(450), "gemini-2.5-pro", "chat"),
    "gpt-5-4": ModelRates(Decimal(300), Decimal(1800), "gpt-5-4", "responses"),
}

# HTTP status and error type of every code of the API's error table.
ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_request": (400, "invalid_request_error", "Invalid request."),
    "invalid_api_key": (401, "authentication_error", "Invalid API key."),
    "insufficient_credits": (402, "billing_error", "Insufficient credits: please top up."),
    "ip_not_allowed": (403, "permission_error", "The caller's IP address is not allowed for this key."),
    "model_not_found": (404, "invalid_request_error", "The model does not exist or is not active."),
    "task_not_found": (404, "invalid_request_error", "The task does not exist."),
    "rate_limit_exceeded": (429, "rate_limit_error", "Too many requests."),
    "spend_limit_exceeded": (429, "billing_error", "The key's spend limit has been reached."),
    "internal_error": (500, "api_error", "Unexpected server error."),
    "upstream_error": (503, "upstream_error", "Upstream provider error; credits refunded."),
}

FAULTS = frozenset({
    "overcharge", "bill_reasoning", "wrong_rate", "omit_usage", "charge_refund",
    "slow_chunks", "cut_stream", "malformed_body", "unrecorded", "omit_charge",
})
# The billing faults, each with the pricing class a correct check gives the call it
# spoils (slow_chunks and unrecorded leave the bill alone). Under malformed_body a
# stream's cut content chunk leaves the usage whole: only a JSON body loses it.
BILLING_FAULTS: dict[str, str] = {
    "overcharge": "overcharge",
    "bill_reasoning": "reasoning_billed",
    "wrong_rate": "wrong_rate",
    "omit_usage": "missing_usage",
    "omit_charge": "missing_charge",
    "charge_refund": "charged_on_refund",
    "cut_stream": "missing_usage",
    "malformed_body": "missing_usage",
}
CREDITS_GARBLED = frozenset({"non_json", "wrong_shape", "non_integer"})
IMAGE_TOKENS = 258  # a media part, whatever its size
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class KeySettings:
    key: str
    disabled: bool = False
    hourly_limit: Decimal | int | None = None  # credits spent in the last hour
    daily_limit: Decimal | int | None = None  # credits spent in the last 24 hours
    total_limit: Decimal | int | None = None
    rate_limit_per_second: int | None = None
    ip_allowlist: Sequence[str] = ()  # addresses or CIDR ranges


@dataclass(frozen=True)
class AccountConfig:
    keys: Sequence[str | KeySettings]
    balance: int = 10_000  # credits purchased at the start


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 0
    starting_balance: int = 10_000  # each key's own account when `accounts` is None
    accounts: Mapping[str, AccountConfig] | None = None  # when set, other keys get 401
    charge_precision: Decimal = Decimal("0.01")
    consumed_rounding: str = "floor"  # or "half" (half-up): reported total_consumed
    completion_range: tuple[int, int] = (20, 400)
    max_output_tokens: int = 65_536  # cap on a request's max_tokens
    faults: Mapping[str, Decimal | float] = field(default_factory=dict)  # name -> probability
    allow_fault_headers: bool = True  # honour X-Sim-Fault and X-Sim-Error
    overcharge_factor: Decimal = Decimal("1.5")
    wrong_rate_model: str = "gemini-2.5-pro"
    chunk_latency: float = 0.05  # seconds between chunks under slow_chunks
    cut_after_chunks: int = 3
    credits_latency: float = 0.0  # seconds before /v1/credits answers
    credits_status: int | None = None  # 429, 500, 503...: /v1/credits fails with it
    credits_retry_after: int = 1  # seconds, sent with a failing status
    credits_garbled: str | None = None  # "non_json", "wrong_shape" or "non_integer"


def validate_config(config: SimulatorConfig) -> None:
    unknown = set(config.faults) - FAULTS
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}: known are {sorted(FAULTS)}")
    if config.consumed_rounding not in ("floor", "half"):
        raise ValueError("consumed_rounding is 'floor' or 'half'")
    if config.wrong_rate_model not in MODELS:
        raise ValueError(f"unknown wrong_rate_model {config.wrong_rate_model!r}")
    if config.credits_garbled is not None and config.credits_garbled not in CREDITS_GARBLED:
        raise ValueError(f"credits_garbled is one of {sorted(CREDITS_GARBLED)}")
    if config.credits_status is not None and not 400 <= int(config.credits_status) <= 599:
        raise ValueError("credits_status is an HTTP error status (4xx or 5xx)")
    if any(not 0 <= rate <= 1 for rate in config.faults.values()):
        raise ValueError("fault rates are probabilities, from 0 to 1")
    for value in (config.charge_precision, config.overcharge_factor):
        if not isinstance(value, Decimal):
            raise TypeError(f"money knobs are Decimal, not {type(value).__name__}")


class Usage(NamedTuple):
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    def as_json(self) -> dict[str, Any]:
        total = self.prompt_tokens + self.completion_tokens + self.reasoning_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": total,
                "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens,
                                              "audio_tokens": 0, "text_tokens": 0}}


class CallCharge(NamedTuple):
    """One call as the platform booked it (the simulator's own ledger)."""

    id: str
    account: str
    key_fingerprint: str
    model: str
    status: int
    usage: Usage
    credits_charged: Decimal
    faults: tuple[str, ...]


@dataclass(frozen=True)
class SimResponse:
    """What the platform answers: a JSON payload, or SSE events generated lazily."""

    status: int
    payload: dict[str, Any] | None = None  # money as Decimal
    events: Iterator[bytes] | None = None  # b"data: ...\n\n" each, when streaming
    headers: Mapping[str, str] = field(default_factory=dict)
    chunk_delay: float = 0.0  # seconds between events (or before a JSON body)
    abort: bool = False  # break the connection after the events (no [DONE])
    malformed: bool = False  # the JSON body is sent truncated
    usage: Usage | None = None
    credits_charged: Decimal | None = None

    def body(self) -> bytes:
        """The JSON body as sent (truncated under malformed_body)."""
        raw = dumps(self.payload)
        return raw[: len(raw) // 2] if self.malformed else raw


class SimError(Exception):
    def __init__(self, code: str, message: str | None = None, extra: Mapping[str, Any] | None = None):
        status, kind, default = ERRORS[code]
        super().__init__(message or default)
        self.status, self.code, self.kind, self.extra = status, code, kind, dict(extra or {})

    def response(self, headers: Mapping[str, str] | None = None) -> SimResponse:
        payload = {"error": {"code": self.code, "message": str(self), "type": self.kind}, **self.extra}
        return SimResponse(self.status, payload, headers=dict(headers or {}))


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
        call_id = "chatcmpl-" + _id_digits(now) + suffix
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

# A Decimal travels through json.dumps as a marked string, then loses its quotes; the
# per-process nonce keeps a caller's own string from ever passing for one.
_DECIMAL = f"\u0001{secrets.token_hex(8)}:"
_DECIMAL_LITERAL = re.compile(r'"\\u0001' + _DECIMAL[1:] + r'(-?[0-9]+(?:\.[0-9]+)?)"')


def dumps(payload: Any) -> bytes:
    """Compact JSON in which every Decimal is an exact number literal (never a float repr)."""
    return _DECIMAL_LITERAL.sub(r"\1", json.dumps(_mark(payload), separators=(",", ":"))).encode()


def _mark(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value}")
        return _DECIMAL + format(value, "f")
    if isinstance(value, dict):
        return {name: _mark(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark(item) for item in value]
    return value


CHUNK_WORDS = ("lorem ", "ipsum ", "dolor ", "sit ")  # one token each; one content chunk
CHUNK_TEXT = "".join(CHUNK_WORDS)
THOUGHT_WORD = "thinking "
MAX_THOUGHT_TOKENS = 64  # reasoning text is a summary: its tokens are counted, not all shown
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChatPlan:
    """One successful call's answer, rendered as a JSON payload or as SSE events."""

    id: str
    created: int
    model: str
    usage: Usage
    finish_reason: str
    include_thoughts: bool
    credits_consumed: Decimal
    show_usage: bool = True
    show_charge: bool = True  # omit_charge: usage sent, credits_consumed not
    malformed: bool = False
    cut_after: int | None = None  # events sent before the connection breaks

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _thought_tokens(self) -> int:
        return min(self.usage.reasoning_tokens, MAX_THOUGHT_TOKENS) if self.include_thoughts else 0

    def payload(self) -> dict[str, Any]:
        full, rest = divmod(self.usage.completion_tokens, len(CHUNK_WORDS))
        message = {"role": "assistant", "content": CHUNK_TEXT * full + "".join(CHUNK_WORDS[:rest])}
        if self._thought_tokens():
            message["reasoning_content"] = THOUGHT_WORD * self._thought_tokens()
        body = {**self._head(), "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": self.finish_reason, "message": message}]}
        if self.show_usage:
            body["usage"] = self.usage.as_json()
            if self.show_charge:
                body["credits_consumed"] = self.credits_consumed
        return body

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return b"data: " + dumps({**self._head(), "choices": [choice]}) + b"\n\n"

    def events(self) -> Iterator[bytes]:
        """Role, thoughts, content (4 tokens a chunk), finish, usage, [DONE]; constant memory."""
        if self.cut_after is not None:  # broken before the usage chunk and [DONE]
            yield from itertools.islice(self._body_events(), self.cut_after)
            return
        yield from self._body_events()
        if self.show_usage:
            tail = {**self._head(), "choices": [], "usage": self.usage.as_json()}
            if self.show_charge:
                tail["credits_consumed"] = self.credits_consumed
            yield b"data: " + dumps(tail) + b"\n\n"
        yield DONE

    def _body_events(self) -> Iterator[bytes]:
        broken = self.malformed
        yield self._chunk({"role": "assistant", "content": ""})
        thoughts = self._thought_tokens()
        for start in range(0, thoughts, len(CHUNK_WORDS)):
            yield self._chunk({"reasoning_content": THOUGHT_WORD * min(len(CHUNK_WORDS), thoughts - start)})
        full, rest = divmod(self.usage.completion_tokens, len(CHUNK_WORDS))
        if full:
            chunk = self._chunk({"content": CHUNK_TEXT})  # rendered once, sent `full` times
            if broken:
                yield _truncated(chunk)
                full, broken = full - 1, False
            yield from itertools.repeat(chunk, full)
        if rest:
            yield self._chunk({"content": "".join(CHUNK_WORDS[:rest])})
        finish = self._chunk({}, self.finish_reason)
        yield _truncated(finish) if broken else finish


def _truncated(event: bytes) -> bytes:
    return event[: len(event) // 2] + b"\n\n"


def _id_digits(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y%m%d%H%M%S") + f"{int(now * 1e9) % 10**9:09d}"


class ChatRequest(NamedTuple):
    model: str
    stream: bool
    prompt_tokens: int
    max_tokens: int
    effort: str
    include_thoughts: bool


def parse_request(body: Any, max_output_tokens: int) -> ChatRequest:
    """Validate a chat request the way the platform does (400, 404)."""
    if not isinstance(body, dict):
        raise SimError("invalid_request", "The body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimError("invalid_request", "'model' is required.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimError("invalid_request", "'messages' is required and must be a non-empty array.")
    stream = body.get("stream")
    stream = True if stream is None else stream  # the API streams unless told not to
    include_thoughts = body.get("include_thoughts", True)
    effort = body.get("reasoning_effort") or "high"
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    for name, value, ok in (
        ("stream", stream, isinstance(stream, bool)),
        ("include_thoughts", include_thoughts, isinstance(include_thoughts, bool)),
        ("reasoning_effort", effort, effort in ("low", "high")),
        ("max_tokens", max_tokens, max_tokens is None or (type(max_tokens) is int and max_tokens > 0)),
        ("stream_options", body.get("stream_options"), body.get("stream_options") is None
         or isinstance(body.get("stream_options"), dict)),
    ):
        if not ok:
            raise SimError("invalid_request", f"Invalid value for '{name}': {value!r}.")
    for tool in body.get("tools") or []:
        if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)
                and tool["function"].get("name") == "googleSearch"):
            raise SimError("invalid_request", "Only the googleSearch tool is supported.")
    rates = MODELS.get(model)
    if rates is None:
        raise SimError("model_not_found", f"The model '{model}' does not exist or is not active.")
    if rates.endpoint != "chat":
        raise SimError("model_not_found", f"The model '{model}' is served on /v1/{rates.endpoint}.")
    limit = min(max_tokens or max_output_tokens, max_output_tokens)
    return ChatRequest(model, stream, count_prompt_tokens(messages), limit, effort, include_thoughts)


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """About one token per four characters, a few per message, a fixed amount per media part."""
    total = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise SimError("invalid_request", f"messages[{index}] must be an object with a 'role'.")
        total += TOKENS_PER_MESSAGE
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if not isinstance(parts, list):
            raise SimError("invalid_request", f"messages[{index}].content must be a string or an array.")
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                total += -(-len(part["text"]) // 4)
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                total += IMAGE_TOKENS
            else:
                raise SimError("invalid_request", f"messages[{index}] has an unsupported content part.")
    return max(total, 1)


__all__ = [
    "AccountConfig", "BILLING_FAULTS", "CallCharge", "ERRORS", "FAULTS", "KeySettings", "MODELS", "ModelRates", "Platform",
    "SimError", "SimResponse", "SimulatorConfig", "Usage", "count_prompt_tokens", "dumps", "fingerprint",
    "parse_request",
]
