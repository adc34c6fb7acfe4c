"""The `budgets` and `alerts` commands: what they read, do and print (the CLI parses, this runs)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TextIO

from ..config import Settings
from ..errors import ConfigError, DeliveryError
from ..reports.budgets import alerts_json, budgets_json, format_alerts, format_budgets, format_fired
from ..store.alerts import alert_history
from ..store.engine import Ledger
from .alerting import evaluate, notify
from .channels import DeliveryFailed, Notice, close_all, sender_for, senders_for
from .delivery import utc_now
from .runtime import host_name


def budgets_command(settings: Settings, out: TextIO, *, as_json: bool = False, send: bool = False) -> int:
    """Each budget's and balance alert's state; with `send`, evaluate and deliver as the service does."""
    if send:
        senders = senders_for(settings.channels)  # an unset secret stops here: nothing written, nothing sent
        try:
            with Ledger(settings.database_url) as ledger:
                evaluation, report = notify(ledger, settings, host=host_name(), senders=senders)
        finally:
            close_all(senders)
    else:
        with Ledger(settings.database_url, must_exist=True) as ledger:
            evaluation = evaluate(ledger, settings, now=utc_now(), host=host_name(), write=False)
    if as_json:
        out.write(budgets_json(evaluation.at, evaluation.budgets, evaluation.balances))
    else:
        out.write(format_budgets(evaluation.budgets, evaluation.balances))
    if send and not as_json:
        out.write("\n" + format_fired(evaluation.raised, evaluation.resolved, report.sent))
    return 0


def alerts_command(settings: Settings, out: TextIO, *, since: datetime | None = None, as_json: bool = False) -> int:
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        history = alert_history(session, since)
        out.write(alerts_json(history) if as_json else format_alerts(history))
    return 0


def test_channel_command(settings: Settings, channel_name: str, out: TextIO) -> int:
    """Send a test message through one channel; DeliveryError when it does not take it."""
    channel = next((c for c in settings.channels if c.name == channel_name), None)
    if channel is None:
        known = ", ".join(c.name for c in settings.channels) or "none is configured"
        raise ConfigError(f"no channel named {channel_name!r} ({known})")
    sender = sender_for(channel)
    now = utc_now()
    notice = Notice(f"msg_test_{secrets.token_hex(12)}", "test", "Test message",
                    f"A test message from credit-ledger on {host_name()} to channel {channel.name} ({channel.kind}), "
                    f"sent {now.isoformat(timespec='seconds')}.", {"channel": channel.name}, now)
    try:
        detail = sender.send(notice)
    except DeliveryFailed as failure:
        raise DeliveryError(f"channel {channel.name!r} did not take the test message: {failure.detail}") from None
    finally:
        sender.close()
    print(f"channel {channel.name} ({channel.kind}): test message sent, {detail}", file=out)
    return 0
