"""[[budgets]], [[balance_alerts]] and [[channels]]: checked when the config is read, secrets at a sending command's start."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from ledger.accounting.budgets import Scope
from ledger.cli import main
from ledger.config import load_settings
from ledger.errors import ConfigError

GOOD = """
timezone = "Europe/Berlin"

[[budgets]]
name = "search-monthly"
scope = {project = "search", tag = "feature=summary"}
period = "month"
limit = "5000"
thresholds = [80, 50, 100]
forecast = true
channels = ["finance-slack"]

[[budgets]]
name = "support-daily"
scope = {project = "support", user = "u-1"}
period = "24h"
timezone = "UTC"
limit_usd = "25.00"
enforce = true

[[balance_alerts]]
account = "prod"
below = "1000"
runway_days = 7
channels = ["oncall", "mail"]

[[accounts]]
name = "prod"
keys = [{env = "AIVIDEO_API_KEY", label = "backend"}]

[[channels]]
name = "finance-slack"
kind = "slack"
url_env = "SLACK_WEBHOOK_URL"

[[channels]]
name = "oncall"
kind = "webhook"
url_env = "ONCALL_WEBHOOK_URL"
secret_env = "ONCALL_WEBHOOK_SECRET"

[[channels]]
name = "mail"
kind = "email"
host = "smtp.internal"
from = "ledger@example.com"
to = ["finance@example.com"]
username = "ledger"
password_env = "SMTP_PASSWORD"
"""


def write(tmp_path, text):
    path = tmp_path / "credit-ledger.toml"
    path.write_text(text)
    return str(path)


def test_the_sections_become_checked_values(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    monthly, daily = settings.budgets
    assert monthly.scope == Scope(project="search", tags=(("feature", "summary"),))
    assert (monthly.period, monthly.timezone, monthly.limit, monthly.thresholds, monthly.forecast) == (
        "month", "Europe/Berlin", Decimal(5000), (50, 80, 100), True)
    assert (daily.period, daily.timezone, daily.limit, daily.limit_usd, daily.enforce) == ("24h", "UTC", None, Decimal("25.00"), True)
    assert daily.thresholds == (50, 80, 100) and daily.channels == ()
    (balance,) = settings.balance_alerts
    assert (balance.account, balance.below, balance.runway_days, balance.channels) == ("prod", Decimal(1000), 7, ("oncall", "mail"))
    mail = next(c for c in settings.channels if c.name == "mail")
    assert (mail.port, mail.security, mail.to, mail.env_names()) == (587, "starttls", ("finance@example.com",), ("SMTP_PASSWORD",))


BUDGET = '[[budgets]]\nname = "b"\nlimit = "10"\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (BUDGET + 'scope = {team = "x"}', "unknown scope key 'team'"),
        (BUDGET + 'timezone = "Mars/Olympus"', "timezone: must be a known time zone (an IANA name such as Europe/Berlin or UTC), got 'Mars/Olympus'"),
        (BUDGET + "thresholds = [50, 150]", "threshold: must be a whole number from 1 to 100, got 150"),
        (BUDGET + 'channels = ["nowhere"]', "channel 'nowhere' is not defined in [[channels]]"),
        (BUDGET + 'period = "fortnight"', "not a period"),
        (BUDGET + 'period = "7d"\nforecast = true', "forecast needs a calendar period"),
        (BUDGET + 'limit_usd = "3"', "exactly one of limit"),
        ('[[budgets]]\nname = "b"\nlimit = "0"', "above 0"),
        ('[[budgets]]\nname = "b"\nlimit = "-5"', "must be an amount"),
        ('[[budgets]]\nname = "b b"\nlimit = "5"', "must be a name of letters"),
        (BUDGET + BUDGET, "[[budgets]]: names the budget 'b' twice"),
        (BUDGET + 'scope = {tag = "nope"}', "is not name=value"),
        ('[[balance_alerts]]\naccount = "prod"', "give below"),
        ('[[balance_alerts]]\naccount = "x"\nbelow = "1"\n[[accounts]]\nname = "prod"\nkeys = [{env = "K"}]', "no [[accounts]] entry is named 'x'"),
        ('[[balance_alerts]]\naccount = "prod"\nrunway_days = 0', "runway_days: must be a whole number from 1"),
        ('[[channels]]\nname = "c"\nkind = "pager"', "kind: must be one of"),
        ('[[channels]]\nname = "c"\nkind = "slack"', "url_env is required"),
        ('[[channels]]\nname = "c"\nkind = "slack"\nurl = "https://hooks.slack.com/x"', "unknown setting 'url'"),
        ('[[channels]]\nname = "c"\nkind = "webhook"\nurl_env = "U"', "secret_env is required"),
        ('[[channels]]\nname = "c"\nkind = "slack"\nurl_env = "https://x"', "must be an environment variable's name"),
        ('[[channels]]\nname = "c"\nkind = "email"\nhost = "h"\nfrom = "a@b"\nto = "nobody"', "to: must be an email address, got 'nobody'"),
        ('[[channels]]\nname = "c"\nkind = "email"\nhost = "h"\nfrom = "a@b"\nto = "c@d"\nusername = "u"', "username and password_env together"),
        ('[[channels]]\nname = "c"\nkind = "email"\nhost = "h"\nfrom = "a@b"\nto = "c@d"\nsecurity = "none"\nusername = "u"\npassword_env = "P"',
         "password in clear"),
        ("[recorder]\nlimits_refresh_seconds = 0", "limits_refresh_seconds"),
    ],
)
def test_a_bad_section_says_what_is_wrong_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_settings(write(tmp_path, text))
    assert "\n" not in str(raised.value)


def test_a_bad_config_stops_every_command_with_one_line_and_exit_1(tmp_path):
    path = write(tmp_path, BUDGET + "thresholds = [150]")
    result = subprocess.run([sys.executable, "-m", "ledger.cli", "--config", path, "run"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("credit-ledger: ") and result.stderr.count("\n") == 1 and "150" in result.stderr


def test_an_unset_secret_stops_a_sending_command_before_anything_is_sent(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, GOOD)
    for name in ("SLACK_WEBHOOK_URL", "ONCALL_WEBHOOK_URL", "ONCALL_WEBHOOK_SECRET", "SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/slack")
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    for argv in (["budgets", "--notify"], ["run"], ["alerts", "test", "--channel", "oncall"]):
        assert main(["--config", path, "--database-url", db, *argv], out=io.StringIO()) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "environment variable ONCALL_WEBHOOK_URL" in err and "is not set" in err, err
    # Reading budgets needs no secret (an application's recorder reads the same file).
    assert load_settings(path).channels
