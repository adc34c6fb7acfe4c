"""Checks every section of the config shares (no I/O): a setting the section does not know, an exact decimal."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from .errors import ConfigError


def check_keys(table: dict, allowed: Iterable[str], where: str) -> None:
    """ConfigError naming the first setting of `table` not in `allowed` (a typo must not be silently ignored)."""
    allowed = set(allowed)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def decimal_setting(value: Any, where: str, *, low: Decimal, high: Decimal, places: int = 9, what: str = "a number",
                    example: str = "0.01") -> Decimal:
    """An exact decimal in [low, high] with at most `places` decimal places (a nano-credit: 9); TOML floats refused."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ConfigError(f"{where}: expected {what} such as \"{example}\", got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{where}: not a number: {value!r}") from None
    if not amount.is_finite() or not low <= amount <= high:
        raise ConfigError(f"{where}: must be {what} from {low} to {high}, got {value!r}")
    if amount != 0 and amount.as_tuple().exponent < -places:
        raise ConfigError(f"{where}: at most {places} decimal places, got {value!r}")
    return amount
