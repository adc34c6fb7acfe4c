"""The `[[accounts]]` section: prepaid balances and the keys that draw on them, checked when the config is read.

A key is named by the environment variable that holds it (or, for a test, given
as `key`); its value is read when the service polls with it, never stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .checks import base_url, check_keys, env_name, environment_value, exactly_one, tables, text, unique

DEFAULT_BASE_URL = "https://api.aivideoapi.ai/v1"
ACCOUNT_SETTINGS = frozenset({"name", "base_url", "keys"})
KEY_SETTINGS = frozenset({"label", "env", "key"})


@dataclass(frozen=True)
class KeyConfig:
    """A key the service polls with: its value comes from `env` or `key`."""

    label: str
    env: str | None = None
    key: str | None = field(default=None, repr=False)

    def value(self) -> str:
        if self.key:
            return self.key
        return environment_value(os.environ, self.env, f"key {self.label!r}", "the API key")


@dataclass(frozen=True)
class AccountConfig:
    """One prepaid balance; several keys may draw on it."""

    name: str
    base_url: str = DEFAULT_BASE_URL
    keys: tuple[KeyConfig, ...] = ()


def _key(item: dict, where: str, account: str, number: int) -> KeyConfig:
    check_keys(item, KEY_SETTINGS, where)
    exactly_one(item, "env", "key", where, "env: the variable that holds the key")
    env = env_name(item["env"], f"{where} env") if "env" in item else None
    value = text(item["key"], f"{where} key", secret=True) if "key" in item else None
    if value is not None and not value.startswith("sk-"):
        raise ConfigError(f"{where}: a key starts with sk-")
    label = text(item["label"], f"{where} label") if "label" in item else env or f"{account}-{number}"  # api_keys.label
    return KeyConfig(label, env, value)


def parse_accounts(raw: Any, source: str) -> tuple[AccountConfig, ...]:
    """The `[[accounts]]` tables, every value checked."""
    accounts = []
    for i, item in enumerate(tables(raw, f"{source}: accounts", "[[accounts]] tables"), 1):
        check_keys(item, ACCOUNT_SETTINGS, f"{source}: accounts #{i}")
        name = text(item.get("name"), f"{source}: accounts #{i} name")  # balance_snapshots.account, api_keys.account
        where = f"{source}: account {name!r}"
        raw_keys = tables(item.get("keys", []), f"{where} keys", "a list of tables such as [{env = \"AIVIDEO_API_KEY\"}]")
        keys = tuple(_key(key, f"{where} key #{j}", name, j) for j, key in enumerate(raw_keys, 1))
        if not keys:
            raise ConfigError(f"{where} has no keys")
        accounts.append(AccountConfig(name, base_url(item.get("base_url", DEFAULT_BASE_URL), f"{where} base_url"), keys))
    unique((a.name for a in accounts), f"{source}: [[accounts]]", "the account")
    return tuple(accounts)


def default_accounts() -> tuple[AccountConfig, ...]:
    """With no accounts configured: one account whose key is $AIVIDEO_API_KEY, at $AIVIDEO_BASE_URL if set.

    The variable is checked as an account's base_url is (ConfigError naming it); `load_settings` does so at start.
    """
    url = base_url(os.environ.get("AIVIDEO_BASE_URL") or DEFAULT_BASE_URL, "AIVIDEO_BASE_URL")
    return (AccountConfig("default", url, (KeyConfig("AIVIDEO_API_KEY", env="AIVIDEO_API_KEY"),)),)
