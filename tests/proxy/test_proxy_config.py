"""`[proxy]` and `[[proxy.keys]]`: every value checked when the config is read, one ConfigError line naming it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.config import Settings, settings_from_mapping
from ledger.errors import ConfigError
from ledger.proxy.guard import ProxyKeys, allowed_hosts, fingerprint_of, refused_target
from ledger.config.proxy import ProxyKey, ProxySettings, check_upstream

PRINT = "0123456789abcdef0123456789abcdef"


def test_a_full_proxy_table_is_read_with_its_types():
    proxy = settings_from_mapping({"proxy": {
        "upstream": "http://10.0.0.5:8080/", "host": "0.0.0.0", "port": 9000, "workers": 4, "max_body_bytes": 2048,
        "connect_timeout": Decimal("2.5"), "read_timeout": 30, "shutdown_seconds": 10, "max_connections": 100,
        "allowed_hosts": ["Proxy.Internal"],
        "keys": [{"name": "search", "fingerprint": PRINT, "upstream_key_env": "AIVIDEO_API_KEY", "project": "search"},
                 {"name": "ml", "key_env": "ML_PROXY_KEY", "upstream_key_env": "ML_KEY"}],
    }}).proxy
    assert proxy == ProxySettings("http://10.0.0.5:8080/v1", "0.0.0.0", 9000, 4, 2048, 2.5, 30.0, 10.0, 100, ("proxy.internal",), (
        ProxyKey("search", "AIVIDEO_API_KEY", PRINT, None, "search"), ProxyKey("ml", "ML_KEY", None, "ML_PROXY_KEY", None)))
    assert settings_from_mapping({}).proxy == ProxySettings()
    client_side = settings_from_mapping({"proxy": {"header_timeout": 2, "idle_timeout": Decimal("0.5"), "max_client_connections": 50,
                                                   "max_header_bytes": 4096, "max_header_line_bytes": 1024, "max_headers": 20}}).proxy
    assert (client_side.header_timeout, client_side.idle_timeout, client_side.max_client_connections, client_side.max_header_bytes,
            client_side.max_header_line_bytes, client_side.max_headers) == (2.0, 0.5, 50, 4096, 1024, 20)


@pytest.mark.parametrize("table, message", [
    ({"port": 70000}, "proxy.port: must be a whole number from 0 to 65535"),
    ({"port": "8787"}, "proxy.port: must be a whole number"),
    ({"workers": 0}, "proxy.workers: must be a whole number from 1 to 64"),
    ({"workers": True}, "proxy.workers"),
    ({"max_body_bytes": 10}, "proxy.max_body_bytes: must be a whole number from 1024"),
    ({"read_timeout": 0}, "proxy.read_timeout: must be a number of seconds above 0"),
    ({"connect_timeout": "fast"}, "proxy.connect_timeout"),
    ({"upstream": "api.aivideoapi.ai/v1"}, "proxy.upstream: must start with http:// or https://"),
    ({"upstream": "https://api.aivideoapi.ai/v1?x=1"}, "no query, fragment or credentials"),
    ({"allowed_hosts": "proxy.internal"}, "proxy.allowed_hosts: must be a list of host names"),
    ({"speed": "max"}, "unknown setting 'speed'"),
    ({"header_timeout": 0}, "proxy.header_timeout: must be a number of seconds above 0"),
    ({"idle_timeout": float("nan")}, "proxy.idle_timeout: must be a number of seconds above 0"),
    ({"max_client_connections": 0}, "proxy.max_client_connections: must be a whole number from 1"),
    ({"max_header_bytes": 100}, "proxy.max_header_bytes: must be a whole number from 1024"),
    ({"max_header_line_bytes": 10**9}, "proxy.max_header_line_bytes: must be a whole number from 256 to 1048576"),
    ({"max_headers": 2}, "proxy.max_headers: must be a whole number from 8 to 10000"),
    ({"keys": {"name": "x"}}, "proxy.keys: must be [[proxy.keys]] tables"),
    ({"keys": [{"name": "x", "upstream_key_env": "K"}]}, "give exactly one of fingerprint"),
    ({"keys": [{"name": "x", "fingerprint": "sk-team-000000000001", "upstream_key_env": "K"}]}, "a key is never written here"),
    ({"keys": [{"name": "x", "fingerprint": PRINT}]}, "upstream_key_env is required (the variable holding the API key it stands for)"),
    ({"keys": [{"name": "x", "fingerprint": PRINT, "upstream_key_env": "sk-abc"}]}, "must be an environment variable's name"),
    ({"keys": [{"name": "x", "fingerprint": PRINT, "upstream_key_env": "K", "limit": 3}]}, "unknown setting 'limit'"),
    ({"keys": [{"name": "x", "fingerprint": PRINT, "upstream_key_env": "K"},
               {"name": "y", "fingerprint": PRINT, "upstream_key_env": "K"}]}, "two proxy keys share a fingerprint"),
])
def test_a_bad_value_is_one_config_error_naming_it(table, message):
    with pytest.raises(ConfigError) as error:
        settings_from_mapping({"proxy": table}, "credit-ledger.toml")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "sk-team-000000000001" not in str(error.value)


def test_upstream_keys_come_from_the_environment_and_are_checked_when_the_proxy_starts():
    secret = b"s" * 32
    keys = (ProxyKey("search", "UPSTREAM", fingerprint_of("sk-team-0000000001", secret), project="search"),)
    mapped = ProxyKeys(keys, secret, {"UPSTREAM": "sk-real-0000000009"})
    assert mapped.upstream_for(b"Bearer sk-team-0000000001") == (b"Bearer sk-real-0000000009", b"search")
    assert mapped.upstream_for(b"Bearer sk-team-0000000002") is None and mapped.upstream_for(None) is None
    for environ, message in (({}, "UPSTREAM (its upstream API key) is not set"), ({"UPSTREAM": "real"}, "does not hold an API key")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ProxyKeys(keys, secret, environ)


@pytest.mark.parametrize("weak", ["sk-short-1", "sk-no-digits-at-all-here", "sk-" + "é1" * 10, "sk-two words 123456"])
def test_a_weak_proxy_key_is_refused_in_one_line_where_the_proxy_first_sees_it(weak):
    secret = b"s" * 32
    with pytest.raises(ConfigError) as made:
        fingerprint_of(weak, secret)
    keys = (ProxyKey("search", "UPSTREAM", key_env="TEAM"),)
    with pytest.raises(ConfigError) as started:
        ProxyKeys(keys, secret, {"UPSTREAM": "sk-real-0000000009", "TEAM": weak})
    for error in (made.value, started.value):
        assert "at least 12 letters, digits" in str(error) and weak not in str(error) and "\n" not in str(error)


def test_what_is_refused_before_anything_is_sent():
    assert refused_target(b"/v1/chat/completions") is None
    for target in (b"http://evil.example/v1/chat/completions", b"/v1/../sim", b"/v1/%2E%2E/sim", b"/v1/a//b", b"/v1/..",
                   b"/v1/%2fetc", b"*"):
        assert refused_target(target), target
    assert allowed_hosts([], "0.0.0.0") == frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
    assert allowed_hosts(["*"], "127.0.0.1") is None
    assert check_upstream("http://127.0.0.1:8765", "x") == "http://127.0.0.1:8765/v1"


def test_the_command_lines_workers_and_port_are_held_to_the_proxy_settings_rules():
    """`--workers 65` started 65 processes where `[proxy] workers = 65` is refused: one rule for both."""
    from ledger.proxy.server import plan

    with pytest.raises(ConfigError, match=r"--workers: must be a whole number from 1 to 64, got 65"):
        plan(Settings(), host=None, port=None, upstream=None, workers=65)
    with pytest.raises(ConfigError, match=r"--port: must be a whole number from 0 to 65535, got 65536"):
        plan(Settings(), host=None, port=65536, upstream=None, workers=None)
    chosen = plan(Settings(), host=None, port=0, upstream=None, workers=64)
    assert (chosen.workers, chosen.port) == (64, 0)
