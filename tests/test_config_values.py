"""Every setting of every section against every hostile value of its kind: one ConfigError line, the value shown escaped.

The table names each setting once, with the kind of value it holds; each kind
has its hostile values (NaN, infinity, negative, huge, digits that are not
ASCII; NUL, CR/LF, bidi marks, text wider than its column; bad hosts, URLs,
zones, names, duplicates). A kind's check exists once (ledger.config.checks).
"""

from __future__ import annotations

import pytest

from ledger.config import load_settings
from ledger.config.checks import NAME_WIDTH, TEXT_WIDTH, ZONE_WIDTH
from ledger.errors import ConfigError

BUDGET = '[[budgets]]\nname = "b"\nlimit = "5"\n'
EMAIL = '[[channels]]\nname = "m"\nkind = "email"\nhost = "smtp.example"\nfrom = "a@b"\nto = "c@d"\n'
SLACK = '[[channels]]\nname = "s"\nkind = "slack"\nurl_env = "U"\n'
ACCOUNT = '[[accounts]]\nname = "a"\nkeys = [{env = "K"}]\n'
PROXY_KEY = '[[proxy.keys]]\nname = "k"\nkey_env = "P"\nupstream_key_env = "U"\n'
REPORT = '[[reports]]\nname = "r"\n'
LONG = "p" * (TEXT_WIDTH + 1)

# What each kind of value must refuse (TOML spelling of the value).
HOSTILE = {
    "amount": ['"nan"', '"inf"', '"-1"', '"1e999999"', '"\u0663"', '"\uff15"', "nan", "inf", "-inf", '"1_000"', "true", "[]"],
    "seconds": ["nan", "inf", "-inf", "-1", "0", "1e30", "99999999999999999999", '"10"', "true"],
    "whole": ["nan", "-1", "1.5", "99999999999999999999", '"\u0663"', "true"],
    "text": ['"x\\u0000"', '"a\\r\\nb"', '"a\\u001b[31m"', '"\\u202eevil"', '"a\\u200bb"', f'"{LONG}"', '""', '"  "', "5", "[]"],
    "name": ['"a b"', '"\u0663"', '"x\\u0000"', f'"{"n" * (NAME_WIDTH + 1)}"', '"-x"', "5"],
    "env": ['"A B"', '"\u00c4"', '"X\\u0000"', '"https://hooks.example/secret"', '""', "5"],
    "path": ['"a\\u0000b"', '"a\\nb"', '""', "5"],
    "host": ['"localhost\\u0000"', '"exa mple"', '"a..b"', '"-x.example"', '"b\u00fccher.example"', '"h:25"', '""', "5"],
    "url": ['"http://exa mple.com/v1"', '"http://example.com/v1\\r\\nX: y"', '"http://h\\u0000/v1"', '"ftp://x/v1"',
            '"http://h:99999/v1"', '"http://h/v1?x=1"', '"http:///v1"', '"http://b\u00fccher.example/v1"', "5"],
    "zone": ['"UTC\\u0000"', '"../../etc/passwd"', '"Mars/Olympus"', f'"{"Z" * (ZONE_WIDTH + 1)}"', '""', "5"],
    "flag": ['"yes"', "1", "nan"],
    "period": ['"\u0663d"', '"0h"', '"fortnight"', '"7d\\u0000"', "5"],
    "cron": ['"\u0663 6 * * *"', '"0 6 * *"', '"0 25 * * *"', '"0 6 * * *\\u0000"', "5"],
}

# Every setting: (name, TOML with {v} where the value goes, its kind).
SETTINGS = [
    ("database_url", "database_url = {v}", "path"),
    ("journal", "journal = {v}", "path"),
    ("secret", "secret = {v}", "path"),
    ("reports_dir", "reports_dir = {v}", "path"),
    ("timezone", "timezone = {v}", "zone"),
    ("pricing.charge_precision", "[pricing]\ncharge_precision = {v}", "amount"),
    ("pricing.tolerance", "[pricing]\ntolerance = {v}", "amount"),
    ("pricing.rate_cards", "[pricing]\nrate_cards = {v}", "path"),
    ("recorder.include_usage", "[recorder]\ninclude_usage = {v}", "flag"),
    ("recorder.writer_processes", "[recorder]\nwriter_processes = {v}", "whole"),
    ("recorder.limits_refresh_seconds", "[recorder]\nlimits_refresh_seconds = {v}", "seconds"),
    *((f"schedule.{name}", f"[schedule]\n{name} = {{v}}", "seconds")
      for name in ("poll_credits_seconds", "reconcile_seconds", "replay_journal_seconds", "budgets_seconds")),
    ("reconcile.billing_settle_seconds", "[reconcile]\nbilling_settle_seconds = {v}", "seconds"),
    ("accounts name", '[[accounts]]\nname = {v}\nkeys = [{{env = "K"}}]', "text"),
    ("accounts base_url", '[[accounts]]\nname = "a"\nbase_url = {v}\nkeys = [{{env = "K"}}]', "url"),
    ("accounts key env", '[[accounts]]\nname = "a"\nkeys = [{{env = {v}}}]', "env"),
    ("accounts key label", '[[accounts]]\nname = "a"\nkeys = [{{env = "K", label = {v}}}]', "text"),
    ("budget name", '[[budgets]]\nname = {v}\nlimit = "5"', "name"),
    ("budget limit", '[[budgets]]\nname = "b"\nlimit = {v}', "amount"),
    ("budget limit_usd", '[[budgets]]\nname = "b"\nlimit_usd = {v}', "amount"),
    ("budget period", BUDGET + "period = {v}", "period"),
    ("budget timezone", BUDGET + "timezone = {v}", "zone"),
    ("budget threshold", BUDGET + "thresholds = [{v}]", "whole"),
    ("budget forecast", BUDGET + "forecast = {v}", "flag"),
    ("budget enforce", BUDGET + "enforce = {v}", "flag"),
    *((f"budget scope.{key}", BUDGET + f"scope = {{{{{key} = {{v}}}}}}", "text")
      for key in ("account", "project", "user", "key", "model")),
    ("balance alert account", "[[balance_alerts]]\naccount = {v}\nbelow = \"5\"", "text"),
    ("balance alert below", '[[balance_alerts]]\naccount = "a"\nbelow = {v}', "amount"),
    ("balance alert runway_days", '[[balance_alerts]]\naccount = "a"\nrunway_days = {v}', "whole"),
    ("channel name", '[[channels]]\nname = {v}\nkind = "log"', "name"),
    ("channel url_env", '[[channels]]\nname = "s"\nkind = "slack"\nurl_env = {v}', "env"),
    ("channel secret_env", '[[channels]]\nname = "w"\nkind = "webhook"\nurl_env = "U"\nsecret_env = {v}', "env"),
    ("channel timeout", SLACK + "timeout = {v}", "seconds"),
    ("email host", '[[channels]]\nname = "m"\nkind = "email"\nhost = {v}\nfrom = "a@b"\nto = "c@d"', "host"),
    ("email port", EMAIL + "port = {v}", "whole"),
    ("email username", EMAIL + 'username = {v}\npassword_env = "P"', "text"),
    ("email password_env", EMAIL + 'username = "u"\npassword_env = {v}', "env"),
    ("email from", '[[channels]]\nname = "m"\nkind = "email"\nhost = "h"\nfrom = {v}\nto = "c@d"', "text"),
    ("email to", '[[channels]]\nname = "m"\nkind = "email"\nhost = "h"\nfrom = "a@b"\nto = [{v}]', "text"),
    ("email ca_file", EMAIL + "ca_file = {v}", "path"),
    ("report name", "[[reports]]\nname = {v}", "name"),
    ("report timezone", REPORT + "timezone = {v}", "zone"),
    ("report schedule", REPORT + "schedule = {v}", "cron"),
    ("report output_dir", REPORT + "output_dir = {v}", "path"),
    ("report account", REPORT + "account = {v}", "text"),
    ("report close", REPORT + "close = {v}", "flag"),
    ("report calls", REPORT + "calls = {v}", "flag"),
    ("proxy.upstream", "[proxy]\nupstream = {v}", "url"),
    ("proxy.host", "[proxy]\nhost = {v}", "host"),
    ("proxy.port", "[proxy]\nport = {v}", "whole"),
    ("proxy.workers", "[proxy]\nworkers = {v}", "whole"),
    ("proxy.max_body_bytes", "[proxy]\nmax_body_bytes = {v}", "whole"),
    ("proxy.max_connections", "[proxy]\nmax_connections = {v}", "whole"),
    *((f"proxy.{name}", f"[proxy]\n{name} = {{v}}", "seconds") for name in ("connect_timeout", "read_timeout", "shutdown_seconds",
                                                                          "header_timeout", "idle_timeout")),
    *((f"proxy.{name}", f"[proxy]\n{name} = {{v}}", "whole") for name in ("max_client_connections", "max_header_bytes",
                                                                        "max_header_line_bytes", "max_headers")),
    ("proxy.allowed_hosts", "[proxy]\nallowed_hosts = [{v}]", "host"),
    ("proxy key name", '[[proxy.keys]]\nname = {v}\nkey_env = "P"\nupstream_key_env = "U"', "text"),
    ("proxy key key_env", '[[proxy.keys]]\nname = "k"\nkey_env = {v}\nupstream_key_env = "U"', "env"),
    ("proxy key upstream_key_env", '[[proxy.keys]]\nname = "k"\nkey_env = "P"\nupstream_key_env = {v}', "env"),
    ("proxy key project", PROXY_KEY + "project = {v}", "text"),
]
# reconcile_settle_seconds and billing_settle_seconds take 0; the rest of "seconds" refuse it.
ZERO_ALLOWED = {"reconcile.billing_settle_seconds"}
CASES = [(setting, template, value) for setting, template, kind in SETTINGS for value in HOSTILE[kind]
         if not (setting in ZERO_ALLOWED and value == "0")]
CASES += [("schedule.reconcile_settle_seconds", "[schedule]\nreconcile_settle_seconds = {v}", value)
          for value in HOSTILE["seconds"] if value != "0"]


def write(tmp_path, text: str) -> str:
    path = tmp_path / "credit-ledger.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("setting, template, value", CASES, ids=[f"{s}={v[:24]}" for s, _, v in CASES])
def test_every_setting_refuses_every_hostile_value_of_its_kind_in_one_line(tmp_path, setting, template, value):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, template.format(v=value) + "\n"))
    message = str(raised.value)
    assert message.isprintable() and len(message) < 500, message  # escaped, cut: a NUL or CR/LF is shown, not obeyed
    assert "https://hooks.example/secret" not in message  # a URL put where its variable's name belongs is not echoed


GOOD = {"amount": '"5"', "seconds": "5", "whole": "2", "text": '"fine value"', "name": '"fine"', "env": '"FINE_ENV"',
        "path": '"some/dir"', "host": '"smtp.example"', "url": '"https://api.example/v1"', "zone": '"Europe/Berlin"',
        "flag": "true", "period": '"7d"', "cron": '"0 6 * * *"'}
GOOD_FOR = {"database_url": '"sqlite:///x.db"', "pricing.charge_precision": '"0.01"', "pricing.tolerance": '"0.005"',
            "proxy.max_body_bytes": "2048", "proxy.max_header_bytes": "2048", "proxy.max_header_line_bytes": "512",
            "proxy.max_headers": "20", "email to": '"c@d"', "email from": '"a@b"'}


@pytest.mark.parametrize("setting, template, kind", SETTINGS, ids=[s for s, _, _ in SETTINGS])
def test_every_setting_takes_a_good_value_of_its_kind(tmp_path, setting, template, kind):
    """The hostile values are refused for what they are: the same setting with a good value is read."""
    good = GOOD_FOR.get(setting) or GOOD[kind]
    load_settings(write(tmp_path, template.format(v=good) + "\n"))


@pytest.mark.parametrize("text, message", [
    (BUDGET + 'scope = {tag = ["team=a", "team=b"]}', "scope.tag: names the tag 'team' twice"),
    (BUDGET + 'channels = ["s", "s"]\n' + SLACK, "channels: names the channel 's' twice"),
    (BUDGET + "thresholds = [50, 80, 50]", "thresholds: names the threshold 50 twice"),
    (EMAIL.replace('to = "c@d"', 'to = ["c@d", "c@d"]'), "to: names the address 'c@d' twice"),
    ('[proxy]\nallowed_hosts = ["a.example", "A.example"]', "proxy.allowed_hosts: names the host 'a.example' twice"),
    (REPORT + 'formats = ["csv", "csv"]', "formats: names the format 'csv' twice"),
    (ACCOUNT + ACCOUNT, "[[accounts]]: names the account 'a' twice"),
    (PROXY_KEY + PROXY_KEY.replace('"P"', '"Q"'), "[[proxy.keys]]: names the proxy key 'k' twice"),
    (BUDGET + f'scope = {{tag = "team={LONG}"}}', "scope.tag value: must be a text of at most 200 characters"),
])
def test_a_list_that_names_one_thing_twice_or_a_tag_past_its_width_is_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text + "\n"))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_widths_the_checks_hold_are_the_ledgers_columns():
    """A setting compared with a column, or written to one, fits it (else it never matches, or PostgreSQL refuses it)."""
    from ledger.store.models import AlertDelivery, ApiKey, BalanceSnapshot, Call, PeriodClose

    for column in (Call.project, Call.end_user, Call.model_requested, ApiKey.label, ApiKey.account, BalanceSnapshot.account):
        assert column.type.length == TEXT_WIDTH, column
    assert AlertDelivery.channel.type.length >= NAME_WIDTH and PeriodClose.zone.type.length >= ZONE_WIDTH


def test_a_secret_put_in_the_file_is_never_echoed(tmp_path):
    for text in ('[[accounts]]\nname = "a"\nkeys = [{key = "sk-live-0123456789\\u0000"}]',
                 '[[channels]]\nname = "s"\nkind = "slack"\nurl_env = "https://hooks.slack.com/services/T0/B0/secret"'):
        with pytest.raises(ConfigError) as raised:
            load_settings(write(tmp_path, text + "\n"))
        assert "0123456789" not in str(raised.value) and "hooks.slack.com" not in str(raised.value), raised.value


@pytest.mark.parametrize("text", [
    '[[channels]]\nname = "c"\nkind = "slack"\nurl_env = "U"\ntimeout = nan',
    "x = " + "[" * 100_000 + "]" * 100_000,
    BUDGET + 'scope = {project = "' + LONG + '"}',
    '[[budgets]]\nname = "b"\nlimit = "\u0663"',
])
def test_an_applications_recorder_refuses_a_bad_config_in_one_line_before_anything_is_made(tmp_path, text):
    from ledger.record.recorder import Recorder

    path = write(tmp_path, f'journal = "{tmp_path / "journal"}"\n' + text + "\n")
    with pytest.raises(ConfigError) as raised:
        Recorder(f"sqlite:///{tmp_path / 'ledger.db'}", config=path)
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credit-ledger.toml"]  # no ledger, no journal
