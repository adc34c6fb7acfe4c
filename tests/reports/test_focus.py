"""The FOCUS 1.2 export: every mandatory column, allowed values, types and nullability as the specification says.

The lists below are from the FOCUS 1.2 specification (specification/columns/*.md at tag v1.2):
the columns whose feature level is Mandatory, and the allowed values of the columns that have them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger_rows import call_values, insert, register, snapshot

from ledger.cli import main
from ledger.store.engine import Ledger

MANDATORY = {
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "ServiceCategory", "ServiceName",
}
DECIMALS = {"BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity", "ConsumedQuantity",
            "PricingCurrencyEffectiveCost", "ListUnitPrice", "ContractedUnitPrice", "PricingCurrencyListUnitPrice",
            "PricingCurrencyContractedUnitPrice"}
# A provider with a public price list and unit pricing gives these on every Usage and Purchase row but a correction.
PRICED = {"ListUnitPrice", "ContractedUnitPrice", "PricingCurrencyListUnitPrice", "PricingCurrencyContractedUnitPrice",
          "SkuId", "SkuPriceId", "SkuMeter"}
NOT_NULL = {"BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory",
            "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost",
            "ProviderName", "PublisherName", "ServiceCategory", "ServiceName", "PricingCurrencyEffectiveCost",
            "ChargeFrequency", "ServiceSubcategory"}
DATETIMES = {"BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"}
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
CHARGE_FREQUENCIES = {"One-Time", "Recurring", "Usage-Based"}
SERVICE_CATEGORIES = {
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
    "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media", "Migration",
    "Mobile", "Networking", "Security", "Storage", "Web", "Other",
}
AI_SUBCATEGORIES = {"AI Platforms", "Bots", "Generative AI", "Machine Learning", "Natural Language Processing",
                    "Other (AI and Machine Learning)"}
NUMERIC = re.compile(r"-?\d+\.\d+")  # FOCUS NumericFormat (no '+', no separators), and a Decimal: '0.0', never '0'
DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
PASCAL = re.compile(r"[A-Z][A-Za-z0-9]*")
NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)


def focus_rows(url: str, *args: str) -> tuple[list[str], list[dict]]:
    out = io.StringIO()
    assert main(["--database-url", url, "report", "--format", "focus", "--output", "-", *args], out=out) == 0
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def check_focus(header: list[str], rows: list[dict], unpriced: tuple[str, ...] = ()) -> None:
    """The rules of FOCUS 1.2 each row must meet (`unpriced`: models the rate card has no price for)."""
    assert MANDATORY <= set(header)
    focus = [c for c in header if not c.startswith("x_")]
    assert all(PASCAL.fullmatch(c) for c in focus)
    assert header[: len(focus)] == focus  # custom columns after every FOCUS column
    for row in rows:
        for column in NOT_NULL:
            assert row[column] != "", (column, row)
        for column in DECIMALS:
            assert row[column] == "" or NUMERIC.fullmatch(row[column]), (column, row[column])
        for column in DATETIMES:
            assert DATETIME.fullmatch(row[column]), (column, row[column])
        assert row["ChargeCategory"] in CHARGE_CATEGORIES
        assert row["ChargeClass"] in ("", "Correction")
        assert row["ServiceCategory"] in SERVICE_CATEGORIES
        assert row["ServiceSubcategory"] in AI_SUBCATEGORIES and row["ServiceCategory"] == "AI and Machine Learning"
        assert row["ChargeFrequency"] in CHARGE_FREQUENCIES
        assert re.fullmatch(r"[A-Z]{3}", row["BillingCurrency"])
        assert (row["PricingUnit"] == "") == (row["PricingQuantity"] == "")
        assert (row["ConsumedUnit"] == "") == (row["ConsumedQuantity"] == "")
        if row["ChargeCategory"] != "Usage":
            assert row["ConsumedQuantity"] == ""
        if row["ChargeCategory"] == "Purchase":
            assert row["ChargeFrequency"] != "Usage-Based"
            assert Decimal(row["EffectiveCost"]) == 0 and Decimal(row["PricingCurrencyEffectiveCost"]) == 0
        if row["ChargeCategory"] in ("Usage", "Purchase") and row["ChargeClass"] != "Correction":
            assert row["PricingQuantity"] != ""
        if row["ChargeCategory"] in ("Usage", "Purchase") and row["ChargeClass"] != "Correction" and row["x_Model"] not in unpriced:
            assert all(row[column] != "" for column in PRICED), row
            # One unit price a row: its list cost is that price times its quantity, exactly.
            assert Decimal(row["ListCost"]) == Decimal(row["ListUnitPrice"]) * Decimal(row["PricingQuantity"]), row
            assert Decimal(row["ContractedCost"]) == Decimal(row["ContractedUnitPrice"]) * Decimal(row["PricingQuantity"])
            assert row["SkuPriceId"].endswith(row["SkuId"].rsplit("/", 1)[-1])
            assert all(k.startswith("x_") for k in json.loads(row["SkuPriceDetails"]))
        if row["Tags"]:
            tags = json.loads(row["Tags"])
            assert isinstance(tags, dict) and all(isinstance(v, (str, int, float, bool)) or v is None for v in tags.values())
        assert row["ChargePeriodStart"] < row["ChargePeriodEnd"]
        assert row["InvoiceId"] == ""  # the platform's API shows no invoice the ledger could name
    prices = {}
    for row in rows:
        if row["SkuPriceId"]:
            assert prices.setdefault(row["SkuPriceId"], (row["SkuId"], row["ListUnitPrice"])) == (row["SkuId"], row["ListUnitPrice"])
    for row in rows:
        assert not any(value.startswith(("=", "+", "@", "\t", "\r")) for value in row.values())


def test_focus_rows_meet_the_specification_and_add_up_to_the_report(database_url):
    with Ledger(database_url) as ledger:
        register(ledger, "a" * 64, "Ab12", "=cmd|' /C calc'!A0", "prod")  # a hostile key label
        snapshot(ledger, "prod", NOV + timedelta(hours=1), 10_000, 100)
        snapshot(ledger, "prod", NOV + timedelta(days=3), 15_000, 200)  # a top-up of 5,000 credits
        insert(ledger, [
            call_values(started_at=NOV + timedelta(hours=5 * i), project=["search", "-2+3"][i % 2], key_fingerprint="a" * 64,
                        tags={"feature": "chat"} if i % 3 else None, charged="0.75", expected="0.7488")
            for i in range(20)
        ] + [call_values(started_at=NOV + timedelta(hours=7), key_fingerprint=None, key_last4=None, project=None,
                         status="aborted", charged=None, expected=None, prompt_tokens=None, completion_tokens=None,
                         reasoning_tokens=None, pricing_class="missing_usage")])
    header, rows = focus_rows(database_url, "--period", "2026-11")
    check_focus(header, rows)
    usage = [r for r in rows if r["ChargeCategory"] == "Usage"]
    (purchase,) = [r for r in rows if r["ChargeCategory"] == "Purchase"]
    assert purchase["BilledCost"] == "25.0" and purchase["PricingQuantity"] == "5000.0"
    assert purchase["PricingUnit"] == "Credits" and purchase["BillingAccountId"] == "prod"
    assert sum(int(r["x_Calls"] or 0) for r in usage) == 21
    assert sum(Decimal(r["PricingCurrencyEffectiveCost"]) for r in usage) == Decimal("15")
    assert sum(Decimal(r["EffectiveCost"]) for r in usage) == Decimal("0.075")
    assert all(Decimal(r["BilledCost"]) == 0 for r in usage)  # prepaid: the top-up is what is billed
    assert {r["PricingUnit"] for r in usage} == {"1000000 Tokens"} and {r["ConsumedUnit"] for r in usage} == {"Tokens"}
    meters = {m: [r for r in usage if r["SkuMeter"] == m] for m in ("Input Tokens", "Output Tokens")}
    assert sum(Decimal(r["PricingQuantity"]) for r in meters["Input Tokens"]) == Decimal(20 * 194) / 1_000_000
    assert sum(Decimal(r["PricingQuantity"]) for r in meters["Output Tokens"]) == Decimal(20 * 229) / 1_000_000
    assert {r["PricingCurrencyListUnitPrice"] for r in meters["Input Tokens"]} == {"160.0"}
    assert {r["PricingCurrencyListUnitPrice"] for r in meters["Output Tokens"]} == {"960.0"}
    assert {r["ListUnitPrice"] for r in meters["Output Tokens"]} == {"4.8"}  # USD per million tokens
    assert {r["SkuPriceId"] for r in usage} == {"aivideoapi-2026-04/gemini-3.1-pro/input-tokens",
                                                "aivideoapi-2026-04/gemini-3.1-pro/output-tokens"}
    assert sum(Decimal(r["ConsumedQuantity"]) for r in usage) == 20 * (194 + 229 + 457)
    assert purchase["SkuId"] == "prepaid-credits" and purchase["ListUnitPrice"] == "0.005"
    keyed = [r for r in usage if r["SubAccountId"]]
    assert {r["SubAccountName"] for r in keyed} == {"'=cmd|' /C calc'!A0"}  # neutralised
    unkeyed = [r for r in usage if not r["SubAccountId"]]
    assert [r["BillingAccountId"] for r in unkeyed] == ["unattributed"] and unkeyed[0]["SubAccountName"] == ""
    tagged = [json.loads(r["Tags"]) for r in usage if r["Tags"]]
    assert {"feature": "chat", "ledger/project": "-2+3"} in tagged
    days = {r["ChargePeriodStart"] for r in usage}
    assert all(d.endswith("T00:00:00Z") for d in days) and "2026-11-01T00:00:00Z" in days
    assert {r["BillingPeriodStart"] for r in rows} == {"2026-11-01T00:00:00Z"}
    assert {r["PublisherName"] for r in usage} == {"Google"}


def test_charge_periods_are_utc_days_within_a_zoned_period(database_url):
    with Ledger(database_url) as ledger:
        insert(ledger, [call_values(started_at=datetime(2026, 10, 31, 23, 30, tzinfo=timezone.utc))])
    header, rows = focus_rows(database_url, "--period", "2026-11", "--tz", "Europe/Berlin")
    check_focus(header, rows)
    assert [r["SkuMeter"] for r in rows] == ["Input Tokens", "Output Tokens"]
    for row in rows:
        # November in Berlin starts at 23:00 UTC on October 31: the first charge period is that last UTC hour of the day.
        assert (row["ChargePeriodStart"], row["ChargePeriodEnd"]) == ("2026-10-31T23:00:00Z", "2026-11-01T00:00:00Z")
        assert row["BillingPeriodStart"] == "2026-10-31T23:00:00Z"


def test_a_row_per_priced_quantity_and_the_totals_are_the_spend_reports_to_the_nano_credit(database_url):
    """Input and output tokens are rows of their own at their own unit price; the charge, one figure a call, is shared
    between them without losing a nano-credit, so every total of the file is the report's."""
    models = ("gemini-3.1-pro", "gemini-2.5-pro", "mystery-model")  # the last one the card cannot price
    with Ledger(database_url) as ledger:
        insert(ledger, [
            call_values(started_at=NOV + timedelta(hours=7 * i), model_requested=models[i % 3], model_reported=None,
                        project=f"p{i % 4}", prompt_tokens=1 + i * 37 % 5000, completion_tokens=i * 91 % 3000,
                        reasoning_tokens=i % 7, charged=Decimal(i * 7919 % 1_000_003) / 10**7,
                        expected=Decimal(i * 13) / 1000, status="completed" if i % 9 else "aborted",
                        pricing_class="rounding" if i % 5 else "overcharge")
            for i in range(90)
        ] + [call_values(started_at=NOV + timedelta(hours=3), prompt_tokens=None, completion_tokens=None,
                         reasoning_tokens=None, charged="0.000000007", pricing_class="missing_usage")])
    header, rows = focus_rows(database_url, "--period", "2026-11")
    check_focus(header, rows, unpriced=("mystery-model",))
    out = io.StringIO()
    assert main(["--database-url", database_url, "report", "--period", "2026-11", "--format", "json", "--output", "-"],
                out=out) == 0
    totals = json.loads(out.getvalue(), parse_float=Decimal)["totals"]

    def total(column: str) -> Decimal:
        return sum((Decimal(r[column] or 0) for r in rows if r["ChargeCategory"] == "Usage"), Decimal(0))

    assert total("PricingCurrencyEffectiveCost") == Decimal(totals["credits_charged"])
    assert total("EffectiveCost") == Decimal(totals["usd"])
    assert total("x_CreditsExpected") == Decimal(totals["credits_expected"])
    for column, figure in (("x_Calls", "calls"), ("x_FailedCalls", "failed_calls"), ("x_PromptTokens", "prompt_tokens"),
                           ("x_CompletionTokens", "completion_tokens"), ("x_ReasoningTokens", "reasoning_tokens"),
                           ("x_Findings", "findings")):
        assert total(column) == totals[figure], column
    assert total("ConsumedQuantity") == totals["prompt_tokens"] + totals["completion_tokens"] + totals["reasoning_tokens"]
    for meter, figure in (("Input Tokens", "prompt_tokens"), ("Output Tokens", "completion_tokens")):
        assert sum(Decimal(r["PricingQuantity"]) for r in rows if r["SkuMeter"] == meter) * 1_000_000 == totals[figure]
    for row in rows:
        assert Decimal(row["PricingCurrencyEffectiveCost"]).as_tuple().exponent >= -9  # whole nano-credits
    rates = {(r["x_Model"], r["SkuMeter"]): r["PricingCurrencyListUnitPrice"] for r in rows}
    assert rates[("gemini-2.5-pro", "Input Tokens")] == "57.0" and rates[("gemini-2.5-pro", "Output Tokens")] == "450.0"
    assert rates[("mystery-model", "Input Tokens")] == ""  # no price on the card: no unit price, no SKU price
    assert {r["ListCost"] for r in rows if r["x_Model"] == "mystery-model"} == {"0.0"}
