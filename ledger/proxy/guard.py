"""What the proxy refuses before anything is sent, and the proxy keys: a team's key in, the upstream key out.

The proxy forwards to its one upstream only: the upstream URL is its own base
URL and the request's path, so a request written for a forward proxy (an
absolute URL), a path that climbs out of `/v1/` (dot segments, their
percent-encoded forms, `//`), or a Host the proxy does not answer for is
refused, never followed.
"""

from __future__ import annotations

import os
from typing import Iterable
from urllib.parse import unquote_to_bytes

from .. import keys as key_facts
from ..redact import key_shaped
from ..errors import ConfigError
from ..config.checks import environment_value
from ..config.proxy import ProxyKey

# Hop-by-hop headers (RFC 9110 7.6.1) and what the proxy sets itself (Host: the upstream's; Expect: the
# proxy's own server answers it); the headers that Connection names are dropped as well.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"expect",
})
# What a client claims about its route (and any X-Forwarded-*) is not the upstream's to believe: the proxy is
# the upstream's client, and a rewrite header (X-Original-URL, a method override) would send the call elsewhere.
NOT_FORWARDED = HOP_BY_HOP | {
    b"forwarded", b"x-real-ip", b"x-client-ip", b"x-original-url", b"x-rewrite-url", b"x-original-host", b"x-host",
    b"x-http-method-override", b"x-http-method", b"x-method-override",
}
_CLIMBING = (b"/./", b"/../", b"//", b"\\", b"%2e", b"%2E", b"%2f", b"%2F", b"%5c", b"%5C")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_KEYS_KEPT = 1024  # Authorization headers remembered (each fingerprint is an HMAC)
WEAK_KEY = ("a proxy key is sk- then at least 12 letters, digits, '-' or '_', a digit among them "
            "(a shorter or digit-free one would be missed by the logs' redaction)")


def refused_target(raw_path: bytes) -> str | None:
    """Why a request target is refused, or None: an absolute URL, or a path that would leave /v1/."""
    if not raw_path.startswith(b"/"):
        return ("This proxy forwards only to its configured upstream: a request with an absolute URL "
                "(as for a forward proxy) is refused. Use the proxy as a base URL: http://HOST:PORT/v1.")
    if any(part in raw_path for part in _CLIMBING) or raw_path.endswith((b"/.", b"/..")):
        return "The request path climbs out of /v1/ (dot segments, '//' or encoded slashes): refused."
    return None


def key_in_target(key: bytes, raw_path: bytes, query: bytes) -> bool:
    """Whether a request's path or query holds `key`, as it is or percent-encoded (`sk%2D…`, `%2d`, `+` for a space)."""
    if key in query or key in raw_path:
        return True
    if b"%" not in query and b"%" not in raw_path:
        return False
    return key in unquote_to_bytes(raw_path) or key in unquote_to_bytes(query.replace(b"+", b" "))


def allowed_hosts(configured: Iterable[str], bound_host: str) -> frozenset[str] | None:
    """The Host names the proxy answers for (None: any): loopback, the address it is bound to, and the configured ones."""
    names = {name.strip("[]").lower() for name in configured}
    if "*" in names:
        return None
    return frozenset(names | LOOPBACK_HOSTS | {bound_host.strip("[]").lower()})


class ProxyKeys:
    """The configured proxy keys by fingerprint: a client's Authorization header -> (the upstream's, the project)."""

    def __init__(self, configured: Iterable[ProxyKey], secret: bytes, environ: dict | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._secret = secret
        self._by_fingerprint: dict[str, tuple[bytes, bytes | None]] = {}
        for key in configured:
            where = f"proxy key {key.name!r}"
            upstream = environment_value(environ, key.upstream_key_env, where, "its upstream API key")
            if not upstream.startswith("sk-"):
                raise ConfigError(f"proxy key {key.name!r}: {key.upstream_key_env} does not hold an API key (sk-…)")
            fingerprint = key.fingerprint
            if key.key_env is not None:
                own = environment_value(environ, key.key_env, where, "the proxy key")
                if not key_shaped(own):
                    raise ConfigError(f"proxy key {key.name!r}: environment variable {key.key_env}: {WEAK_KEY}")
                fingerprint = key_facts.fingerprint(own, secret)
            if fingerprint in self._by_fingerprint:
                raise ConfigError(f"proxy key {key.name!r}: the same key as another [[proxy.keys]] entry")
            project = key.project.encode("utf-8") if key.project is not None else None
            self._by_fingerprint[fingerprint] = (b"Bearer " + upstream.encode("latin-1"), project)
        self._seen: dict[bytes, tuple[bytes, bytes | None] | None] = {}

    def __len__(self) -> int:
        return len(self._by_fingerprint)

    @property
    def upstream_keys(self) -> frozenset[bytes]:
        """The upstream keys the proxy keys stand for: what must never go back to a client."""
        return frozenset(header.partition(b" ")[2] for header, _ in self._by_fingerprint.values())

    def upstream_for(self, authorization: bytes | None) -> tuple[bytes, bytes | None] | None:
        """(the upstream Authorization header, the key's project or None); None for a key that is not configured."""
        if authorization is None:
            return None
        seen = self._seen
        if authorization in seen:
            return seen[authorization]
        key = key_facts.bearer_key(authorization.decode("latin-1"))
        found = self._by_fingerprint.get(key_facts.fingerprint(key, self._secret)) if key else None
        if len(seen) >= _KEYS_KEPT:
            seen.clear()
        seen[authorization] = found
        return found


def fingerprint_of(proxy_key: str, secret: bytes) -> str:
    """What `[[proxy.keys]] fingerprint` holds for a proxy key."""
    proxy_key = proxy_key.strip()
    if not key_shaped(proxy_key):
        raise ConfigError(WEAK_KEY)
    return key_facts.fingerprint(proxy_key, secret)
