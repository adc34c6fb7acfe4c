"""The spend report as a FOCUS 1.2 dataset (FinOps Open Cost and Usage Specification), one CSV.

One Usage row per charge period (a UTC day, within the report's period) x
billing account x key (the sub account) x model x attribution (the project
and the tags, in `Tags`; the project as `ledger/project`); one Purchase row
per top-up; prior-period
adjustments as Usage rows with ChargeClass `Correction`, in their own day.
The platform bills in prepaid credits: a top-up is what is invoiced
(BilledCost, in USD at the rate card's `usd_per_credit`), and usage draws on
it, so a Usage row's BilledCost is 0 and its EffectiveCost is what it cost
(credits charged x rate), as FOCUS has it for usage covered by a prepaid
purchase; the purchase's EffectiveCost and PricingCurrencyEffectiveCost are
0. ListCost and ContractedCost are the rate card's price of the tokens
(credits expected x rate; calls the card cannot price count 0 there).
Quantities are tokens: PricingQuantity the billed ones (prompt and
completion) in the price list's unit, `1000000 Tokens`; ConsumedQuantity
every token reported (reasoning included), in `Tokens`. Text cells are
neutralised against formula injection; nulls are empty cells.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import TextIO

from sqlalchemy.orm import Session

from ..accounting.periods import Period, calendar_period
from ..config_reports import GroupKey
from ..errors import ReportError
from ..money import ZERO, fmt
from ..store.spend import NONE, Selection, cards_in_force, spend_rows_in_order, top_ups_in, usd_per_credit
from .cells import csv_row
from .spend import SpendReport, bucket_bounds

FOCUS_VERSION = "1.2"
COLUMNS = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost",
    "PricingCurrency", "PricingCurrencyEffectiveCost", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "ServiceCategory", "ServiceName", "ServiceSubcategory", "SubAccountId", "SubAccountName", "Tags",
    # Custom columns (x_ prefix, after the FOCUS ones, as the specification asks).
    "x_Model", "x_RateCard", "x_Calls", "x_FailedCalls", "x_PromptTokens", "x_CompletionTokens", "x_ReasoningTokens",
    "x_CreditsExpected", "x_Findings",
)
PROVIDER = "AI Video API"
SERVICE = "AI Video API Chat Completions"
UNATTRIBUTED = "unattributed"  # calls by keys of no configured account
PUBLISHERS = (("gemini", "Google"), ("gpt", "OpenAI"))
MILLION = Decimal(1_000_000)
# A row's identity. The end user is not one of them: users are many (thousands a day), and FOCUS rows
# are for allocation to projects and tags; the per-user spend is `report --by user`.
ROW_KEYS = (GroupKey("day"), GroupKey("account"), GroupKey("key_id"), GroupKey("key"), GroupKey("model_priced"),
            GroupKey("project_or_empty"), GroupKey("tags_json"))


def focus_time(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def publisher(model: str) -> str:
    return next((name for prefix, name in PUBLISHERS if model.lower().startswith(prefix)), PROVIDER)


def number(value: Decimal | int) -> str:
    """FOCUS's numeric format: a plain decimal, no exponent, no '+', no thousands separator."""
    return fmt(Decimal(value))


def _tags(project: str, tags_json: str) -> str | None:
    """The call's tags (user-defined, unprefixed) and its project under the ledger's own prefix."""
    tags = json.loads(tags_json) if tags_json else {}
    if project:
        tags["ledger/project"] = project
    return json.dumps(tags, sort_keys=True, ensure_ascii=False) if tags else None


def _utc(period: Period) -> Period:
    return Period(period.kind, period.label, period.start, period.end, "UTC")


class _Writer:
    def __init__(self, out: TextIO, billing: Period, rates: dict[str, Decimal]) -> None:
        self.out, self.billing, self.rates, self.rows = out, billing, rates, 0
        out.write(csv_row(COLUMNS))

    def rate(self, card: str | None) -> Decimal:
        if card is None or card not in self.rates:
            raise ReportError(f"rate card {card!r} has no US dollar rate in the ledger: FOCUS costs cannot be stated")
        return self.rates[card]

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

    def usage(self, group: list, day: Period, correction: bool) -> None:
        """One Usage row from the rows of one group (one per rate card)."""
        first = group[0]
        _, account, key_id, key_name, model, project, tags_json = first.values
        charged = sum((r.credits_charged for r in group), ZERO)
        expected = sum((r.credits_expected for r in group), ZERO)
        usd = sum((r.credits_charged * self.rate(r.rate_card) for r in group), ZERO)
        listed = sum((r.credits_expected * self.rate(r.rate_card) for r in group), ZERO)
        calls = sum(r.calls for r in group)
        prompt, completion = sum(r.prompt_tokens for r in group), sum(r.completion_tokens for r in group)
        reasoning = sum(r.reasoning_tokens for r in group)
        cards = sorted({r.rate_card for r in group if r.rate_card})
        account = UNATTRIBUTED if account == NONE else account
        self.write({
            "BilledCost": number(0), "BillingAccountId": account, "BillingAccountName": account,
            "ChargeCategory": "Usage", "ChargeClass": "Correction" if correction else None,
            "ChargeDescription": f"{model} chat completions: {calls} call{'s' if calls != 1 else ''}"
                                 + (" recorded after their period was closed" if correction else ""),
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodStart": focus_time(day.start), "ChargePeriodEnd": focus_time(day.end),
            "ConsumedQuantity": number(prompt + completion + reasoning), "ConsumedUnit": "Tokens",
            "ContractedCost": number(listed), "ListCost": number(listed), "EffectiveCost": number(usd),
            "PricingCurrencyEffectiveCost": number(charged),
            "PricingQuantity": number(Decimal(prompt + completion) / MILLION), "PricingUnit": "1000000 Tokens",
            "PublisherName": publisher(model),
            "SubAccountId": key_id or None, "SubAccountName": None if key_name == NONE else key_name,
            "Tags": _tags(project, tags_json),
            "x_Model": model, "x_RateCard": ",".join(cards), "x_Calls": calls,
            "x_FailedCalls": sum(r.failed_calls for r in group), "x_PromptTokens": prompt,
            "x_CompletionTokens": completion, "x_ReasoningTokens": reasoning, "x_CreditsExpected": number(expected),
            "x_Findings": sum(r.findings for r in group),
        })

    def purchase(self, account: str, detected_at: datetime, credits: Decimal, card: str, day: Period) -> None:
        usd = number(credits * self.rate(card))
        self.write({
            "BilledCost": usd, "BillingAccountId": account, "BillingAccountName": account,
            "ChargeCategory": "Purchase", "ChargeClass": None,
            "ChargeDescription": f"prepaid credits: top-up of {fmt(credits)} credits seen at {focus_time(detected_at)}",
            "ChargeFrequency": "One-Time",
            "ChargePeriodStart": focus_time(day.start), "ChargePeriodEnd": focus_time(day.end),
            "ContractedCost": usd, "ListCost": usd, "EffectiveCost": number(0), "PricingCurrencyEffectiveCost": number(0),
            "PricingQuantity": number(credits), "PricingUnit": "Credits", "x_RateCard": card,
        })


def _usage_rows(writer: _Writer, session: Session, selection: Selection, period: Period, correction: bool) -> None:
    utc = _utc(period)
    bounds, spans = bucket_bounds(ROW_KEYS, utc)
    days = spans["day"]
    group: list = []
    for row in spend_rows_in_order(session, selection, ROW_KEYS, bounds):
        if group and row.values != group[0].values:
            writer.usage(group, _clip(days[group[0].values[0]], period), correction)
            group = []
        group.append(row)
    if group:
        writer.usage(group, _clip(days[group[0].values[0]], period), correction)


def _clip(day: Period, period: Period) -> Period:
    return Period(day.kind, day.label, max(day.start, period.start), min(day.end, period.end), "UTC")


def card_at(cards, when: datetime) -> str | None:
    """The card in force at `when` among the ledger's cards (the first one before any took force)."""
    in_force = [c for c in cards if c.effective_from <= when] or list(cards)[:1]
    return in_force[-1].name if in_force else None


def write_focus(session: Session, report: SpendReport, out: TextIO) -> int:
    """The FOCUS CSV of the report's period; returns the rows written."""
    rates = usd_per_credit(session)
    writer = _Writer(out, report.period, rates)
    _usage_rows(writer, session, report.selection, report.period, correction=False)
    for adjustment in report.adjustments:
        part = Selection(report.period.start, report.period.end, report.account, (), adjustment.windows)
        _usage_rows(writer, session, part, adjustment.closed, correction=True)
    cards = cards_in_force(session)
    for account, detected_at, credits in top_ups_in(session, report.period.start, report.period.end, report.account):
        day = calendar_period("day", detected_at, "UTC")
        writer.purchase(account, detected_at, credits, card_at(cards, detected_at), _clip(day, report.period))
    return writer.rows
