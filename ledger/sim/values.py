"""The simulated API's facts: its models and rates, its error table, its faults, the knobs, and the values it answers.

No I/O: the platform (`ledger.sim.platform`) and the HTTP shell (`ledger.sim.server`) are built on these.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator, Mapping, NamedTuple, Sequence


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


