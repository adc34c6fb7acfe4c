"""Decimal rules for credits: no floats in, one rounding step, plain formatting.

Credits are `Decimal` in Python and an integer count of nano-credits in the
database (1 credit = 10**9 nano). `to_nano` is the one place that rounds.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_EVEN, Decimal

NANO_PER_CREDIT = 10**9
NANO = Decimal(1).scaleb(-9)
ZERO = Decimal(0)
# The largest amount the ledger stores: a BIGINT of nano-credits holds 9.22 * 10**9 credits, and sums
# of many such amounts are made in SQL. Amounts from outside beyond this are refused where they enter.
MAX_LEDGER_CREDITS = Decimal(9 * 10**9)

# Enough digits for any ledger sum (10**18 nano-credits) with room to spare.
_CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])


def credits(value: Decimal | int | str) -> Decimal:
    """A credit amount from an exact source; a float is refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"credits must not be built from {type(value).__name__}: {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"not a credit amount: {value!r}") from None
    else:
        raise TypeError(f"credits must be Decimal, int or str, not {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"not a finite credit amount: {value!r}")
    return amount


def to_nano(amount: Decimal) -> int:
    """Credits to integer nano-credits; the one rounding step (half-even)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"to_nano takes a Decimal, not {type(amount).__name__}")
    return int(amount.scaleb(9, _CONTEXT).to_integral_value(ROUND_HALF_EVEN, _CONTEXT))


def from_nano(nano: int) -> Decimal:
    """Integer nano-credits to credits, exact."""
    return Decimal(int(nano)).scaleb(-9, _CONTEXT).normalize(_CONTEXT) if nano else ZERO


def quantize(amount: Decimal, step: Decimal, rounding: str = decimal.ROUND_HALF_UP) -> Decimal:
    """Round `amount` to a multiple of `step` (for example 0.01)."""
    return amount.quantize(step, rounding=rounding, context=_CONTEXT)


def fmt(amount: Decimal | None, places: int | None = None) -> str:
    """Plain text, never scientific notation; '' for no amount."""
    if amount is None:
        return ""
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=_CONTEXT)
        return f"{amount:f}"
    text = f"{amount.normalize(_CONTEXT):f}"
    return text


def usd(amount: Decimal, usd_per_credit: Decimal) -> Decimal:
    """Credits to US dollars at the rate card's rate."""
    return amount * usd_per_credit
