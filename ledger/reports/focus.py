"""The spend report as a FOCUS 1.2 dataset (FinOps Open Cost and Usage Specification), one CSV.

A Usage row per charge period (a UTC day, within the report's period) x
billing account x key (the sub account) x model x attribution (the project
and the tags, in `Tags`; the project as `ledger/project`) x rate card x
priced quantity: input tokens and output tokens are two SKUs, each with its
unit price from the rate card, so ListCost = ListUnitPrice x
PricingQuantity. One Purchase row per top-up (read from the balance
snapshots); prior-period adjustments as Usage rows with ChargeClass
`Correction`, in their own day. The platform bills in prepaid credits: a
top-up is what is invoiced (BilledCost, in USD at the card's
`usd_per_credit`), usage draws on it, so a Usage row's BilledCost is 0 and
its EffectiveCost is what it was charged; a call's charge is one figure,
shared between its two rows in proportion to their list costs (to the
nano-credit, the remainder on the output row). Decimal columns always carry
a decimal point; text cells are neutralised (`cells.csv_row`); nulls are
empty cells.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import NamedTuple, TextIO

from sqlalchemy.orm import Session

from ..accounting.periods import Period, calendar_period
from ..accounting.pricing import ModelRate, RateCard
from ..accounting.snapshots import TopUpValue
from ..accounting.group_keys import GroupKey
from ..errors import ReportError
from ..money import ZERO, fmt, from_nano, to_nano
from ..store.balances import top_ups_in
from ..store.rate_cards import rate_cards_in_ledger
from ..store.spend import NONE, Selection, SpendRow, spend_rows_in_order
from .cells import csv_row
from .spend import SpendReport, bucket_bounds

FOCUS_VERSION = "1.2"
COLUMNS = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "InvoiceId",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCurrency", "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "PricingQuantity", "PricingUnit", "ProviderName",
    "PublisherName", "ServiceCategory", "ServiceName", "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails",
    "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
    # Custom columns (x_ prefix, after the FOCUS ones, as the specification asks).
    "x_Model", "x_RateCard", "x_Calls", "x_FailedCalls", "x_PromptTokens", "x_CompletionTokens", "x_ReasoningTokens",
    "x_CreditsExpected", "x_Findings",
)
PROVIDER = "AI Video API"
SERVICE = "AI Video API Chat Completions"
UNATTRIBUTED = "unattributed"  # calls by keys of no configured account
PUBLISHERS = (("gemini", "Google"), ("gpt", "OpenAI"))
MILLION = Decimal(1_000_000)
TOKENS_UNIT = "1000000 Tokens"  # the price list's unit: credits per million tokens
CREDITS_SKU = "prepaid-credits"
# A row's identity. The end user is not one of them: users are many (thousands a day), and FOCUS rows
# are for allocation to projects and tags; the per-user spend is `report --by user`.
ROW_KEYS = (GroupKey("day"), GroupKey("account"), GroupKey("key_id"), GroupKey("key"), GroupKey("model_priced"),
            GroupKey("project_as_is"), GroupKey("tags_json"))


class Meter(NamedTuple):
    """One priced quantity of a call: its SKU's meter, its slug in the SKU ids, its rate on the card."""

    name: str
    slug: str

    def per_million(self, rate: ModelRate) -> Decimal:
        return rate.input_per_million if self is INPUT else rate.output_per_million


INPUT = Meter("Input Tokens", "input-tokens")
OUTPUT = Meter("Output Tokens", "output-tokens")


def focus_time(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def publisher(model: str) -> str:
    return next((name for prefix, name in PUBLISHERS if model.lower().startswith(prefix)), PROVIDER)


def number(value: Decimal | int) -> str:
    """A FOCUS decimal: plain, no exponent, no '+', no separators, and always a decimal point ('0.0', not '0')."""
    text = fmt(Decimal(value))
    return text if "." in text else text + ".0"


def apportion(charged: Decimal, listed: tuple[Decimal, Decimal]) -> tuple[Decimal, Decimal]:
    """A charge shared between input and output in proportion to their list costs, to the nano-credit; all on input
    when the card prices neither (no usage, an unknown model)."""
    total = listed[0] + listed[1]
    first = from_nano(to_nano(charged * listed[0] / total)) if total else charged
    return first, charged - first


def _tags(project: str | None, tags_json: str) -> str | None:
    """The call's tags (user-defined, unprefixed) and its project under the ledger's own prefix (`""` too)."""
    tags = json.loads(tags_json) if tags_json else {}
    if project is not None:
        tags["ledger/project"] = project
    return json.dumps(tags, sort_keys=True, ensure_ascii=False) if tags else None


def _utc(period: Period) -> Period:
    return Period(period.kind, period.label, period.start, period.end, "UTC")


def _sku(sku_id: str, meter: str, price_id: str, details: dict, unit_credits: Decimal | None,
         usd_per_credit: Decimal) -> dict:
    """The SKU columns of a row and, where the price list has the SKU's price, its unit prices (USD and credits)."""
    columns = {"SkuId": sku_id, "SkuMeter": meter}
    if unit_credits is None:
        return columns
    unit_usd = number(unit_credits * usd_per_credit)
    return {**columns, "SkuPriceId": price_id, "SkuPriceDetails": details, "ListUnitPrice": unit_usd,
            "ContractedUnitPrice": unit_usd, "PricingCurrencyListUnitPrice": number(unit_credits),
            "PricingCurrencyContractedUnitPrice": number(unit_credits)}


def _token_sku(card: RateCard, model: str, meter: Meter) -> dict:
    """A meter's SKU for a model (`<model>/input-tokens`), priced by the card when it knows the model."""
    found = card.rate_for(model)
    priced, rate = found if found else (model, None)
    return _sku(f"{priced}/{meter.slug}", meter.name, f"{card.name}/{priced}/{meter.slug}",
                {"x_Model": priced, "x_RateCard": card.name, "x_Endpoint": rate.endpoint if rate else None},
                meter.per_million(rate) if rate else None, card.usd_per_credit)


def _listed(card: RateCard, model: str, tokens: tuple[int, int]) -> tuple[Decimal, Decimal]:
    """The list price in credits of the input and of the output tokens; 0 where the card cannot price the model."""
    found = card.rate_for(model)
    if not found:
        return ZERO, ZERO
    return tokens[0] * INPUT.per_million(found[1]) / MILLION, tokens[1] * OUTPUT.per_million(found[1]) / MILLION


class _Writer:
    def __init__(self, out: TextIO, billing: Period, cards: dict[str, RateCard]) -> None:
        self.out, self.billing, self.cards, self.rows = out, billing, cards, 0
        out.write(csv_row(COLUMNS))

    def card(self, name: str | None) -> RateCard:
        if name is None or name not in self.cards:
            raise ReportError(f"rate card {name!r} has no US dollar rate in the ledger: FOCUS costs cannot be stated")
        return self.cards[name]

    def write(self, values: dict) -> None:
        base = {
            "BillingCurrency": "USD", "BillingPeriodStart": focus_time(self.billing.start),
            "BillingPeriodEnd": focus_time(self.billing.end), "InvoiceIssuerName": PROVIDER, "ProviderName": PROVIDER,
            "PublisherName": PROVIDER, "ServiceCategory": "AI and Machine Learning", "ServiceName": SERVICE,
            "ServiceSubcategory": "Generative AI", "PricingCurrency": "CREDITS",
        }
        base.update(values)
        self.out.write(csv_row([base.get(name) for name in COLUMNS]))
        self.rows += 1

    def usage(self, row: SpendRow, day: Period, correction: bool) -> None:
        """The rows of one group and rate card: input tokens (with the group's call counts), then output tokens."""
        _, account, key_id, key_name, model, project, tags_json = row.values
        card = self.card(row.rate_card)
        tokens = (row.prompt_tokens, row.completion_tokens)
        listed = _listed(card, model, tokens)
        charged = apportion(row.credits_charged, listed)
        consumed = (row.prompt_tokens, row.completion_tokens + row.reasoning_tokens)  # reasoning: reported, not billed
        account = UNATTRIBUTED if account == NONE else account
        calls = f"{row.calls} call{'s' if row.calls != 1 else ''}" + (
            " recorded after their period was closed" if correction else "")
        common = {
            "BilledCost": number(0), "BillingAccountId": account, "BillingAccountName": account,
            "ChargeCategory": "Usage", "ChargeClass": "Correction" if correction else None,
            "ChargeFrequency": "Usage-Based", "ChargePeriodStart": focus_time(day.start),
            "ChargePeriodEnd": focus_time(day.end), "ConsumedUnit": "Tokens", "PricingUnit": TOKENS_UNIT,
            "PublisherName": publisher(model), "SubAccountId": key_id or None,
            "SubAccountName": None if key_name == NONE else key_name, "Tags": _tags(project, tags_json),
            "x_Model": model, "x_RateCard": card.name,
        }
        for i, meter in enumerate((INPUT, OUTPUT)):
            if meter is OUTPUT and not (consumed[1] or charged[1]):
                continue  # calls that produced nothing: their input row says all
            self.write({
                **common, **_token_sku(card, model, meter),
                "ChargeDescription": f"{model} chat completions ({meter.name.lower()}): {calls}",
                "ConsumedQuantity": number(consumed[i]), "PricingQuantity": number(Decimal(tokens[i]) / MILLION),
                "ListCost": number(listed[i] * card.usd_per_credit),
                "ContractedCost": number(listed[i] * card.usd_per_credit),
                "EffectiveCost": number(charged[i] * card.usd_per_credit),
                "PricingCurrencyEffectiveCost": number(charged[i]),
                **(_call_figures(row) if meter is INPUT else _output_figures(row)),
            })

    def purchase(self, top_up: TopUpValue, card: RateCard, day: Period) -> None:
        account, detected_at, credits = top_up.account, top_up.detected_at, top_up.credits
        usd = number(credits * card.usd_per_credit)
        self.write({
            "BilledCost": usd, "BillingAccountId": account, "BillingAccountName": account,
            "ChargeCategory": "Purchase", "ChargeClass": None,
            "ChargeDescription": f"prepaid credits: top-up of {fmt(credits)} credits seen at {focus_time(detected_at)}",
            "ChargeFrequency": "One-Time",
            "ChargePeriodStart": focus_time(day.start), "ChargePeriodEnd": focus_time(day.end),
            "ContractedCost": usd, "ListCost": usd, "EffectiveCost": number(0), "PricingCurrencyEffectiveCost": number(0),
            "PricingQuantity": number(credits), "PricingUnit": "Credits", "x_RateCard": card.name,
            **_sku(CREDITS_SKU, "Credits", f"{card.name}/{CREDITS_SKU}", {"x_RateCard": card.name}, Decimal(1),
                   card.usd_per_credit),
        })


def _call_figures(row: SpendRow) -> dict:
    """What counts calls, not tokens: on the input row alone, so that a column's sum is the report's."""
    return {"x_Calls": row.calls, "x_FailedCalls": row.failed_calls, "x_PromptTokens": row.prompt_tokens,
            "x_CreditsExpected": number(row.credits_expected), "x_Findings": row.findings}


def _output_figures(row: SpendRow) -> dict:
    return {"x_CompletionTokens": row.completion_tokens, "x_ReasoningTokens": row.reasoning_tokens}


def _usage_rows(writer: _Writer, session: Session, selection: Selection, period: Period, correction: bool) -> None:
    bounds, spans = bucket_bounds(ROW_KEYS, _utc(period))
    days = spans["day"]
    for row in spend_rows_in_order(session, selection, ROW_KEYS, bounds):
        writer.usage(row, _clip(days[row.values[0]], period), correction)


def _clip(day: Period, period: Period) -> Period:
    return Period(day.kind, day.label, max(day.start, period.start), min(day.end, period.end), "UTC")


def card_at(cards: dict[str, RateCard], when: datetime) -> RateCard:
    """The card in force at `when` among the ledger's cards (the first one before any took force)."""
    ordered = sorted(cards.values(), key=lambda c: (c.effective_from, c.name))
    if not ordered:
        raise ReportError("the ledger holds no rate card: FOCUS costs cannot be stated")
    return ([c for c in ordered if c.effective_from <= when] or ordered[:1])[-1]


def write_focus(session: Session, report: SpendReport, out: TextIO) -> int:
    """The FOCUS CSV of the report's period; returns the rows written."""
    cards = rate_cards_in_ledger(session)
    writer = _Writer(out, report.period, cards)
    _usage_rows(writer, session, report.selection, report.period, correction=False)
    for adjustment in report.adjustments:
        part = Selection(report.period.start, report.period.end, report.account, (), adjustment.windows,
                         projects=report.selection.projects)
        _usage_rows(writer, session, part, adjustment.closed, correction=True)
    if report.selection.projects is not None:
        return writer.rows  # a top-up pays for every project: not in a dataset of some projects only
    for top_up in top_ups_in(session, report.period.start, report.period.end, report.account):
        day = calendar_period("day", top_up.detected_at, "UTC")
        writer.purchase(top_up, card_at(cards, top_up.detected_at), _clip(day, report.period))
    return writer.rows
