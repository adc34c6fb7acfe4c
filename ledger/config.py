"""Settings: frozen values from a TOML file, the environment and the command line.

Precedence: command line > environment > config file > defaults. The config
file is `--config PATH`, else `$CREDIT_LEDGER_CONFIG`, else
`credit-ledger.toml` in the working directory when it exists. Every setting
is checked when the file is read (each kind of value by one check of
ledger.config_checks): a bad value is one ConfigError naming it, never a
failure later in a job. API keys are named here (or by environment
variable), never written to the database. Reading the config loads no
database or HTTP library.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from .accounting.budgets import BalanceAlert, Budget
from .accounting.pricing import PricingPolicy
from .alert_config import AlertSettings, ChannelConfig, alert_settings_from_mapping
from .config_checks import (PATH_WIDTH, base_url, check_keys, choice, decimal_setting, env_name, file_path, flag,
                            seconds, shown, text, unique, whole, zone)
from .config_reports import ReportEntry, parse_report_entries
from .proxy_config import ProxySettings, parse_proxy
from .errors import ConfigError
from .keys import fingerprint, last4

ENV_CONFIG = "CREDIT_LEDGER_CONFIG"
ENV_DATABASE_URL = "CREDIT_LEDGER_DATABASE_URL"
DEFAULT_CONFIG_FILE = "credit-ledger.toml"
DEFAULT_DATABASE_URL = "sqlite:///ledger.db"
DEFAULT_BASE_URL = "https://api.aivideoapi.ai/v1"


def normalise_url(url: str, where: str = "database URL") -> str:
    """A database URL as the ledger opens it: SQLite, or PostgreSQL through psycopg 3 (`postgresql://` accepted)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a database URL: {shown(url)} (try sqlite:///ledger.db or postgresql://host/db)")
    # No NUL or line break: the driver would fail on it in the middle of a command.
    scheme, rest = text(url, where, width=PATH_WIDTH, what="a database URL").split("://", 1)
    backend, _, driver = scheme.lower().partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigError(f"database URL {scheme}://…: the ledger talks to PostgreSQL through psycopg (postgresql://…)")
        return f"postgresql+psycopg://{rest}"
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(f"database URL {scheme}://…: use sqlite:///PATH")
        return f"sqlite://{rest}"
    raise ConfigError(f"unsupported database {backend!r}: use SQLite (sqlite:///ledger.db) or PostgreSQL (postgresql://host/db)")


def database_url_from_env() -> str:
    return normalise_url(os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL)


@dataclass(frozen=True)
class KeyConfig:
    """A key the service polls with: its value comes from `env` or `key`."""

    label: str
    env: str | None = None
    key: str | None = field(default=None, repr=False)

    def value(self) -> str:
        if self.key:
            return self.key
        value = os.environ.get(self.env or "")
        if not value:
            raise ConfigError(f"key {self.label!r}: environment variable {self.env} is not set")
        return value


@dataclass(frozen=True)
class AccountConfig:
    """One prepaid balance; several keys may draw on it."""

    name: str
    base_url: str = DEFAULT_BASE_URL
    keys: tuple[KeyConfig, ...] = ()


@dataclass(frozen=True)
class ScheduleConfig:
    poll_credits_seconds: float = 300.0
    reconcile_seconds: float = 3600.0
    replay_journal_seconds: float = 600.0
    # Snapshots younger than this are left out of the reconcile job: calls that ended
    # before them may still wait in a recorder's journal.
    reconcile_settle_seconds: float = 120.0
    budgets_seconds: float = 60.0  # evaluate budgets and balance alerts, deliver pending alerts


@dataclass(frozen=True)
class ReconcileConfig:
    rounding: str = "floor"  # how the platform rounds its integer figures: floor, ceil, half or any
    billing_settle_seconds: float = 2.0  # how long after a call's end the platform may book its charge


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    journal_path: str = "credit-ledger.journal"
    secret_path: str = "credit-ledger.secret"
    rate_cards_path: str | None = None
    pricing: PricingPolicy = PricingPolicy()
    include_usage: bool = False
    writer_processes: int = 2  # the Recorder's ledger writer processes; 0: a thread of the caller's process
    limits_refresh_seconds: float = 2.0  # how often a Recorder re-reads the spend of its enforced budgets
    reports_dir: str = "reports"
    timezone: str = "UTC"  # the zone reports and budgets are bounded in, unless they say otherwise
    accounts: tuple[AccountConfig, ...] = ()
    schedule: ScheduleConfig = ScheduleConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    reports: tuple[ReportEntry, ...] = ()  # [[reports]]: scheduled reports (ledger.config_reports)
    alerting: AlertSettings = AlertSettings()  # [[budgets]], [[balance_alerts]], [[channels]] (ledger.alert_config)
    proxy: ProxySettings = ProxySettings()  # [proxy] and [[proxy.keys]]: the recording proxy (ledger.proxy_config)
    config_path: str | None = None

    @property
    def budgets(self) -> tuple[Budget, ...]:
        return self.alerting.budgets

    @property
    def balance_alerts(self) -> tuple[BalanceAlert, ...]:
        return self.alerting.balance_alerts

    @property
    def channels(self) -> tuple[ChannelConfig, ...]:
        return self.alerting.channels

    def with_database_url(self, url: str | None) -> "Settings":
        return self if not url else replace(self, database_url=normalise_url(url))


# ---------------------------------------------------------------- checking values (each kind once: ledger.config_checks)


def _table(data: dict, name: str, where: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _accounts(raw: Any, source: str) -> tuple[AccountConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: accounts must be [[accounts]] tables")
    accounts = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: accounts #{i} must be a table")
        check_keys(item, {"name", "base_url", "keys"}, f"{source}: accounts #{i}")
        name = text(item.get("name"), f"{source}: accounts #{i} name")  # balance_snapshots.account, api_keys.account
        raw_keys = item.get("keys", [])
        if not isinstance(raw_keys, list):
            raise ConfigError(f"{source}: account {name!r} keys must be a list of tables like {{env = \"AIVIDEO_API_KEY\"}}")
        keys = []
        for j, key in enumerate(raw_keys, 1):
            where = f"{source}: account {name!r} key #{j}"
            if not isinstance(key, dict):
                raise ConfigError(f"{where} must be a table like {{env = \"AIVIDEO_API_KEY\"}}")
            check_keys(key, {"label", "env", "key"}, where)
            env = env_name(key["env"], f"{where} env") if "env" in key else None
            value = text(key["key"], f"{where} key", secret=True) if "key" in key else None
            if (env is None) == (value is None):
                raise ConfigError(f"{where}: give exactly one of env (a variable name) or key")
            if value is not None and not value.startswith("sk-"):
                raise ConfigError(f"{where}: a key starts with sk-")
            label = text(key["label"], f"{where} label") if "label" in key else env or f"{name}-{j}"  # api_keys.label
            keys.append(KeyConfig(label, env, value))
        if not keys:
            raise ConfigError(f"{source}: account {name!r} has no keys")
        url = base_url(item.get("base_url", DEFAULT_BASE_URL), f"{source}: account {name!r} base_url")
        accounts.append(AccountConfig(name, url, tuple(keys)))
    unique((a.name for a in accounts), f"{source}: [[accounts]]", "the account")
    return tuple(accounts)


def default_accounts() -> tuple[AccountConfig, ...]:
    """With no accounts configured: one account whose key is $AIVIDEO_API_KEY."""
    base_url = os.environ.get("AIVIDEO_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
    return (AccountConfig("default", base_url, (KeyConfig("AIVIDEO_API_KEY", env="AIVIDEO_API_KEY"),)),)


def configured_accounts(settings: Settings) -> tuple[AccountConfig, ...]:
    """The [[accounts]], or the one default account when none is configured."""
    return settings.accounts or default_accounts()


def configured_keys(settings: Settings, secret: bytes) -> list[tuple[str, str, str, str]]:
    """(fingerprint, last4, label, account) of each configured key whose value is at hand (set, or in the environment)."""
    found = []
    for account in configured_accounts(settings):
        for key in account.keys:
            try:
                value = key.value()
            except ConfigError:
                continue
            found.append((fingerprint(value, secret), last4(value), key.label, account.name))
    return found


TOP_LEVEL = {
    "database_url", "journal", "secret", "reports_dir", "timezone", "pricing", "recorder", "accounts", "schedule", "reconcile",
    "reports",
    "budgets", "balance_alerts", "channels",
    "proxy",
}
ROUNDING_RULES = ("floor", "ceil", "half", "any")
SCHEDULE_SETTINGS = {"poll_credits_seconds", "reconcile_seconds", "replay_journal_seconds", "reconcile_settle_seconds",
                     "budgets_seconds"}


def settings_from_mapping(data: dict, source: str = "config") -> Settings:
    check_keys(data, TOP_LEVEL, source)
    pricing = _table(data, "pricing", source)
    check_keys(pricing, {"charge_precision", "tolerance", "rate_cards"}, f"{source}: [pricing]")
    recorder = _table(data, "recorder", source)
    check_keys(recorder, {"include_usage", "writer_processes", "limits_refresh_seconds"}, f"{source}: [recorder]")
    schedule = _table(data, "schedule", source)
    check_keys(schedule, SCHEDULE_SETTINGS, f"{source}: [schedule]")
    reconcile = _table(data, "reconcile", source)
    check_keys(reconcile, {"rounding", "billing_settle_seconds"}, f"{source}: [reconcile]")
    rounding = choice(reconcile.get("rounding", ReconcileConfig.rounding), f"{source}: reconcile.rounding", ROUNDING_RULES)

    precision = decimal_setting(pricing.get("charge_precision", "0.01"), f"{source}: pricing.charge_precision",
                         low=Decimal(0), high=Decimal(1))
    if precision <= 0:
        raise ConfigError(f"{source}: pricing.charge_precision must be above 0")
    tolerance = decimal_setting(pricing.get("tolerance", precision / 2), f"{source}: pricing.tolerance",
                         low=Decimal(0), high=Decimal(1), places=10)
    rate_cards = pricing.get("rate_cards")
    if rate_cards is not None:
        rate_cards = file_path(rate_cards, f"{source}: pricing.rate_cards")
    writer_processes = whole(recorder.get("writer_processes", Settings.writer_processes),
                             f"{source}: recorder.writer_processes", 0, 8)
    defaults = ScheduleConfig()
    timezone = zone(data.get("timezone", Settings.timezone), f"{source}: timezone")
    accounts = _accounts(data.get("accounts", []), source)
    alerting = alert_settings_from_mapping(data, source, timezone, [a.name for a in accounts] if accounts else None)
    return Settings(
        database_url=normalise_url(data.get("database_url", DEFAULT_DATABASE_URL), f"{source}: database_url"),
        journal_path=file_path(data.get("journal", Settings.journal_path), f"{source}: journal"),
        secret_path=file_path(data.get("secret", Settings.secret_path), f"{source}: secret"),
        reports_dir=file_path(data.get("reports_dir", Settings.reports_dir), f"{source}: reports_dir"),
        timezone=timezone,
        rate_cards_path=rate_cards,
        pricing=PricingPolicy(precision, tolerance),
        include_usage=flag(recorder.get("include_usage", False), f"{source}: recorder.include_usage"),
        writer_processes=writer_processes,
        limits_refresh_seconds=seconds(recorder.get("limits_refresh_seconds", Settings.limits_refresh_seconds),
                                       f"{source}: recorder.limits_refresh_seconds"),
        accounts=accounts,
        schedule=ScheduleConfig(
            **{
                name: seconds(schedule.get(name, getattr(defaults, name)), f"{source}: schedule.{name}",
                              allow_zero=name == "reconcile_settle_seconds")
                for name in SCHEDULE_SETTINGS
            }
        ),
        reconcile=ReconcileConfig(
            rounding,
            seconds(reconcile.get("billing_settle_seconds", ReconcileConfig.billing_settle_seconds),
                    f"{source}: reconcile.billing_settle_seconds", allow_zero=True),
        ),
        reports=parse_report_entries(data.get("reports", []), source, timezone, [c.name for c in alerting.channels]),
        alerting=alerting,
        proxy=parse_proxy(data.get("proxy", {}), source),
    )


def load_settings(config_path: str | None = None, database_url: str | None = None) -> Settings:
    """Settings for a command: the config file, then the environment, then the flags."""
    explicit = config_path or os.environ.get(ENV_CONFIG)
    path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    data: dict = {}
    if explicit or path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except ValueError:  # tomllib's int() of a number past 4,300 digits
            raise ConfigError(f"config file {path} holds a number too long to be a setting") from None
        except RecursionError:
            raise ConfigError(f"config file {path} nests arrays or tables too deep to be a config") from None
    settings = settings_from_mapping(data, str(path))
    if data:
        settings = replace(settings, config_path=str(path))
    env_url = os.environ.get(ENV_DATABASE_URL)
    if env_url:
        settings = settings.with_database_url(env_url)
    return settings.with_database_url(database_url)
