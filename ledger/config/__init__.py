"""Settings declared as data, each kind of value checked once; frozen values out (no database or HTTP library).

    checks.py     every kind of value checked once: numbers, seconds, texts, names, zones, hosts, URLs, shapes
    settings.py   Settings, and the table of single-valued settings ([recorder], [schedule], [proxy], …)
    accounts.py   [[accounts]] and their keys
    alerts.py     [[budgets]], [[balance_alerts]], [[channels]]
    reports.py    [[reports]] and their cron schedules
    proxy.py      the proxy's settings and [[proxy.keys]]
    loading.py    the file, the environment and the flags, in that order of precedence

A bad value is one ConfigError naming the setting when the file is read, never
a failure later in a job. API keys are named (by environment variable), never
written to the database.
"""

from .accounts import DEFAULT_BASE_URL, AccountConfig, KeyConfig, default_accounts
from .loading import DEFAULT_CONFIG_FILE, ENV_CONFIG, ENV_DATABASE_URL, database_url_from_env, load_settings
from .settings import (DEFAULT_DATABASE_URL, SETTINGS, ReconcileConfig, ScheduleConfig, Setting, Settings,
                       accepted_settings, configured_accounts, configured_keys, normalise_url, setting,
                       settings_from_mapping)

__all__ = [
    "DEFAULT_BASE_URL", "DEFAULT_CONFIG_FILE", "DEFAULT_DATABASE_URL", "ENV_CONFIG", "ENV_DATABASE_URL", "SETTINGS",
    "AccountConfig", "KeyConfig", "ReconcileConfig", "ScheduleConfig", "Setting", "Settings", "accepted_settings",
    "configured_accounts", "configured_keys", "database_url_from_env", "default_accounts", "load_settings",
    "normalise_url", "setting", "settings_from_mapping",
]
