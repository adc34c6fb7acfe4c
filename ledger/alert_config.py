"""The [[budgets]], [[balance_alerts]] and [[channels]] sections of the config, checked when it is read.

Everything the file says is checked here (an unknown scope key, a zone that
does not exist, a threshold of 150, a channel named but not defined, a
forecast on a rolling window): one ConfigError naming the entry. What the
file only points at, the environment variables that hold a channel's URL and
secrets, is checked when a command that sends starts (`run`,
`budgets --notify`, `alerts test`; `ledger.service.channels`), so that an
application's recorder, which reads the same file, never needs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from .accounting.budgets import SCOPE_KEYS, BalanceAlert, Budget, Scope
from .accounting.periods import CALENDAR_KINDS, parse_duration, zone_named
from .config_checks import check_keys, decimal_setting
from .errors import ConfigError

SLACK, WEBHOOK, EMAIL, LOG = "slack", "webhook", "email", "log"
CHANNEL_KINDS = (SLACK, WEBHOOK, EMAIL, LOG)
SECURITY = {"starttls": 587, "tls": 465, "none": 25}  # how an SMTP connection is protected, and its usual port
BUDGET_SETTINGS = {"name", "scope", "period", "timezone", "limit", "limit_usd", "thresholds", "forecast", "enforce", "channels"}
BALANCE_SETTINGS = {"account", "below", "runway_days", "channels"}
CHANNEL_SETTINGS = {
    SLACK: {"name", "kind", "url_env", "timeout"},
    WEBHOOK: {"name", "kind", "url_env", "secret_env", "timeout"},
    EMAIL: {"name", "kind", "host", "port", "security", "username", "password_env", "from", "to", "ca_file", "timeout"},
    LOG: {"name", "kind"},
}
MAX_LIMIT = Decimal(9 * 10**9)  # what a ledger amount holds
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")


@dataclass(frozen=True)
class ChannelConfig:
    """Where alerts go; the URL, webhook secret and SMTP password are named by environment variable only."""

    name: str
    kind: str
    url_env: str | None = None  # slack, webhook
    secret_env: str | None = None  # webhook: the Standard Webhooks secret (whsec_… or base64)
    host: str | None = None  # email: the SMTP server
    port: int | None = None
    security: str = "starttls"
    username: str | None = None
    password_env: str | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()
    ca_file: str | None = None  # email: a CA bundle for a server with a private certificate
    timeout: float = 10.0

    def env_names(self) -> tuple[str, ...]:
        return tuple(name for name in (self.url_env, self.secret_env, self.password_env) if name)


@dataclass(frozen=True)
class AlertSettings:
    budgets: tuple[Budget, ...] = ()
    balance_alerts: tuple[BalanceAlert, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()


# ---------------------------------------------------------------- values


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _name(value: Any, where: str) -> str:
    name = _text(value, where)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} is not a name (letters, digits, '.', '_' and '-', at most 100)")
    return name


def _env(value: Any, where: str) -> str:
    name = _text(value, where)
    if not _ENV.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} is not an environment variable's name (the value itself never goes in the file)")
    return name


def _amount(value: Any, where: str) -> Decimal:
    return decimal_setting(value, where, low=Decimal(0), high=MAX_LIMIT, what="an amount", example="5000")


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: must be a whole number from {low} to {high}, got {value!r}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _tables(raw: Any, section: str, source: str) -> list[dict]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConfigError(f"{source}: {section} must be [[{section}]] tables")
    return raw


def channel_names(raw: Any, where: str, defined: set[str]) -> tuple[str, ...]:
    """A `channels = [...]` list, each name defined in [[channels]] (ConfigError naming the first that is not)."""
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise ConfigError(f"{where}: channels must be a list of channel names")
    for name in raw:
        if name not in defined:
            known = ", ".join(sorted(defined)) or "none is defined"
            raise ConfigError(f"{where}: channel {name!r} is not defined in [[channels]] ({known})")
    return tuple(dict.fromkeys(raw))


# ---------------------------------------------------------------- sections


def _scope(raw: Any, where: str) -> Scope:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: scope must be a table such as {{project = \"search\"}}")
    unknown = sorted(set(raw) - set(SCOPE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown scope key {unknown[0]!r} (known: {', '.join(SCOPE_KEYS)})")
    values = {k: _text(v, f"{where}: scope.{k}") for k, v in raw.items() if k != "tag"}
    tags = raw.get("tag", [])
    tags = [tags] if isinstance(tags, str) else tags
    if not isinstance(tags, list):
        raise ConfigError(f"{where}: scope.tag must be \"name=value\" or a list of them")
    pairs = []
    for tag in tags:
        name, sep, value = tag.partition("=") if isinstance(tag, str) else ("", "", "")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{where}: scope.tag {tag!r} is not name=value")
        pairs.append((name.strip(), value.strip()))
    return Scope(values.get("account"), values.get("project"), values.get("user"), values.get("key"),
                 values.get("model"), tuple(sorted(dict(pairs).items())))


def _period(raw: Any, where: str) -> str:
    period = _text(raw, where)
    if period in CALENDAR_KINDS:
        return period
    try:
        parse_duration(period)
    except ValueError:
        raise ConfigError(f"{where}: {period!r} is not a period ({', '.join(CALENDAR_KINDS)}, or rolling such as 24h or 7d)") from None
    return period.replace(" ", "")


def _budget(item: dict, source: str, zone: str, channels: set[str]) -> Budget:
    where = f"{source}: budget {item.get('name', '?')!r}"
    check_keys(item, BUDGET_SETTINGS, where)
    name = _name(item.get("name"), f"{source}: a budget's name")
    period = _period(item.get("period", "month"), f"{where} period")
    try:
        timezone = zone_named(item["timezone"]).key if "timezone" in item else zone
    except ValueError as error:
        raise ConfigError(f"{where} timezone: {error}") from None
    if ("limit" in item) == ("limit_usd" in item):
        raise ConfigError(f"{where}: give exactly one of limit (credits) or limit_usd")
    limit = _amount(item["limit"], f"{where} limit") if "limit" in item else None
    limit_usd = _amount(item["limit_usd"], f"{where} limit_usd") if "limit_usd" in item else None
    if (limit if limit is not None else limit_usd) <= 0:
        raise ConfigError(f"{where}: the limit must be above 0")
    raw_thresholds = item.get("thresholds", [50, 80, 100])
    if not isinstance(raw_thresholds, list):
        raise ConfigError(f"{where}: thresholds must be a list of percentages such as [50, 80, 100]")
    thresholds = tuple(sorted({_whole(t, f"{where} threshold", 1, 100) for t in raw_thresholds}))
    forecast = _flag(item.get("forecast", False), f"{where} forecast")
    if forecast and period not in CALENDAR_KINDS:
        raise ConfigError(f"{where}: forecast needs a calendar period (a rolling {period} window has no end to project to)")
    return Budget(
        name, _scope(item.get("scope", {}), where), period, timezone, limit, limit_usd=limit_usd, thresholds=thresholds,
        forecast=forecast, enforce=_flag(item.get("enforce", False), f"{where} enforce"),
        channels=channel_names(item.get("channels", []), where, channels),
    )


def _balance_alert(item: dict, source: str, accounts: Iterable[str] | None, channels: set[str]) -> BalanceAlert:
    where = f"{source}: balance alert {item.get('account', '?')!r}"
    check_keys(item, BALANCE_SETTINGS, where)
    account = _text(item.get("account"), f"{source}: a balance alert's account")
    if len(account) > 200:
        raise ConfigError(f"{where}: an account's name is at most 200 characters")
    if accounts is not None and account not in accounts:
        raise ConfigError(f"{where}: no [[accounts]] entry is named {account!r}")
    below = _amount(item["below"], f"{where} below") if "below" in item else None
    runway_days = _whole(item["runway_days"], f"{where} runway_days", 1, 366) if "runway_days" in item else None
    if below is None and runway_days is None:
        raise ConfigError(f"{where}: give below (credits), runway_days, or both")
    return BalanceAlert(account, below, runway_days, channel_names(item.get("channels", []), where, channels))


def _channel(item: dict, source: str) -> ChannelConfig:
    name = _name(item.get("name"), f"{source}: a channel's name")
    where = f"{source}: channel {name!r}"
    kind = item.get("kind")
    if kind not in CHANNEL_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(CHANNEL_KINDS)}, got {kind!r}")
    check_keys(item, CHANNEL_SETTINGS[kind], f"{where} ({kind})")
    timeout = item.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, Decimal)) or not 0 < timeout <= 300:
        raise ConfigError(f"{where}: timeout must be a number of seconds from above 0 to 300, got {timeout!r}")
    timeout = float(timeout)  # a duration, never money
    if kind in (SLACK, WEBHOOK):
        if "url_env" not in item:
            raise ConfigError(f"{where}: url_env is required (the variable that holds the URL)")
        if kind == WEBHOOK and "secret_env" not in item:
            raise ConfigError(f"{where}: secret_env is required (the variable that holds the signing secret)")
        return ChannelConfig(name, kind, url_env=_env(item["url_env"], f"{where} url_env"),
                             secret_env=_env(item["secret_env"], f"{where} secret_env") if "secret_env" in item else None,
                             timeout=timeout)
    if kind == LOG:
        return ChannelConfig(name, kind)
    for required in ("host", "from", "to"):
        if required not in item:
            raise ConfigError(f"{where}: {required} is required for email")
    security = item.get("security", "starttls")
    if security not in SECURITY:
        raise ConfigError(f"{where}: security must be one of {', '.join(SECURITY)}, got {security!r}")
    to = item["to"] if isinstance(item["to"], list) else [item["to"]]
    addresses = tuple(_text(address, f"{where} to") for address in to)
    for address in (*addresses, _text(item["from"], f"{where} from")):
        if not _ADDRESS.fullmatch(address):
            raise ConfigError(f"{where}: {address!r} is not an email address")
    if not addresses:
        raise ConfigError(f"{where}: to names no address")
    if ("username" in item) != ("password_env" in item):
        raise ConfigError(f"{where}: give username and password_env together (or neither)")
    if "username" in item and security == "none":
        raise ConfigError(f"{where}: a login over security = \"none\" would send the password in clear (use starttls or tls)")
    return ChannelConfig(
        name, kind, host=_text(item["host"], f"{where} host"),
        port=_whole(item.get("port", SECURITY[security]), f"{where} port", 1, 65535), security=security,
        username=_text(item["username"], f"{where} username") if "username" in item else None,
        password_env=_env(item["password_env"], f"{where} password_env") if "password_env" in item else None,
        sender=_text(item["from"], f"{where} from"), to=addresses,
        ca_file=_text(item["ca_file"], f"{where} ca_file") if "ca_file" in item else None, timeout=timeout,
    )


def _unique(names: list[str], what: str, source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{source}: two {what} are named {name!r}")
        seen.add(name)


def alert_settings_from_mapping(data: dict, source: str, zone: str, accounts: Iterable[str] | None) -> AlertSettings:
    """The three sections of a config mapping; `zone` is the config's timezone, `accounts` its account names (None: none configured)."""
    channels = tuple(_channel(item, source) for item in _tables(data.get("channels", []), "channels", source))
    _unique([c.name for c in channels], "channels", source)
    defined = {c.name for c in channels}
    budgets = tuple(_budget(item, source, zone, defined) for item in _tables(data.get("budgets", []), "budgets", source))
    _unique([b.name for b in budgets], "budgets", source)
    accounts = None if accounts is None else set(accounts)
    balance_alerts = tuple(_balance_alert(item, source, accounts, defined)
                           for item in _tables(data.get("balance_alerts", []), "balance_alerts", source))
    _unique([a.account for a in balance_alerts], "balance alerts", source)
    return AlertSettings(budgets, balance_alerts, channels)
