"""Where the settings come from: the config file, the environment, the command line, in rising precedence.

The config file is `--config PATH`, else `$CREDIT_LEDGER_CONFIG`, else
`credit-ledger.toml` in the working directory when it exists; the database
URL is `--database-url`, else `$CREDIT_LEDGER_DATABASE_URL`, else the file's.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .. import redact
from ..errors import ConfigError
from .accounts import default_accounts
from .settings import DEFAULT_DATABASE_URL, Settings, configured_accounts, normalise_url, settings_from_mapping

ENV_CONFIG = "CREDIT_LEDGER_CONFIG"
ENV_DATABASE_URL = "CREDIT_LEDGER_DATABASE_URL"
DEFAULT_CONFIG_FILE = "credit-ledger.toml"


def database_url_from_env() -> str:
    return normalise_url(os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL)


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
    if not settings.accounts:
        default_accounts()  # $AIVIDEO_BASE_URL checked now, before a command writes anything
    if data:
        settings = replace(settings, config_path=str(path))
    env_url = os.environ.get(ENV_DATABASE_URL)
    if env_url:
        settings = settings.with_database_url(env_url)
    settings = settings.with_database_url(database_url)
    remember_secrets(settings)
    return settings


def remember_secrets(settings: Settings) -> None:
    """Every secret the settings name (account keys, proxy keys and the upstream keys they stand for, channel
    URLs, secrets and passwords), as the environment holds it now: redacted by value from every text from here on."""
    names: set[str | None] = set()
    for account in configured_accounts(settings):
        for key in account.keys:
            names.add(key.env)
            redact.remember(key.key)
    for channel in settings.channels:
        names.update(channel.env_names())
    for proxy_key in settings.proxy.keys:
        names.update((proxy_key.upstream_key_env, proxy_key.key_env))
    for name in names:
        if name:
            redact.remember(os.environ.get(name, "").strip())
    redact.remember(database_password(settings.database_url))


def database_password(url: str) -> str | None:
    """The password a database URL holds (postgresql://user:PASSWORD@host/db), as the server reads it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None
