"""Checks every section of the config shares (no I/O): the rule for a setting the section does not know."""

from __future__ import annotations

from typing import Iterable

from .errors import ConfigError


def check_keys(table: dict, allowed: Iterable[str], where: str) -> None:
    """ConfigError naming the first setting of `table` not in `allowed` (a typo must not be silently ignored)."""
    allowed = set(allowed)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
