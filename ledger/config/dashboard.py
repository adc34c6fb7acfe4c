"""The dashboard's settings (`[dashboard]`, read by ledger.config.settings' table): where it listens, how long a
session lasts, how many failed sign-ins a name or an address gets, and which proxies it believes.

A proxy in `trusted_proxies` may say (X-Forwarded-Proto, X-Forwarded-For) that
the request came over https, from another address: then the cookies are
Secure and the sign-in limits count that address. Nobody else may.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .checks import listing, refuse, shown, text, unique

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8788


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    enabled: bool = False  # `credit-ledger run` serves it too
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str | None = None  # where people reach it (for sign-in links); None: http://host:port
    session_idle_seconds: float = 30 * 60.0  # a session ends after this long without a request
    session_absolute_seconds: float = 12 * 3600.0  # and this long after its sign-in, whatever
    signin_max_failures: int = 5  # failed sign-ins of one name within the window, then 429
    signin_max_failures_per_address: int = 20  # failed sign-ins from one address within the window, then 429
    signin_window_seconds: float = 15 * 60.0
    trusted_proxies: tuple[str, ...] = ()  # addresses (or networks) whose X-Forwarded-* headers are believed

    def url(self) -> str:
        if self.public_url:
            return self.public_url
        shown_host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown_host}:{self.port}"


def public_url(value: Any, where: str) -> str:
    """The dashboard's address as people reach it: http(s), a host, an optional path; no query or credentials."""
    found = text(value, where, width=2000, what="a URL such as https://ledger.example.com")
    try:
        parts = urlsplit(found)
        parts.port
    except ValueError:
        refuse(where, "a URL such as https://ledger.example.com", value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(ch.isspace() for ch in found):
        raise ConfigError(f"{where}: must start with http:// or https:// and name a host, got {shown(value)}")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{where}: a URL without credentials, query or fragment")
    return found.rstrip("/")


def trusted_proxies(value: Any, where: str) -> tuple[str, ...]:
    found = []
    for item in listing(value, where, "IP addresses or networks (10.0.0.0/8)"):
        try:
            found.append(str(ipaddress.ip_network(text(item, where), strict=False)))
        except ValueError:
            refuse(where, "IP addresses or networks (10.0.0.0/8)", item)
    unique(found, where, "the address")
    return tuple(found)
