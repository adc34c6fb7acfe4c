"""Settings: frozen values, and the table of every single-valued setting that the config file's sections are read by.

Each row of SETTINGS names a setting (its section, its name in the file), the
check of its kind (ledger.config.checks) and the field it fills; a default is
the field's own. The sections of many entries ([[accounts]], [[reports]],
[[budgets]], [[balance_alerts]], [[channels]], [[proxy.keys]]) have readers
of their own that use the same checks. `accepted_settings()` is what the
loader takes, section by section (a test holds the README to it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any, Callable

from ..accounting.budgets import SCOPE_KEYS, BalanceAlert, Budget
from ..accounting.pricing import PricingPolicy
from ..accounting.reconcile import DEFAULT_BILLING_SETTLE_SECONDS, DEFAULT_ROUNDING, ROUNDING_RULES
from ..errors import ConfigError
from ..keys import fingerprint, last4
from .accounts import ACCOUNT_SETTINGS, KEY_SETTINGS, AccountConfig, default_accounts, parse_accounts
from .alerts import (BALANCE_SETTINGS, BUDGET_SETTINGS, CHANNEL_SETTINGS, AlertSettings, ChannelConfig,
                     alert_settings_from_mapping)
from .checks import (PATH_WIDTH, base_url, check_keys, choice, decimal_setting, file_path, flag, host, seconds, shown,
                     table, text, whole, zone)
from .dashboard import OIDC_SETTINGS, DashboardSettings, parse_oidc, public_url, trusted_proxies
from .proxy import (MAX_TIMEOUT_SECONDS, MAX_WORKERS, PROXY_KEY_SETTINGS, ProxySettings, allowed_hosts,
                    parse_proxy_keys)
from .reports import REPORT_SETTINGS, ReportEntry, parse_report_entries

DEFAULT_DATABASE_URL = "sqlite:///ledger.db"


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
    rounding: str = DEFAULT_ROUNDING  # how the platform rounds its integer figures: floor, ceil, half or any
    billing_settle_seconds: float = DEFAULT_BILLING_SETTLE_SECONDS  # how long after a call's end it may book its charge


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
    reports: tuple[ReportEntry, ...] = ()  # [[reports]]: scheduled reports (ledger.config.reports)
    alerting: AlertSettings = AlertSettings()  # [[budgets]], [[balance_alerts]], [[channels]] (ledger.config.alerts)
    proxy: ProxySettings = ProxySettings()  # [proxy] and [[proxy.keys]]: the recording proxy (ledger.config.proxy)
    retention_calls_days: int | None = None  # [retention] calls_days: raw calls of closed periods kept N days; None: all
    dashboard: DashboardSettings = DashboardSettings()  # [dashboard]: the dashboard (ledger.config.dashboard)
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


# ---------------------------------------------------------------- the table

_OWN_DEFAULT = object()  # the row's default is its field's default


@dataclass(frozen=True, slots=True)
class Setting:
    """One single-valued setting: `[section] name = value`, checked by `check(value, where)` into `field`."""

    section: str  # "" for the top level
    name: str
    check: Callable[[Any, str], Any]
    field: str = ""  # the field it fills, when not named as the setting is
    default: Any = _OWN_DEFAULT  # where it is not its field's default (None: unset unless the file gives it)

    @property
    def qualified(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def _whole(low: int, high: int) -> Callable[[Any, str], int]:
    return partial(whole, low=low, high=high)


_timeout = partial(seconds, high=MAX_TIMEOUT_SECONDS)
_settle = partial(seconds, allow_zero=True)

SETTINGS = (
    Setting("", "database_url", normalise_url),
    Setting("", "journal", file_path, "journal_path"),
    Setting("", "secret", file_path, "secret_path"),
    Setting("", "reports_dir", file_path),
    Setting("", "timezone", zone),
    Setting("pricing", "charge_precision", partial(decimal_setting, low=Decimal(0), high=Decimal(1), allow_zero=False)),
    Setting("pricing", "tolerance", partial(decimal_setting, low=Decimal(0), high=Decimal(1), places=10), default=None),
    Setting("pricing", "rate_cards", file_path, "rate_cards_path", default=None),
    Setting("recorder", "include_usage", flag),
    Setting("recorder", "writer_processes", _whole(0, 8)),
    Setting("recorder", "limits_refresh_seconds", seconds),
    Setting("schedule", "poll_credits_seconds", seconds),
    Setting("schedule", "reconcile_seconds", seconds),
    Setting("schedule", "replay_journal_seconds", seconds),
    Setting("schedule", "reconcile_settle_seconds", _settle),
    Setting("schedule", "budgets_seconds", seconds),
    Setting("reconcile", "rounding", partial(choice, choices=ROUNDING_RULES)),
    Setting("reconcile", "billing_settle_seconds", _settle),
    Setting("proxy", "upstream", base_url),
    Setting("proxy", "host", host),
    Setting("proxy", "port", _whole(0, 65535)),
    Setting("proxy", "workers", _whole(1, MAX_WORKERS)),
    Setting("proxy", "max_body_bytes", _whole(1024, 1024**3)),
    Setting("proxy", "connect_timeout", _timeout),
    Setting("proxy", "read_timeout", _timeout),
    Setting("proxy", "shutdown_seconds", _timeout),
    Setting("proxy", "max_connections", _whole(1, 100_000)),
    Setting("proxy", "allowed_hosts", allowed_hosts),
    Setting("proxy", "header_timeout", _timeout),
    Setting("proxy", "idle_timeout", _timeout),
    Setting("proxy", "max_client_connections", _whole(1, 1_000_000)),
    Setting("proxy", "max_header_bytes", _whole(1024, 1024**2)),
    Setting("proxy", "max_header_line_bytes", _whole(256, 1024**2)),
    Setting("proxy", "max_headers", _whole(8, 10_000)),
    Setting("retention", "calls_days", _whole(1, 100_000), "retention_calls_days", default=None),
    Setting("dashboard", "enabled", flag),
    Setting("dashboard", "host", host),
    Setting("dashboard", "port", _whole(0, 65535)),
    Setting("dashboard", "public_url", public_url, default=None),
    Setting("dashboard", "session_idle_seconds", seconds),
    Setting("dashboard", "session_absolute_seconds", seconds),
    Setting("dashboard", "signin_max_failures", _whole(1, 1000)),
    Setting("dashboard", "signin_max_failures_per_address", _whole(1, 100_000)),
    Setting("dashboard", "signin_window_seconds", seconds),
    Setting("dashboard", "trusted_proxies", trusted_proxies),
)
# Where each section's fields and defaults are (pricing's rate_cards fills Settings.rate_cards_path: its row gives its default).
_OWNERS = {"": Settings(), "pricing": PricingPolicy(), "recorder": Settings(), "schedule": ScheduleConfig(),
           "reconcile": ReconcileConfig(), "proxy": ProxySettings(), "retention": Settings(),
           "dashboard": DashboardSettings()}
# The sections of many entries, and the tables within an entry or a section, with the settings of each.
_LISTS = {"accounts": ACCOUNT_SETTINGS, "reports": REPORT_SETTINGS, "budgets": BUDGET_SETTINGS,
          "balance_alerts": BALANCE_SETTINGS, "channels": frozenset().union(*CHANNEL_SETTINGS.values())}
_INNER = {"accounts.keys": KEY_SETTINGS, "budgets.scope": frozenset(SCOPE_KEYS), "proxy.keys": PROXY_KEY_SETTINGS,
          "dashboard.oidc": OIDC_SETTINGS}


def accepted_settings() -> dict[str, frozenset[str]]:
    """Every setting the loader takes, by section: `""` (the top level), `pricing`, …, `accounts`, `accounts.keys`, …

    A table inside a section (`keys` of an account, `scope` of a budget) is a
    setting of its section and a section of its own; the top level's sections
    are not settings of it.
    """
    found: dict[str, set[str]] = {section: set() for section in _OWNERS}
    for row in SETTINGS:
        found[row.section].add(row.name)
    found["proxy"].add("keys")
    found["dashboard"].add("oidc")
    return {section: frozenset(names) for section, names in (found | _LISTS | _INNER).items()}


def setting(section: str, name: str) -> Setting:
    """One row of the table: a command-line flag that stands for a setting is checked by the setting's own check."""
    return next(row for row in SETTINGS if (row.section, row.name) == (section, name))


def _read_section(data: dict, section: str, source: str) -> dict[str, Any]:
    """The checked value of every row of `section`, by field; a setting the file leaves out has its field's default."""
    values = data if not section else table(data.get(section, {}), f"{source}: [{section}]")
    names = accepted_settings()[section]
    if not section:  # the top level names the sections too
        names |= (set(_OWNERS) - {""}) | set(_LISTS)
    check_keys(values, names, f"{source}: [{section}]" if section else source)
    owner, found = _OWNERS[section], {}
    for row in (row for row in SETTINGS if row.section == section):
        field = row.field or row.name
        if row.name in values:
            found[field] = row.check(values[row.name], f"{source}: {row.qualified}")
        else:
            found[field] = getattr(owner, field) if row.default is _OWN_DEFAULT else row.default
    return found


def settings_from_mapping(data: dict, source: str = "config") -> Settings:
    """Settings from a parsed config file, every value checked; ConfigError naming the first bad one."""
    top, pricing, recorder, schedule, reconcile, proxy, retention, dashboard = (
        _read_section(data, section, source)
        for section in ("", "pricing", "recorder", "schedule", "reconcile", "proxy", "retention", "dashboard"))
    precision = pricing["charge_precision"]
    tolerance = pricing["tolerance"] if pricing["tolerance"] is not None else precision / 2
    accounts = parse_accounts(data.get("accounts", []), source)
    alerting = alert_settings_from_mapping(data, source, top["timezone"], [a.name for a in accounts] if accounts else None)
    return Settings(
        **top, **recorder, **retention, rate_cards_path=pricing["rate_cards_path"], pricing=PricingPolicy(precision, tolerance),
        accounts=accounts, schedule=ScheduleConfig(**schedule), reconcile=ReconcileConfig(**reconcile),
        reports=parse_report_entries(data.get("reports", []), source, top["timezone"], [c.name for c in alerting.channels]),
        alerting=alerting,
        proxy=ProxySettings(**proxy, keys=parse_proxy_keys(data.get("proxy", {}).get("keys", []), source)),
        dashboard=DashboardSettings(**dashboard, oidc=parse_oidc(data.get("dashboard", {}).get("oidc"), source)),
    )


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
