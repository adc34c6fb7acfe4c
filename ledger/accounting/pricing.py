"""Rate cards and the price check: what a call should have cost, and why not.

A rate card is data with an effective-from time; the card in force at the
call's start prices it, so a price change never rewrites past calls.
`price()` recomputes the expected credits from prompt and completion tokens
(reasoning tokens are not billed) and classifies the platform's charge.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timezone
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from ..errors import RateCardError
from ..money import ZERO, quantize
from .records import ERROR, REFUSED, CallRecord

MILLION = Decimal(1_000_000)

# Pricing classes, in the words of the issue tracker and the reports.
OK = "ok"
ROUNDING = "rounding"
OVERCHARGE = "overcharge"
UNDERCHARGE = "undercharge"
REASONING_BILLED = "reasoning_billed"
WRONG_RATE = "wrong_rate"
CHARGED_ON_REFUND = "charged_on_refund"
MISSING_CHARGE = "missing_charge"
MISSING_USAGE = "missing_usage"
UNPRICED_MODEL = "unpriced_model"
CLASSES = (
    OK, ROUNDING, OVERCHARGE, UNDERCHARGE, REASONING_BILLED, WRONG_RATE,
    CHARGED_ON_REFUND, MISSING_CHARGE, MISSING_USAGE, UNPRICED_MODEL,
)
CLEAN_CLASSES = frozenset({OK, ROUNDING})


@dataclass(frozen=True, slots=True)
class ModelRate:
    input_per_million: Decimal
    output_per_million: Decimal
    endpoint: str = "/v1/chat/completions"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / MILLION


@dataclass(frozen=True, slots=True)
class RateCard:
    name: str
    effective_from: datetime
    usd_per_credit: Decimal
    rates: Mapping[str, ModelRate]

    def rate_for(self, *models: str | None) -> tuple[str, ModelRate] | None:
        """The rate of the first model name that the card knows.

        A reported model may carry a version suffix (`gemini-3.1-pro-preview`):
        the longest card model that is a prefix followed by '-' matches it.
        """
        for model in models:
            if not model:
                continue
            if model in self.rates:
                return model, self.rates[model]
            prefixes = [m for m in self.rates if model.startswith(m + "-")]
            if prefixes:
                best = max(prefixes, key=len)
                return best, self.rates[best]
        return None


@dataclass(frozen=True, slots=True)
class RateBook:
    """Every card, oldest first; `card_at` finds the one in force."""

    cards: tuple[RateCard, ...]

    def card_at(self, when: datetime) -> RateCard:
        found = self.cards[0]
        for card in self.cards:  # oldest first: the last that took effect before `when`
            if card.effective_from > when:
                break
            found = card
        return found

    def merged(self, other: "RateBook") -> "RateBook":
        return RateBook(_sorted_cards([*self.cards, *other.cards]))


@dataclass(frozen=True, slots=True)
class PricingPolicy:
    """How the platform rounds its charges: to `charge_precision`, within `tolerance`."""

    charge_precision: Decimal = Decimal("0.01")
    tolerance: Decimal = Decimal("0.005")


class PriceFinding(NamedTuple):
    """What a call should have cost under the card in force, and the class of what it was charged."""

    pricing_class: str
    credits_expected: Decimal | None
    credits_charged: Decimal | None
    rate_card: str | None
    model_priced: str | None = None

    @property
    def difference(self) -> Decimal | None:
        if self.credits_expected is None or self.credits_charged is None:
            return None
        return self.credits_charged - self.credits_expected

    @property
    def is_clean(self) -> bool:
        return self.pricing_class in CLEAN_CLASSES


price_finding_of = partial(tuple.__new__, PriceFinding)  # the writer's constructor: the fields in order (no frame)


# ---------------------------------------------------------------- loading


# What a card may hold: every figure is stored in nano-credits (9 decimal places) and a call's cost
# (at most 50M tokens at the highest rate) must stay within what the ledger holds.
MAX_RATE = Decimal(1_000_000)  # credits per 1M tokens: thousands of times any price list's
MAX_USD_PER_CREDIT = Decimal(1000)
MAX_TEXT = 200  # a card's name, a model's, an endpoint's (their columns' width)
CARD_KEYS = frozenset({"name", "effective_from", "usd_per_credit", "rates"})


def _sorted_cards(cards: Iterable[RateCard]) -> tuple[RateCard, ...]:
    ordered = tuple(sorted(cards, key=lambda c: c.effective_from))
    names = [c.name for c in ordered]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RateCardError(f"rate card name used twice: {sorted(dup)[0]}")
    for earlier, later in zip(ordered, ordered[1:]):
        if earlier.effective_from == later.effective_from:
            raise RateCardError(
                f"rate cards {earlier.name!r} and {later.name!r} both take effect at "
                f"{earlier.effective_from.isoformat()}: which one prices a call is ambiguous"
            )
    return ordered


def _decimal(value: Any, where: str, high: Decimal = MAX_RATE) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise RateCardError(f"{where}: expected a number, got {value!r}")
    try:
        amount = Decimal(value) if not isinstance(value, str) else Decimal(value.strip())
    except ArithmeticError:
        raise RateCardError(f"{where}: not a number: {value!r}") from None
    if not amount.is_finite() or not 0 <= amount <= high:
        raise RateCardError(f"{where}: must be a number from 0 to {high}, got {value!r}")
    if amount and amount.as_tuple().exponent < -9:
        raise RateCardError(f"{where}: at most 9 decimal places (a nano-credit), got {value!r}")
    return amount


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RateCardError(f"{where}: expected a non-empty name, got {value!r}")
    if len(value.strip()) > MAX_TEXT:
        raise RateCardError(f"{where}: longer than {MAX_TEXT} characters")
    return value.strip()


def _card(raw: Any, source: str) -> RateCard:
    if not isinstance(raw, dict):
        raise RateCardError(f"{source}: each [[card]] must be a table")
    name = _text(raw.get("name"), f"{source}: a card's name")
    where = f"{source}: card {name!r}"
    unknown = set(raw) - CARD_KEYS
    if unknown:
        raise RateCardError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(CARD_KEYS))})")
    when = raw.get("effective_from")
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise RateCardError(f"{where}: effective_from is not a date-time: {when!r}") from None
    if not isinstance(when, datetime):
        raise RateCardError(f"{where}: effective_from must be a date-time such as 2026-05-01T00:00:00Z")
    if when.tzinfo is None:
        raise RateCardError(f"{where}: effective_from must carry a time zone (end it with Z)")
    if not 1970 <= when.year <= 9998:
        raise RateCardError(f"{where}: effective_from {when.isoformat()} is out of range (1970 to 9998)")
    usd_per_credit = _decimal(raw.get("usd_per_credit", "0.005"), f"{where}: usd_per_credit", MAX_USD_PER_CREDIT)
    rates_raw = raw.get("rates")
    if not isinstance(rates_raw, dict) or not rates_raw:
        raise RateCardError(f"{where}: has no [card.rates.\"MODEL\"] tables")
    rates = {}
    for model, rate in rates_raw.items():
        _text(model, f"{where}: a model's name")
        if not isinstance(rate, dict):
            raise RateCardError(f"{where}: rates for {model!r} must be a table")
        unknown = set(rate) - {"input", "output", "endpoint"}
        if unknown:
            raise RateCardError(f"{where}: rates for {model!r}: unknown key {sorted(unknown)[0]!r}")
        for key in ("input", "output"):
            if key not in rate:
                raise RateCardError(f"{where}: rates for {model!r} lack {key!r}")
        rates[model] = ModelRate(
            _decimal(rate["input"], f"{where}: {model} input"),
            _decimal(rate["output"], f"{where}: {model} output"),
            _text(rate.get("endpoint", "/v1/chat/completions"), f"{where}: {model} endpoint"),
        )
    return RateCard(name, when.astimezone(timezone.utc), usd_per_credit, rates)


def parse_rate_cards(text: str, source: str = "rate card") -> RateBook:
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise RateCardError(f"{source}: not valid TOML: {exc}") from exc
    return rate_book_from_mapping(data, source)


def rate_book_from_mapping(data: Any, source: str = "rate card") -> RateBook:
    """The book of a rate-card file's contents (`{"card": [...]}`); RateCardError naming what is wrong."""
    if not isinstance(data, dict):
        raise RateCardError(f"{source}: a rate-card file holds [[card]] entries")
    cards = data.get("card")
    if not isinstance(cards, list) or not cards:
        raise RateCardError(f"{source}: no [[card]] entries")
    if set(data) - {"card"}:
        raise RateCardError(f"{source}: unknown table {sorted(set(data) - {'card'})[0]!r} (a file holds [[card]] entries)")
    return RateBook(_sorted_cards(_card(c, source) for c in cards))


def load_rate_cards(path: str | Path) -> RateBook:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RateCardError(f"cannot read rate card {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise RateCardError(f"rate card {path} is not UTF-8 text") from None
    return parse_rate_cards(text, str(path))


def default_rate_book() -> RateBook:
    text = resources.files("ledger").joinpath("data/default_rate_card.toml").read_text("utf-8")
    return parse_rate_cards(text, "default rate card")


def load_rate_book(path: str | Path | None = None) -> RateBook:
    """The built-in card, with the cards of the file at `path` (the config's `pricing.rate_cards`) added."""
    book = default_rate_book()
    return book if path is None else book.merged(load_rate_cards(path))


# ---------------------------------------------------------------- pricing


def _near(a: Decimal, b: Decimal, tolerance: Decimal) -> bool:
    return abs(a - b) <= tolerance


def price(record: CallRecord, book: RateBook, policy: PricingPolicy = PricingPolicy()) -> PriceFinding:
    """Recompute the call's cost from the card in force and classify the charge."""
    facts = record.response
    usage, charged = facts.usage, facts.credits_charged
    card = book.card_at(record.started_at)
    if usage is None:
        prompt = completion = reasoning = None
    else:
        prompt, completion, reasoning = usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens
    klass, expected, model = classify(card, policy, record.status, record.refunded, record.model_requested,
                                      facts.model_reported, prompt, completion, reasoning, charged)
    return price_finding_of((klass, expected, charged, card.name, model))


def classify(
    card: RateCard,
    policy: PricingPolicy,
    status: str,
    refunded: bool,
    model_requested: str | None,
    model_reported: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    reasoning_tokens: int | None,
    charged: Decimal | None,
) -> tuple[str, Decimal | None, str | None]:
    """(pricing class, credits expected, model priced) of one call under `card`: `price` on plain values."""
    if status == REFUSED:  # never sent: nothing to charge
        return (OK if not charged else OVERCHARGE), ZERO, None
    if refunded or status == ERROR:
        # The platform bills no failed call; a 503 upstream_error is refunded.
        if charged is not None and charged > 0:
            return (CHARGED_ON_REFUND if refunded else OVERCHARGE), ZERO, None
        return OK, ZERO, None

    if prompt_tokens is None or completion_tokens is None:
        return MISSING_USAGE, None, None

    found = card.rate_for(model_requested, model_reported)
    if found is None:
        return UNPRICED_MODEL, None, None
    model, rate = found
    expected = rate.cost(prompt_tokens, completion_tokens)

    if charged is None:
        return MISSING_CHARGE, expected, model
    if charged == expected:
        return OK, expected, model
    if _near(charged, expected, policy.tolerance):
        return ROUNDING, expected, model
    if reasoning_tokens and _near(charged, rate.cost(prompt_tokens, completion_tokens + reasoning_tokens), policy.tolerance):
        return REASONING_BILLED, expected, model
    for other in card.rates.values():
        if (other.input_per_million, other.output_per_million) == (rate.input_per_million, rate.output_per_million):
            continue
        if _near(charged, other.cost(prompt_tokens, completion_tokens), policy.tolerance):
            return WRONG_RATE, expected, model
    return (OVERCHARGE if charged > expected else UNDERCHARGE), expected, model


def platform_charge(expected: Decimal, policy: PricingPolicy = PricingPolicy()) -> Decimal:
    """What the platform is expected to charge: `expected` at its precision."""
    return quantize(expected, policy.charge_precision)
