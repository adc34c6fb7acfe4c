"""Every kind of config value checked once, for every section (no I/O): shapes, numbers, texts, names, zones, hosts, URLs.

A bad value is one ConfigError line, `WHERE: must be WHAT, got VALUE`, the
value escaped and cut short. Numbers are ASCII digits and finite; texts hold
no control character and fit the column they are compared with or stored in.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, NoReturn
from urllib.parse import urlsplit

from .. import redact
from ..accounting.periods import zone_named
from ..errors import ConfigError, shown

# The ledger's text columns a setting is matched against or written to (project, user, key label,
# account, model: String(200) in ledger.store.models; a test holds the two together). A longer
# value could never match a call, or would be refused by PostgreSQL when written.
TEXT_WIDTH = 200
NAME_WIDTH = 100  # a budget's or channel's name (alert_deliveries.channel is 100 wide)
ZONE_WIDTH = 100  # period_closes.zone
PATH_WIDTH = 4096  # PATH_MAX on Linux
HOST_WIDTH = 253  # a DNS name
MAX_INTERVAL_SECONDS = 366 * 24 * 3600  # a schedule or a timeout longer than a year is a typo
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
# A DNS label; "_" too, as container and intranet names have it.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?", re.ASCII)
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")
_CONTROL = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})  # control, format (bidi, zero width), unassigned


def refuse(where: str, expected: str, value: Any, *, secret: bool = False) -> NoReturn:
    """The one message style; a value that may be a secret (a key, a webhook URL put where its variable belongs) is not shown."""
    raise ConfigError(f"{where}: must be {expected}, got " + ("a value not shown here (it may be a secret)" if secret else shown(value)))


def check_keys(entry: dict, allowed: Iterable[str], where: str, what: str = "setting") -> None:
    """ConfigError naming the first key of `entry` not in `allowed` (a typo must not be silently ignored)."""
    allowed = set(allowed)
    unknown = sorted(set(entry) - allowed, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown {what} {shown(unknown[0])} (known: {', '.join(sorted(allowed))})")


def unique(values: Iterable[Any], where: str, what: str) -> None:
    """ConfigError when a list names one thing twice (two tags of one name, one channel twice): a typo, not a wish."""
    seen: set = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{where}: names {what} {shown(value)} twice")
        seen.add(value)


# ---------------------------------------------------------------- shapes: tables, lists, which keys go together


def table(value: Any, where: str) -> dict:
    """A TOML table: `[section]`, or an inline `{...}`."""
    if not isinstance(value, dict):
        refuse(where, "a table", value)
    return value


def tables(value: Any, where: str, shape: str) -> list[dict]:
    """An array of tables (`[[section]]`, or `[{...}, ...]`), `shape` saying which; every item a table."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        refuse(where, shape, value)
    return value


def listing(value: Any, where: str, what: str) -> list:
    """A TOML array of `what` (its items are checked by the caller)."""
    if not isinstance(value, list):
        refuse(where, f"a list of {what}", value)
    return value


def required(item: dict, key: str, where: str, why: str) -> Any:
    """The value of a setting an entry cannot do without."""
    if key not in item:
        raise ConfigError(f"{where}: {key} is required ({why})")
    return item[key]


def exactly_one(item: dict, first: str, second: str, where: str, why: str) -> None:
    """Two settings that say one thing two ways (a limit in credits or in USD): one of them, not both, not neither."""
    if (first in item) == (second in item):
        raise ConfigError(f"{where}: give exactly one of {first} or {second} ({why})")


def environment_value(environ: Mapping[str, str], variable: str | None, where: str, what: str) -> str:
    """The value of a variable a setting names (a key, a URL, a secret), trimmed; read when it is used, never shown."""
    value = environ.get(variable or "", "").strip()
    if not value:
        raise ConfigError(f"{where}: environment variable {variable} ({what}) is not set")
    redact.remember(value)  # a secret: never in a text of this process from here on
    return value


# ---------------------------------------------------------------- numbers


def decimal_setting(value: Any, where: str, *, low: Decimal, high: Decimal, places: int = 9, what: str = "a number",
                    example: str = "0.01", allow_zero: bool = True) -> Decimal:
    """An exact decimal in [low, high] (0 only with `allow_zero`) with at most `places` decimal places (a nano-credit:
    9); TOML floats refused."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        refuse(where, f"{what} such as \"{example}\"", value)
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        refuse(where, f"{what} in the digits 0-9 such as \"{example}\"", value)
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        refuse(where, f"{what} such as \"{example}\"", value)
    if not amount.is_finite() or not low <= amount <= high:
        refuse(where, f"{what} from {low} to {high}", value)
    if amount == 0 and not allow_zero:
        refuse(where, f"{what} above 0", value)
    if amount != 0 and amount.as_tuple().exponent < -places:
        refuse(where, f"{what} with at most {places} decimal places", value)
    return amount


def seconds(value: Any, where: str, *, allow_zero: bool = False, high: int = MAX_INTERVAL_SECONDS) -> float:
    """A duration in seconds, finite, above 0 (or 0 with `allow_zero`) and at most `high`; a float, never money."""
    expected = f"a number of seconds from 0 to {high}" if allow_zero else f"a number of seconds above 0 and at most {high}"
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or not Decimal(value).is_finite():
        refuse(where, expected, value)
    if value < 0 or (value == 0 and not allow_zero) or value > high:
        refuse(where, expected, value)
    return float(value)


def whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        refuse(where, f"a whole number from {low} to {high}", value)
    return value


def flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        refuse(where, "true or false", value)
    return value


def choice(value: Any, where: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        refuse(where, f"one of {', '.join(choices)}", value)
    return value


# ---------------------------------------------------------------- texts


def text(value: Any, where: str, *, width: int = TEXT_WIDTH, what: str = "a text", secret: bool = False) -> str:
    """A non-empty text, trimmed, without control characters (NUL, CR/LF, escapes, bidi marks), at most `width` long."""
    if not isinstance(value, str) or not value.strip():
        refuse(where, f"{what} (not empty)", value, secret=secret and isinstance(value, str))
    trimmed = value.strip()
    if any(unicodedata.category(ch) in _CONTROL for ch in trimmed):
        refuse(where, f"{what} without control characters", value, secret=secret)
    if len(trimmed) > width:
        refuse(where, f"{what} of at most {width} characters", value, secret=secret)
    return trimmed


def name(value: Any, where: str, *, width: int = NAME_WIDTH) -> str:
    """A name that names files, jobs and messages: ASCII letters, digits, '.', '_' and '-', a letter or digit first."""
    found = text(value, where, width=width, what="a name")
    if not _NAME.fullmatch(found):
        refuse(where, f"a name of letters, digits, '.', '_' and '-' (at most {width})", value)
    return found


def env_name(value: Any, where: str) -> str:
    """The name of an environment variable (the value itself never goes in the file)."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value.strip()):
        refuse(where, "an environment variable's name such as SLACK_WEBHOOK_URL (the value itself never goes in the file)",
               value, secret=isinstance(value, str))
    return value.strip()


def file_path(value: Any, where: str) -> str:
    return text(value, where, width=PATH_WIDTH, what="a path")


def zone(value: Any, where: str) -> str:
    """An IANA zone's name, as ZoneInfo knows it."""
    try:
        return zone_named(text(value, where, width=ZONE_WIDTH, what="a time zone")).key
    except ValueError:
        refuse(where, "a known time zone (an IANA name such as Europe/Berlin or UTC)", value)


def email_address(value: Any, where: str) -> str:
    found = text(value, where, width=254, what="an email address")  # RFC 5321's longest path
    if not _ADDRESS.fullmatch(found):
        refuse(where, "an email address", value)
    return found


# ---------------------------------------------------------------- hosts and URLs


def host(value: Any, where: str) -> str:
    """A host to bind or connect to: an IP address, or a DNS name in ASCII (an international one in its xn-- form)."""
    found = text(value, where, width=HOST_WIDTH, what="a host")
    try:
        return str(ipaddress.ip_address(found.strip("[]")))
    except ValueError:
        pass
    labels = found.removesuffix(".").split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        refuse(where, "an IP address or a host name (letters, digits, '-', '.')", value)
    return found


def base_url(value: Any, where: str) -> str:
    """An API's base URL: http(s), a host, no query, fragment, credentials, space or control character; no path: /v1."""
    found = text(value, where, width=2000, what="a base URL such as https://api.aivideoapi.ai/v1")
    if any(ch.isspace() for ch in found):
        refuse(where, "a base URL without spaces", value)
    try:
        parts = urlsplit(found)
        port = parts.port
    except ValueError:
        refuse(where, "a base URL such as https://api.aivideoapi.ai/v1", value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: must start with http:// or https:// and name a host, got {shown(value)}")
    if "@" in parts.netloc:  # not echoed: what stands before the @ may be a secret
        raise ConfigError(f"{where}: a base URL has no query, fragment or credentials (the proxy sends the caller's key)")
    if parts.query or parts.fragment or found.endswith(("?", "#")):
        raise ConfigError(f"{where}: a base URL has no query, fragment or credentials, got {shown(value)}")
    if port == 0:
        refuse(where, "a URL with a port to connect to (not 0)", value)
    host(parts.hostname, where + " (its host)")
    path_part = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{parts.netloc}{path_part}"
