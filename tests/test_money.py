from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.money import credits, fmt, from_nano, to_nano

amounts = st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=9, allow_nan=False)


def test_a_float_never_becomes_credits():
    with pytest.raises(TypeError):
        credits(0.25)
    with pytest.raises(TypeError):
        to_nano(0.25)  # type: ignore[arg-type]


def test_non_finite_amounts_are_refused():
    for text in ("NaN", "Infinity", "-Infinity", "abc"):
        with pytest.raises(ValueError):
            credits(text)


@given(amounts)
def test_nano_round_trip_is_exact(amount):
    assert from_nano(to_nano(amount)) == amount


@given(amounts, amounts)
def test_sums_in_nano_equal_sums_in_decimal(a, b):
    assert from_nano(to_nano(a) + to_nano(b)) == a + b


def test_to_nano_rounds_half_even_once():
    assert to_nano(Decimal("0.0000000005")) == 0
    assert to_nano(Decimal("0.0000000015")) == 2
    assert to_nano(Decimal("0.25088")) == 250_880_000


def test_fmt_is_plain_text_never_scientific():
    assert fmt(Decimal("1E-9")) == "0.000000001"
    assert fmt(Decimal("2.5E+3")) == "2500"
    assert fmt(Decimal("0.25088"), 2) == "0.25"
    assert fmt(None) == ""
