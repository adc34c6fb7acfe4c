import hashlib
import hmac
import stat

import pytest

from ledger.errors import ConfigError
from ledger.keys import bearer_key, fingerprint, last4, load_secret


def test_fingerprint_is_keyed_and_never_the_key():
    key = "sk-live-0123456789abcdef"
    one, two = fingerprint(key, b"a" * 32), fingerprint(key, b"b" * 32)
    assert one != two and key not in one
    assert one == hmac.new(b"a" * 32, key.encode(), hashlib.sha256).hexdigest()[:32]
    assert one != hashlib.sha256(key.encode()).hexdigest()[:32]  # the platform's unkeyed hash cannot be matched
    assert last4(key) == "cdef"


def test_the_secret_file_is_made_once_readable_only_by_its_owner(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDIT_LEDGER_FINGERPRINT_SECRET")
    path = tmp_path / "credit-ledger.secret"
    first = load_secret(path)
    assert load_secret(path) == first and len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_short_secret_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("CREDIT_LEDGER_FINGERPRINT_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        load_secret()


def test_bearer_key():
    assert bearer_key("Bearer sk-1") == "sk-1"
    assert bearer_key("bearer  sk-1 ") == "sk-1"
    assert bearer_key("Basic abc") is None and bearer_key(None) is None
