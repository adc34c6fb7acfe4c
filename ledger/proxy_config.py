"""The recording proxy's settings, the `[proxy]` table and its `[[proxy.keys]]`, checked when the config is read (no I/O).

A proxy key is a team's own `sk-…` key for the proxy: the config holds only
its keyed fingerprint (or the name of the variable that holds it), and the
name of the variable that holds the upstream key it stands for, never a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .config_checks import base_url, check_keys, env_name, host, seconds, shown, text, unique, whole
from .errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
MAX_WORKERS = 64
MAX_TIMEOUT_SECONDS = 24 * 3600
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")  # ledger.keys.fingerprint: 32 hex digits
_KEY_FIELDS = {"name", "fingerprint", "key_env", "upstream_key_env", "project"}
PROXY_SETTINGS = {"upstream", "host", "port", "workers", "max_body_bytes", "connect_timeout", "read_timeout",
                  "shutdown_seconds", "max_connections", "allowed_hosts", "keys", "header_timeout", "idle_timeout",
                  "max_client_connections", "max_header_bytes", "max_header_line_bytes", "max_headers"}


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


# The shared checks (ledger.config_checks) under the names the [proxy] settings use.
check_upstream = base_url  # also `--upstream` and $AIVIDEO_BASE_URL
_int = whole


def _seconds(value: Any, where: str) -> float:
    return seconds(value, where, high=MAX_TIMEOUT_SECONDS)


def _keys(raw: Any, source: str) -> tuple[ProxyKey, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: proxy.keys must be [[proxy.keys]] tables")
    found: list[ProxyKey] = []
    for i, item in enumerate(raw, 1):
        where = f"{source}: proxy.keys #{i}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table")
        check_keys(item, _KEY_FIELDS, where)
        name = text(item.get("name"), f"{where} name", width=100)
        where = f"{source}: proxy key {name!r}"
        if ("fingerprint" in item) == ("key_env" in item):
            raise ConfigError(f"{where}: give exactly one of fingerprint (from `credit-ledger proxy --fingerprint`) "
                              "or key_env (a variable holding the proxy key)")
        fingerprint = item.get("fingerprint")
        if fingerprint is not None and (not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint)):
            raise ConfigError(f"{where}: fingerprint must be the 32 hex digits `credit-ledger proxy --fingerprint` prints"
                              + (" (a key is never written here)" if isinstance(fingerprint, str) and "sk-" in fingerprint else ""))
        key_env = env_name(item["key_env"], f"{where} key_env") if "key_env" in item else None
        if "upstream_key_env" not in item:
            raise ConfigError(f"{where}: upstream_key_env (the variable holding the API key it stands for) is required")
        upstream_key_env = env_name(item["upstream_key_env"], f"{where} upstream_key_env")
        project = text(item["project"], f"{where} project") if "project" in item else None  # calls.project
        found.append(ProxyKey(name, upstream_key_env, fingerprint, key_env, project))
    unique((key.name for key in found), f"{source}: [[proxy.keys]]", "the proxy key")
    prints = [key.fingerprint for key in found if key.fingerprint]
    if len(set(prints)) != len(prints):  # not named: a fingerprint is not for messages
        raise ConfigError(f"{source}: two proxy keys share a fingerprint")
    return tuple(found)


def parse_proxy(raw: Any, source: str) -> ProxySettings:
    """The `[proxy]` table; every value checked for its type and range."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [proxy] must be a table")
    check_keys(raw, PROXY_SETTINGS, f"{source}: [proxy]")
    defaults = ProxySettings()
    hosts = raw.get("allowed_hosts", [])
    if not isinstance(hosts, list):
        raise ConfigError(f"{source}: proxy.allowed_hosts must be a list of host names (\"*\": any), got {shown(hosts)}")
    hosts = [h if h == "*" else host(h, f"{source}: proxy.allowed_hosts").lower() for h in hosts]
    unique(hosts, f"{source}: proxy.allowed_hosts", "the host")
    return ProxySettings(
        upstream=base_url(raw["upstream"], f"{source}: proxy.upstream") if "upstream" in raw else None,
        host=host(raw.get("host", defaults.host), f"{source}: proxy.host"),
        port=_int(raw.get("port", defaults.port), f"{source}: proxy.port", 0, 65535),
        workers=_int(raw.get("workers", defaults.workers), f"{source}: proxy.workers", 1, MAX_WORKERS),
        max_body_bytes=_int(raw.get("max_body_bytes", defaults.max_body_bytes), f"{source}: proxy.max_body_bytes",
                            1024, 1024**3),
        connect_timeout=_seconds(raw.get("connect_timeout", defaults.connect_timeout), f"{source}: proxy.connect_timeout"),
        read_timeout=_seconds(raw.get("read_timeout", defaults.read_timeout), f"{source}: proxy.read_timeout"),
        shutdown_seconds=_seconds(raw.get("shutdown_seconds", defaults.shutdown_seconds), f"{source}: proxy.shutdown_seconds"),
        max_connections=_int(raw.get("max_connections", defaults.max_connections), f"{source}: proxy.max_connections",
                             1, 100_000),
        allowed_hosts=tuple(hosts),
        keys=_keys(raw.get("keys", []), source),
        header_timeout=_seconds(raw.get("header_timeout", defaults.header_timeout), f"{source}: proxy.header_timeout"),
        idle_timeout=_seconds(raw.get("idle_timeout", defaults.idle_timeout), f"{source}: proxy.idle_timeout"),
        max_client_connections=_int(raw.get("max_client_connections", defaults.max_client_connections),
                                    f"{source}: proxy.max_client_connections", 1, 1_000_000),
        max_header_bytes=_int(raw.get("max_header_bytes", defaults.max_header_bytes), f"{source}: proxy.max_header_bytes",
                              1024, 1024**2),
        max_header_line_bytes=_int(raw.get("max_header_line_bytes", defaults.max_header_line_bytes),
                                   f"{source}: proxy.max_header_line_bytes", 256, 1024**2),
        max_headers=_int(raw.get("max_headers", defaults.max_headers), f"{source}: proxy.max_headers", 8, 10_000),
    )
