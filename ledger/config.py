"""Settings: frozen values from a TOML file, the environment and the command line.

Precedence: command line > environment > config file > defaults. The config
file is `--config PATH`, else `$CREDIT_LEDGER_CONFIG`, else
`credit-ledger.toml` in the working directory when it exists. API keys are
named here (or by environment variable), never written to the database.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .db import DEFAULT_DATABASE_URL, ENV_DATABASE_URL, normalise_url
from .errors import ConfigError
from .pricing import PricingPolicy

ENV_CONFIG = "CREDIT_LEDGER_CONFIG"
DEFAULT_CONFIG_FILE = "credit-ledger.toml"
DEFAULT_BASE_URL = "https://api.aivideoapi.ai/v1"


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


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    journal_path: str = "credit-ledger.journal"
    secret_path: str = "credit-ledger.secret"
    rate_cards_path: str | None = None
    pricing: PricingPolicy = PricingPolicy()
    include_usage: bool = False
    writer_processes: int = 2  # the Recorder's ledger writer processes; 0: a thread of the caller's process
    reports_dir: str = "reports"
    accounts: tuple[AccountConfig, ...] = ()
    schedule: ScheduleConfig = ScheduleConfig()
    config_path: str | None = None

    def with_database_url(self, url: str | None) -> "Settings":
        return self if not url else replace(self, database_url=normalise_url(url))


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ConfigError(f"{where}: expected a number such as \"0.01\", got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{where}: not a number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{where}: must be a number >= 0, got {value!r}")
    return amount


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)  # a duration, never money


def _not_negative(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value < 0:
        raise ConfigError(f"{where}: expected a number of seconds >= 0, got {value!r}")
    return float(value)  # a duration, never money


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _table(data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    return value


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _accounts(raw: Any) -> tuple[AccountConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("config: accounts must be [[accounts]] tables")
    accounts = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"config: accounts #{i} must be a table")
        _check_keys(item, {"name", "base_url", "keys"}, f"config: accounts #{i}")
        name = _str(item.get("name"), f"config: accounts #{i} name")
        keys = []
        for j, key in enumerate(item.get("keys", []), 1):
            where = f"config: account {name!r} key #{j}"
            if not isinstance(key, dict):
                raise ConfigError(f"{where} must be a table like {{env = \"AIVIDEO_API_KEY\"}}")
            _check_keys(key, {"label", "env", "key"}, where)
            if bool(key.get("env")) == bool(key.get("key")):
                raise ConfigError(f"{where}: give exactly one of env (a variable name) or key")
            if key.get("key") and not str(key["key"]).startswith("sk-"):
                raise ConfigError(f"{where}: a key starts with sk-")
            label = key.get("label") or key.get("env") or f"{name}-{j}"
            keys.append(KeyConfig(str(label), key.get("env"), key.get("key")))
        if not keys:
            raise ConfigError(f"config: account {name!r} has no keys")
        base_url = _str(item.get("base_url", DEFAULT_BASE_URL), f"config: account {name!r} base_url")
        accounts.append(AccountConfig(name, base_url.rstrip("/"), tuple(keys)))
    names = [a.name for a in accounts]
    if len(set(names)) != len(names):
        raise ConfigError("config: two accounts share a name")
    return tuple(accounts)


def default_accounts() -> tuple[AccountConfig, ...]:
    """With no accounts configured: one account whose key is $AIVIDEO_API_KEY."""
    base_url = os.environ.get("AIVIDEO_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
    return (AccountConfig("default", base_url, (KeyConfig("AIVIDEO_API_KEY", env="AIVIDEO_API_KEY"),)),)


def settings_from_mapping(data: dict, source: str = "config") -> Settings:
    _check_keys(data, {"database_url", "journal", "secret", "reports_dir", "pricing", "recorder", "accounts", "schedule"}, source)
    pricing = _table(data, "pricing")
    _check_keys(pricing, {"charge_precision", "tolerance", "rate_cards"}, f"{source}: [pricing]")
    recorder = _table(data, "recorder")
    _check_keys(recorder, {"include_usage", "writer_processes"}, f"{source}: [recorder]")
    schedule = _table(data, "schedule")
    _check_keys(
        schedule,
        {"poll_credits_seconds", "reconcile_seconds", "replay_journal_seconds", "reconcile_settle_seconds"},
        f"{source}: [schedule]",
    )

    precision = _decimal(pricing.get("charge_precision", "0.01"), f"{source}: pricing.charge_precision")
    if precision <= 0:
        raise ConfigError(f"{source}: pricing.charge_precision must be above 0")
    tolerance = _decimal(pricing.get("tolerance", precision / 2), f"{source}: pricing.tolerance")
    include_usage = recorder.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise ConfigError(f"{source}: recorder.include_usage must be true or false")
    writer_processes = recorder.get("writer_processes", Settings.writer_processes)
    if isinstance(writer_processes, bool) or not isinstance(writer_processes, int) or not 0 <= writer_processes <= 8:
        raise ConfigError(f"{source}: recorder.writer_processes must be a whole number from 0 to 8")
    defaults = ScheduleConfig()
    return Settings(
        database_url=normalise_url(_str(data.get("database_url", DEFAULT_DATABASE_URL), f"{source}: database_url")),
        journal_path=_str(data.get("journal", Settings.journal_path), f"{source}: journal"),
        secret_path=_str(data.get("secret", Settings.secret_path), f"{source}: secret"),
        reports_dir=_str(data.get("reports_dir", Settings.reports_dir), f"{source}: reports_dir"),
        rate_cards_path=pricing.get("rate_cards"),
        pricing=PricingPolicy(precision, tolerance),
        include_usage=include_usage,
        writer_processes=writer_processes,
        accounts=_accounts(data.get("accounts", [])),
        schedule=ScheduleConfig(
            *(
                _positive(schedule.get(name, getattr(defaults, name)), f"{source}: schedule.{name}")
                for name in ("poll_credits_seconds", "reconcile_seconds", "replay_journal_seconds")
            ),
            reconcile_settle_seconds=_not_negative(
                schedule.get("reconcile_settle_seconds", defaults.reconcile_settle_seconds),
                f"{source}: schedule.reconcile_settle_seconds",
            ),
        ),
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
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    settings = settings_from_mapping(data, str(path))
    if data:
        settings = replace(settings, config_path=str(path))
    env_url = os.environ.get(ENV_DATABASE_URL)
    if env_url:
        settings = settings.with_database_url(env_url)
    return settings.with_database_url(database_url)
