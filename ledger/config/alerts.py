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

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from ..accounting.budgets import SCOPE_KEYS, BalanceAlert, Budget, Scope
from ..accounting.periods import CALENDAR_KINDS, parse_duration
from ..errors import ConfigError
from .checks import (check_keys, choice, decimal_setting, email_address, env_name, exactly_one, file_path, flag, host,
                     listing, name, required, seconds, shown, table, tables, text, unique, whole, zone)

SLACK, WEBHOOK, EMAIL, LOG = "slack", "webhook", "email", "log"
CHANNEL_KINDS = (SLACK, WEBHOOK, EMAIL, LOG)
SECURITY = {"starttls": 587, "tls": 465, "none": 25}  # how an SMTP connection is protected, and its usual port
BUDGET_SETTINGS = frozenset({"name", "scope", "period", "timezone", "limit", "limit_usd", "thresholds", "forecast", "enforce",
                             "channels"})
BALANCE_SETTINGS = frozenset({"account", "below", "runway_days", "channels"})
CHANNEL_SETTINGS = {
    SLACK: frozenset({"name", "kind", "url_env", "timeout"}),
    WEBHOOK: frozenset({"name", "kind", "url_env", "secret_env", "timeout"}),
    EMAIL: frozenset({"name", "kind", "host", "port", "security", "username", "password_env", "from", "to", "ca_file", "timeout"}),
    LOG: frozenset({"name", "kind"}),
}
MAX_LIMIT = Decimal(9 * 10**9)  # what a ledger amount holds
MAX_CHANNEL_TIMEOUT = 300  # seconds; an attempt must end well inside the delivery's lease (ledger.service.delivery)


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


# ---------------------------------------------------------------- values (each kind checked once: ledger.config.checks)


def _amount(value: Any, where: str, *, allow_zero: bool = True) -> Decimal:
    return decimal_setting(value, where, low=Decimal(0), high=MAX_LIMIT, what="an amount", example="5000",
                           allow_zero=allow_zero)


def channel_names(raw: Any, where: str, defined: set[str]) -> tuple[str, ...]:
    """A `channels = [...]` list, each name defined in [[channels]] once (ConfigError naming the first that is not)."""
    for item in listing(raw, f"{where} channels", "channel names"):
        if not isinstance(item, str) or item not in defined:
            known = ", ".join(sorted(defined)) or "none is defined"
            raise ConfigError(f"{where}: channel {shown(item)} is not defined in [[channels]] ({known})")
    unique(raw, f"{where} channels", "the channel")
    return tuple(raw)


# ---------------------------------------------------------------- sections


def _scope(raw: Any, where: str) -> Scope:
    check_keys(table(raw, f"{where} scope"), SCOPE_KEYS, where, "scope key")
    # Each is compared with a column of the ledger (calls.project, end_user, model_requested; api_keys.label, account).
    values = {k: text(v, f"{where}: scope.{k}") for k, v in raw.items() if k != "tag"}
    tags = raw.get("tag", [])
    tags = [tags] if isinstance(tags, str) else tags
    listing(tags, f"{where}: scope.tag", "\"name=value\" texts")
    pairs = []
    for tag in tags:
        tag_name, sep, value = tag.partition("=") if isinstance(tag, str) else ("", "", "")
        if not sep or not tag_name.strip() or not value.strip():
            raise ConfigError(f"{where}: scope.tag {shown(tag)} is not name=value")
        pairs.append((text(tag_name, f"{where}: scope.tag name"), text(value, f"{where}: scope.tag value")))
    # A call holds one value per tag: a scope asking for two could never match, and one of them is a typo.
    unique((n for n, _ in pairs), f"{where}: scope.tag", "the tag")
    return Scope(values.get("account"), values.get("project"), values.get("user"), values.get("key"),
                 values.get("model"), tuple(sorted(pairs)))


def _period(raw: Any, where: str) -> str:
    period = text(raw, where, what="a period")
    if period in CALENDAR_KINDS:
        return period
    try:
        parse_duration(period)
    except ValueError:
        raise ConfigError(f"{where}: {period!r} is not a period ({', '.join(CALENDAR_KINDS)}, or rolling such as 24h or 7d)") from None
    return period.replace(" ", "")


def _budget(item: dict, source: str, config_zone: str, channels: set[str]) -> Budget:
    where = f"{source}: budget {shown(item.get('name', '?'))}"
    check_keys(item, BUDGET_SETTINGS, where)
    budget_name = name(item.get("name"), f"{source}: a budget's name")
    period = _period(item.get("period", "month"), f"{where} period")
    timezone = zone(item["timezone"], f"{where} timezone") if "timezone" in item else config_zone
    exactly_one(item, "limit", "limit_usd", where, "a limit in credits, or in USD at the rate card's usd_per_credit")
    limit = _amount(item["limit"], f"{where} limit", allow_zero=False) if "limit" in item else None
    limit_usd = _amount(item["limit_usd"], f"{where} limit_usd", allow_zero=False) if "limit_usd" in item else None
    raw_thresholds = listing(item.get("thresholds", [50, 80, 100]), f"{where} thresholds", "percentages such as [50, 80, 100]")
    thresholds = [whole(t, f"{where} threshold", 1, 100) for t in raw_thresholds]
    unique(thresholds, f"{where} thresholds", "the threshold")
    forecast = flag(item.get("forecast", False), f"{where} forecast")
    if forecast and period not in CALENDAR_KINDS:
        raise ConfigError(f"{where}: forecast needs a calendar period (a rolling {period} window has no end to project to)")
    return Budget(
        budget_name, _scope(item.get("scope", {}), where), period, timezone, limit, limit_usd=limit_usd,
        thresholds=tuple(sorted(thresholds)), forecast=forecast, enforce=flag(item.get("enforce", False), f"{where} enforce"),
        channels=channel_names(item.get("channels", []), where, channels),
    )


def _balance_alert(item: dict, source: str, accounts: Iterable[str] | None, channels: set[str]) -> BalanceAlert:
    where = f"{source}: balance alert {shown(item.get('account', '?'))}"
    check_keys(item, BALANCE_SETTINGS, where)
    account = text(item.get("account"), f"{source}: a balance alert's account")
    if accounts is not None and account not in accounts:
        raise ConfigError(f"{where}: no [[accounts]] entry is named {account!r}")
    below = _amount(item["below"], f"{where} below") if "below" in item else None
    runway_days = whole(item["runway_days"], f"{where} runway_days", 1, 366) if "runway_days" in item else None
    if below is None and runway_days is None:
        raise ConfigError(f"{where}: give below (credits), runway_days, or both")
    return BalanceAlert(account, below, runway_days, channel_names(item.get("channels", []), where, channels))


def _channel(item: dict, source: str) -> ChannelConfig:
    channel = name(item.get("name"), f"{source}: a channel's name")
    where = f"{source}: channel {channel!r}"
    kind = choice(item.get("kind"), f"{where} kind", CHANNEL_KINDS)
    check_keys(item, CHANNEL_SETTINGS[kind], f"{where} ({kind})")
    timeout = seconds(item.get("timeout", 10), f"{where} timeout", high=MAX_CHANNEL_TIMEOUT)
    if kind in (SLACK, WEBHOOK):
        url_env = env_name(required(item, "url_env", where, "the variable that holds the URL"), f"{where} url_env")
        secret_env = None if kind == SLACK else env_name(
            required(item, "secret_env", where, "the variable that holds the signing secret"), f"{where} secret_env")
        return ChannelConfig(channel, kind, url_env=url_env, secret_env=secret_env, timeout=timeout)
    if kind == LOG:
        return ChannelConfig(channel, kind)
    for setting, why in (("host", "the SMTP server"), ("from", "the sender's address"), ("to", "who gets the mail")):
        required(item, setting, where, f"{why}, for email")
    security = choice(item.get("security", "starttls"), f"{where} security", SECURITY)
    to = item["to"] if isinstance(item["to"], list) else [item["to"]]
    addresses = tuple(email_address(address, f"{where} to") for address in to)
    if not addresses:
        raise ConfigError(f"{where}: to names no address")
    unique(addresses, f"{where} to", "the address")
    if ("username" in item) != ("password_env" in item):
        raise ConfigError(f"{where}: give username and password_env together (or neither)")
    if "username" in item and security == "none":
        raise ConfigError(f"{where}: a login over security = \"none\" would send the password in clear (use starttls or tls)")
    return ChannelConfig(
        channel, kind, host=host(item["host"], f"{where} host"),
        port=whole(item.get("port", SECURITY[security]), f"{where} port", 1, 65535), security=security,
        username=text(item["username"], f"{where} username") if "username" in item else None,
        password_env=env_name(item["password_env"], f"{where} password_env") if "password_env" in item else None,
        sender=email_address(item["from"], f"{where} from"), to=addresses,
        ca_file=file_path(item["ca_file"], f"{where} ca_file") if "ca_file" in item else None, timeout=timeout,
    )


def alert_settings_from_mapping(data: dict, source: str, zone: str, accounts: Iterable[str] | None) -> AlertSettings:
    """The three sections of a config mapping; `zone` is the config's timezone, `accounts` its account names (None: none configured)."""
    channels = tuple(_channel(item, source) for item in tables(data.get("channels", []), f"{source}: channels", "[[channels]] tables"))
    unique((c.name for c in channels), f"{source}: [[channels]]", "the channel")
    defined = {c.name for c in channels}
    budgets = tuple(_budget(item, source, zone, defined)
                    for item in tables(data.get("budgets", []), f"{source}: budgets", "[[budgets]] tables"))
    unique((b.name for b in budgets), f"{source}: [[budgets]]", "the budget")
    accounts = None if accounts is None else set(accounts)
    balance_alerts = tuple(_balance_alert(item, source, accounts, defined)
                           for item in tables(data.get("balance_alerts", []), f"{source}: balance_alerts",
                                              "[[balance_alerts]] tables"))
    unique((a.account for a in balance_alerts), f"{source}: [[balance_alerts]]", "the account")
    return AlertSettings(budgets, balance_alerts, channels)
