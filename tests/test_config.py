from dataclasses import replace
from decimal import Decimal

import pytest

from ledger.config import load_settings, settings_from_mapping
from ledger.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "credit-ledger.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CREDIT_LEDGER_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite:///ledger.db"
    assert settings.pricing.charge_precision == Decimal("0.01")
    assert settings.pricing.tolerance == Decimal("0.005")


def test_file_then_environment_then_flag(tmp_path, monkeypatch):
    path = write(tmp_path, 'database_url = "sqlite:///from-file.db"\n[pricing]\ncharge_precision = "0.001"\n')
    monkeypatch.delenv("CREDIT_LEDGER_DATABASE_URL", raising=False)
    assert load_settings(path).database_url == "sqlite:///from-file.db"
    assert load_settings(path).pricing.tolerance == Decimal("0.0005")
    monkeypatch.setenv("CREDIT_LEDGER_DATABASE_URL", "sqlite:///from-env.db")
    assert load_settings(path).database_url == "sqlite:///from-env.db"
    assert load_settings(path, "postgresql://h/db").database_url == "postgresql+psycopg://h/db"


def test_accounts_with_keys_by_environment(tmp_path):
    path = write(
        tmp_path,
        '[[accounts]]\nname = "prod"\nbase_url = "http://127.0.0.1:1/v1/"\nkeys = [{env = "K1", label = "a"}, {key = "sk-x"}]\n',
    )
    (account,) = load_settings(path).accounts
    assert account.base_url == "http://127.0.0.1:1/v1"
    assert [k.label for k in account.keys] == ["a", "prod-2"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("database_url = [", "not valid TOML"),
        ('databse_url = "x"', "unknown setting 'databse_url'"),
        ('database_url = "mysql://x"', "unsupported database"),
        ('[pricing]\ncharge_precision = "abc"', "must be a number in the digits 0-9"),
        ("[pricing]\ncharge_precision = 0", "charge_precision: must be a number above 0"),
        ('[recorder]\ninclude_usage = "yes"', "include_usage: must be true or false"),
        ("[recorder]\nwriter_processes = 9", "from 0 to 8"),
        ("[recorder]\nwriter_processes = -1", "from 0 to 8"),
        ('[recorder]\nwriter_processes = "2"', "from 0 to 8"),
        ("[schedule]\npoll_credits_seconds = -1", "seconds above 0 and at most"),
        ('[schedule]\nreconcile_settle_seconds = "soon"', "reconcile_settle_seconds: must be a number of seconds from 0"),
        ('[[accounts]]\nname = "a"\nkeys = [{key = "pk-1"}]', "starts with sk-"),
        ('[[accounts]]\nname = "a"\nkeys = []', "has no keys"),
        ('[[accounts]]\nname = "a"\nkeys = [{env = "A", key = "sk-1"}]', "exactly one"),
    ],
)
def test_a_bad_config_says_what_is_wrong_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(write(tmp_path, text))
    assert "\n" not in str(raised.value)


def test_the_reconcile_settle_time_may_be_zero(tmp_path):
    settings = load_settings(write(tmp_path, "[schedule]\nreconcile_settle_seconds = 0"))
    assert settings.schedule.reconcile_settle_seconds == 0.0
    assert load_settings(write(tmp_path, "")).schedule.reconcile_settle_seconds == 120.0


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "nope.toml"))


def test_the_recorders_writer_processes_are_a_setting(tmp_path):
    from ledger.record.recorder import Recorder
    from ledger.sink.writer import LedgerWriter
    from ledger.sink.processes import ProcessWriter

    assert settings_from_mapping({}).writer_processes == 2
    settings = settings_from_mapping({"recorder": {"writer_processes": 0}, "secret": str(tmp_path / "secret"),
                                      "database_url": f"sqlite:///{tmp_path / 'ledger.db'}",
                                      "journal": str(tmp_path / "journal")})
    rec = Recorder(settings=settings)
    try:
        assert isinstance(rec.sink._writer, LedgerWriter)
    finally:
        rec.close()
    rec = Recorder(settings=replace(settings, writer_processes=1))
    try:
        assert isinstance(rec.sink._writer, ProcessWriter) and rec.sink._writer.processes == 1
    finally:
        rec.close()



from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ledger.accounting.pricing import rate_book_from_mapping  # noqa: E402
from ledger.errors import RateCardError  # noqa: E402

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.text(max_size=12)
    | st.decimals(allow_nan=True, allow_infinity=True) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_SETTINGS = {
    "database_url": None, "journal": None, "timezone": None, "reports_dir": None,
    "pricing": ("charge_precision", "tolerance", "rate_cards"), "recorder": ("include_usage", "writer_processes"),
    "schedule": ("poll_credits_seconds", "reconcile_seconds", "reconcile_settle_seconds"),
    "reconcile": ("rounding", "billing_settle_seconds"), "accounts": None,
}


@given(st.sampled_from(sorted(_SETTINGS)), _values, st.data())
def test_any_value_of_any_setting_is_accepted_or_refused_in_one_line(section, value, data):
    names = _SETTINGS[section]
    mapping = {section: value} if names is None else {section: {data.draw(st.sampled_from(names)): value}}
    try:
        settings_from_mapping(mapping)
    except ConfigError as error:
        assert str(error) and "\n" not in str(error)


@given(st.dictionaries(st.sampled_from(["name", "effective_from", "usd_per_credit", "rates", "other"]), _values, max_size=5))
def test_any_rate_card_is_accepted_or_refused_in_one_line(card):
    try:
        book = rate_book_from_mapping({"card": [card]}, "cards.toml")
    except RateCardError as error:
        assert str(error) and "\n" not in str(error)
    else:
        for rate in book.cards[0].rates.values():
            assert isinstance(rate.input_per_million, Decimal) and 0 <= rate.input_per_million <= 1_000_000


_ENTRIES = {  # a good entry of each list section, and the settings it takes
    "budgets": ({"name": "b", "limit": "5"}, ("name", "scope", "period", "timezone", "limit", "limit_usd", "thresholds",
                                                "forecast", "enforce", "channels")),
    "balance_alerts": ({"account": "a", "below": "5"}, ("account", "below", "runway_days", "channels")),
    "channels": ({"name": "m", "kind": "email", "host": "h", "from": "a@b", "to": "c@d"},
                 ("name", "kind", "host", "port", "security", "username", "password_env", "from", "to", "ca_file", "timeout")),
    "reports": ({"name": "r"}, ("name", "period", "timezone", "schedule", "formats", "by", "close", "calls", "output_dir",
                                "account", "channels")),
    "accounts": ({"name": "a", "keys": [{"env": "K"}]}, ("name", "base_url", "keys")),
}
_PROXY = ("upstream", "host", "port", "workers", "max_body_bytes", "connect_timeout", "read_timeout", "shutdown_seconds",
          "max_connections", "allowed_hosts", "keys")


@given(st.sampled_from(sorted(_ENTRIES) + ["proxy"]), _values, st.data())
def test_any_value_of_any_entrys_setting_is_accepted_or_refused_in_one_line(section, value, data):
    if section == "proxy":
        mapping = {"proxy": {data.draw(st.sampled_from(_PROXY)): value}}
    else:
        entry, names = _ENTRIES[section]
        mapping = {section: [{**entry, data.draw(st.sampled_from(names)): value}]}
    try:
        settings_from_mapping(mapping)
    except ConfigError as error:
        assert str(error) and str(error).isprintable()
