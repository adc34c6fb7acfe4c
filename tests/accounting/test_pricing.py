from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import RateCardError
from ledger.accounting.pricing import (
    CHARGED_ON_REFUND, MISSING_CHARGE, MISSING_USAGE, OK, OVERCHARGE, REASONING_BILLED, ROUNDING,
    UNDERCHARGE, WRONG_RATE, PricingPolicy, default_rate_book, parse_rate_cards, platform_charge, price,
)
from ledger.accounting.records import COMPLETED, ERROR, CallRecord, ResponseFacts, Usage

BOOK = default_rate_book()
RATE = BOOK.cards[0].rates["gemini-3.1-pro"]
NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def record(prompt=194, completion=229, reasoning=457, charged="0.25", *, status=COMPLETED, http=200,
           refunded=False, model="gemini-3.1-pro", when=NOW) -> CallRecord:
    usage = None if prompt is None else Usage(prompt, completion, reasoning, 0, 0, prompt + completion + reasoning)
    return CallRecord(
        call_id="c", started_at=when, status=status, model_requested=model, http_status=http, refunded=refunded,
        response=ResponseFacts(usage=usage, model_reported=f"{model}-preview",
                               credits_charged=None if charged is None else Decimal(charged)),
    )


def test_reference_example_costs_exactly_0_25088():
    assert RATE.cost(194, 229) == Decimal("0.25088")
    finding = price(record(), BOOK)
    assert finding.credits_expected == Decimal("0.25088")
    assert finding.pricing_class == ROUNDING
    assert finding.difference == Decimal("-0.00088")


tokens = st.integers(min_value=0, max_value=2_000_000)


@given(st.lists(st.tuples(tokens, tokens), min_size=1, max_size=20))
def test_price_of_the_sum_is_the_sum_of_prices(parts):
    total = RATE.cost(sum(p for p, _ in parts), sum(c for _, c in parts))
    assert total == sum((RATE.cost(p, c) for p, c in parts), Decimal(0))


@given(tokens, tokens, st.integers(min_value=0, max_value=100_000))
def test_reasoning_tokens_are_never_billed(prompt, completion, reasoning):
    charged = platform_charge(RATE.cost(prompt, completion))
    finding = price(record(prompt, completion, reasoning, str(charged)), BOOK)
    assert finding.credits_expected == RATE.cost(prompt, completion)
    assert finding.pricing_class in (OK, ROUNDING)


@given(tokens, tokens)
def test_a_charge_at_the_platforms_rounding_is_never_flagged(prompt, completion):
    charged = platform_charge(RATE.cost(prompt, completion))
    assert price(record(prompt, completion, 0, str(charged)), BOOK).is_clean


@pytest.mark.parametrize(
    "case, expected_class",
    [
        (dict(charged="0.25088"), OK),
        (dict(charged="0.38"), OVERCHARGE),  # 1.5x
        (dict(charged="0.12"), UNDERCHARGE),
        (dict(charged="0.69"), REASONING_BILLED),  # 194*0.00016 + (229+457)*0.00096 = 0.68960
        (dict(charged="0.11"), WRONG_RATE),  # at gemini-2.5-pro's 57/450: 0.114108
        (dict(charged=None), MISSING_CHARGE),
        (dict(prompt=None, charged="0.25"), MISSING_USAGE),
        (dict(prompt=None, charged="0.05", status=ERROR, http=503, refunded=True), CHARGED_ON_REFUND),
        (dict(prompt=None, charged=None, status=ERROR, http=503, refunded=True), OK),
        (dict(prompt=None, charged=None, status=ERROR, http=429), OK),
    ],
)
def test_each_class_is_named(case, expected_class):
    assert price(record(**case), BOOK).pricing_class == expected_class


def test_tolerance_is_a_setting():
    strict = PricingPolicy(charge_precision=Decimal("0.00001"), tolerance=Decimal("0.000005"))
    assert price(record(charged="0.25"), BOOK, strict).pricing_class == UNDERCHARGE


CARDS = """
[[card]]
name = "old"
effective_from = 2026-01-01T00:00:00Z
[card.rates."gemini-3.1-pro"]
input = 160
output = 960

[[card]]
name = "new"
effective_from = 2026-06-01T00:00:00Z
usd_per_credit = "0.004"
[card.rates."gemini-3.1-pro"]
input = 100
output = 500
"""


def test_the_card_in_force_at_the_call_prices_it():
    book = parse_rate_cards(CARDS)
    before = price(record(when=datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc)), book)
    after = price(record(when=datetime(2026, 6, 1, tzinfo=timezone.utc)), book)
    assert (before.rate_card, before.credits_expected) == ("old", Decimal("0.25088"))
    assert (after.rate_card, after.credits_expected) == ("new", Decimal("0.1339"))


def test_a_suffixed_reported_model_is_priced_by_its_base_name():
    found = BOOK.cards[0].rate_for(None, "gemini-3.1-pro-preview")
    assert found is not None and found[0] == "gemini-3.1-pro"


@pytest.mark.parametrize(
    "text, message",
    [
        ("not toml [", "not valid TOML"),
        ("", r"no \[\[card\]\] entries"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00', "time zone"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z', "has no"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\n[card.rates.m]\ninput = -1\noutput = 2', "from 0 to"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\n[card.rates.m]\ninput = "nan"\noutput = 2', "from 0 to"),
        # Beyond what the ledger holds: refused when the card is loaded, never in the middle of a batch
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\n[card.rates.m]\ninput = 100000000000000\noutput = 2',
         "from 0 to 1000000"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\n[card.rates.m]\ninput = 1e999999999\noutput = 2',
         "from 0 to"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\n[card.rates.m]\ninput = "0.0000000001"\noutput = 2',
         "9 decimal places"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\nusd_per_credit = "5000"\n[card.rates.m]\ninput = 1\noutput = 2',
         "usd_per_credit: must be a number from 0 to 1000"),
        ('[[card]]\nname = "x"\neffective_form = 2026-01-01T00:00:00Z', "unknown key 'effective_form'"),
        (f'[[card]]\nname = "{"x" * 201}"\neffective_from = 2026-01-01T00:00:00Z', "longer than 200"),
        ('[[card]]\nname = "a"\neffective_from = 2026-06-01T00:00:00Z\n[card.rates.m]\ninput = 1\noutput = 2\n'
         '[[card]]\nname = "b"\neffective_from = 2026-06-01T02:00:00+02:00\n[card.rates.m]\ninput = 3\noutput = 4',
         "'a' and 'b' both take effect at 2026-06-01T00:00:00"),
        ('[[card]]\nname = "x"\neffective_from = 0001-01-01T00:00:00Z\n[card.rates.m]\ninput = 1\noutput = 2', "out of range"),
        ('[[card]]\nname = "x"\neffective_from = 2026-01-01T00:00:00Z\n[card.rates.m]\ninput = 1', "lack 'output'"),
    ],
)
def test_a_bad_rate_card_says_what_is_wrong(text, message):
    with pytest.raises(RateCardError, match=message):
        parse_rate_cards(text)


def test_default_card_holds_the_four_models_of_the_reference():
    card = BOOK.cards[0]
    assert card.usd_per_credit == Decimal("0.005")
    assert {m: (r.input_per_million, r.output_per_million) for m, r in card.rates.items()} == {
        "gemini-3.1-pro": (160, 960), "gemini-3-pro": (160, 960), "gemini-2.5-pro": (57, 450), "gpt-5-4": (300, 1800),
    }
    assert card.effective_from < NOW - timedelta(days=1)
