"""The command line's argument types: times, whole numbers, hosts, ports, period names, zones, group keys.

Each turns one argument's text into its value or an ArgumentTypeError of one
line (argparse prints it and exits 2); `ledger.cli` builds the parser with them.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)  # times before the ledger's first year, or near the
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)  # last one a date can hold, are typos: refused


def parse_time(text: str) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or an age like 24h, 7d, 30m."""
    match = re.fullmatch(r"\s*(\d{1,12})\s*([smhd])\s*", text, re.ASCII)  # ２４h is no age
    try:
        if match:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
            when = datetime.now(timezone.utc) - timedelta(**{unit: int(match.group(1))})
        else:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
            when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use 2026-11-24, 2026-11-24T10:00Z or 24h)") from None
    except OverflowError:
        when = None
    if when is None or not EARLIEST <= when < LATEST:
        raise argparse.ArgumentTypeError(f"time out of range: {text!r} (from 1970 to the year 9998)")
    return when


def _digits(text: str) -> int | None:
    """A whole number written in ASCII digits, else None: int() also reads '٣', '３' and blanks around."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text, re.ASCII) else None


def _whole_number(text: str) -> int:
    value = _digits(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return value


def _host(text: str) -> str:
    """--host as the config's `host` is checked (an IP address or an ASCII host name; no NUL, space or control)."""
    from .config.checks import host
    from .errors import ConfigError

    try:
        return host(text, "--host")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--host: ")) from None


def _port(text: str) -> int:
    port = _digits(text)
    if port is None:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _period_name(text: str) -> str:
    """A period's name, checked for its form here (its bounds need the zone, read later)."""
    from .accounting.periods import parse_period

    try:
        parse_period(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def _zone(text: str) -> str:
    from .accounting.periods import zone_named

    try:
        return zone_named(text).key
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _group_keys(text: str):
    from .accounting.group_keys import parse_group_keys

    try:
        return parse_group_keys(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {value}")
    return value
