"""The recording proxy's settings: their values (`[proxy]`, read by ledger.config.settings' table) and `[[proxy.keys]]`.

A proxy key is a team's own `sk-…` key for the proxy: the config holds only
its keyed fingerprint (or the name of the variable that holds it), and the
name of the variable that holds the upstream key it stands for, never a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .checks import (NAME_WIDTH, base_url, check_keys, env_name, exactly_one, host, listing, required, tables, text,
                     unique)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
MAX_WORKERS = 64
MAX_TIMEOUT_SECONDS = 24 * 3600
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")  # ledger.keys.fingerprint: 32 hex digits
PROXY_KEY_SETTINGS = frozenset({"name", "fingerprint", "key_env", "upstream_key_env", "project"})


@dataclass(frozen=True, slots=True)
class ProxyKey:
    """A team's proxy key: known by its fingerprint (or read from `key_env` at start), mapped to an upstream key and a project."""

    name: str
    upstream_key_env: str
    fingerprint: str | None = None
    key_env: str | None = None
    project: str | None = None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    upstream: str | None = None  # None: $AIVIDEO_BASE_URL, else the real base URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    max_body_bytes: int = 32 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 600.0  # a non-streaming answer comes whole, after the model has finished
    shutdown_seconds: float = 30.0  # how long SIGTERM waits for the calls in flight
    max_connections: int = 512  # to the upstream, per worker
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback and the bound host; "*": any
    keys: tuple[ProxyKey, ...] = ()
    # A client's side (per worker): how long a request's head may take, how long a connection may say nothing,
    # how many connections are served at once, and how large a request's head may be.
    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_client_connections: int = 1000
    max_header_bytes: int = 32 * 1024  # the request line and every header, together
    max_header_line_bytes: int = 8 * 1024  # the request line, or one header's name and value
    max_headers: int = 100


check_upstream = base_url  # `--upstream` and $AIVIDEO_BASE_URL are checked as the config's upstream is


def allowed_hosts(value: Any, where: str) -> tuple[str, ...]:
    """`allowed_hosts`: host names in lower case, "*" for any, none twice."""
    hosts = [h if h == "*" else host(h, where).lower() for h in listing(value, where, "host names (\"*\": any)")]
    unique(hosts, where, "the host")
    return tuple(hosts)


def parse_proxy_keys(raw: Any, source: str) -> tuple[ProxyKey, ...]:
    """The `[[proxy.keys]]` tables: a fingerprint (or the variable holding the key) and the upstream key's variable."""
    found: list[ProxyKey] = []
    for i, item in enumerate(tables(raw, f"{source}: proxy.keys", "[[proxy.keys]] tables"), 1):
        check_keys(item, PROXY_KEY_SETTINGS, f"{source}: proxy.keys #{i}")
        name = text(item.get("name"), f"{source}: proxy.keys #{i} name", width=NAME_WIDTH)
        where = f"{source}: proxy key {name!r}"
        exactly_one(item, "fingerprint", "key_env", where,
                    "the fingerprint `credit-ledger proxy --fingerprint` prints, or a variable holding the proxy key")
        fingerprint = item.get("fingerprint")
        if fingerprint is not None and (not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint)):
            raise ConfigError(f"{where}: fingerprint must be the 32 hex digits `credit-ledger proxy --fingerprint` prints"
                              + (" (a key is never written here)" if isinstance(fingerprint, str) and "sk-" in fingerprint else ""))
        key_env = env_name(item["key_env"], f"{where} key_env") if "key_env" in item else None
        upstream_key_env = env_name(required(item, "upstream_key_env", where, "the variable holding the API key it stands for"),
                                    f"{where} upstream_key_env")
        project = text(item["project"], f"{where} project") if "project" in item else None  # calls.project
        found.append(ProxyKey(name, upstream_key_env, fingerprint, key_env, project))
    unique((key.name for key in found), f"{source}: [[proxy.keys]]", "the proxy key")
    prints = [key.fingerprint for key in found if key.fingerprint]
    if len(set(prints)) != len(prints):  # not named: a fingerprint is not for messages
        raise ConfigError(f"{source}: two proxy keys share a fingerprint")
    return tuple(found)
