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
from .checks import check_keys, env_name, listing, refuse, required, shown, table, text, unique

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8788


OIDC_SETTINGS = frozenset({"issuer", "client_id", "client_secret_env", "scope", "name_claim", "groups_claim",
                           "admin_groups", "finance_groups", "viewer_groups", "project_groups"})
MAX_PROJECT = 200  # the longest project name a user, token or project group may be limited to


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """`[dashboard.oidc]`: sign-in through an OpenID Connect provider, its groups claim mapped to roles."""

    issuer: str
    client_id: str
    client_secret_env: str  # the variable holding the client secret (never the secret in the file)
    scope: str = "openid profile email"
    name_claim: str = "preferred_username"
    groups_claim: str = "groups"
    admin_groups: tuple[str, ...] = ()
    finance_groups: tuple[str, ...] = ()
    viewer_groups: tuple[str, ...] = ()
    # (group, its projects): a member of no role's group but of these is a viewer of their projects only
    project_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def role_of(self, groups) -> str | None:
        """The highest role one of `groups` gives (admin, then finance, then viewer), else None."""
        found = set(groups)
        for role, named in (("admin", self.admin_groups), ("finance", self.finance_groups),
                            ("viewer", self.viewer_groups)):
            if found & set(named):
                return role
        return None

    def access_of(self, groups) -> tuple[str, frozenset[str] | None] | None:
        """(role, projects) that `groups` give: a role's group sees every project (None); failing one, the projects
        of every project group the user is in, as a viewer; None when they give nothing."""
        found = set(groups)
        role = self.role_of(found)
        if role is not None:
            return role, None
        projects = frozenset(p for group, named in self.project_groups if group in found for p in named)
        return ("viewer", projects) if projects else None


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
    oidc: OidcSettings | None = None  # [dashboard.oidc]: single sign-on besides the dashboard's own users

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


def parse_oidc(raw: Any, source: str) -> OidcSettings | None:
    """`[dashboard.oidc]`, or None when absent."""
    if raw is None:
        return None
    where = f"{source}: [dashboard.oidc]"
    item = table(raw, where)
    check_keys(item, OIDC_SETTINGS, where)
    issuer = public_url(required(item, "issuer", where, "the provider's issuer URL"), f"{where} issuer")
    client_id = text(required(item, "client_id", where, "the dashboard's client id at the provider"), f"{where} client_id")
    secret_env = env_name(required(item, "client_secret_env", where, "the variable holding the client secret"),
                          f"{where} client_secret_env")
    options = {key: text(item[key], f"{where} {key}") for key in ("scope", "name_claim", "groups_claim") if key in item}
    groups = {}
    for key in ("admin_groups", "finance_groups", "viewer_groups"):
        if key in item:
            groups[key] = tuple(text(g, f"{where} {key}") for g in listing(item[key], f"{where} {key}", "group names"))
    if "project_groups" in item:
        groups["project_groups"] = project_groups(item["project_groups"], f"{where} project_groups")
    if not any(groups.values()):
        raise ConfigError(f"{where}: name the groups of at least one role (admin_groups, finance_groups, viewer_groups) "
                          "or project_groups")
    return OidcSettings(issuer, client_id, secret_env, **options, **groups)


def project_groups(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`project_groups = { "team-search" = ["search"] }`: each group and the projects its members may see."""
    found = []
    for group, projects in table(value, where).items():
        at = f"{where} {group[:60]!r}"
        named = tuple(text(p, at, width=MAX_PROJECT) for p in listing(projects, at, "project names"))
        if not named:
            raise ConfigError(f"{at}: name at least one project")
        found.append((group, named))
    return tuple(found)
