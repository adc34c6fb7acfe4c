"""`alerts` and `alerts test`: the alert history with its deliveries, and a test message through one channel."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TextIO

from ..config import Settings
from ..errors import ConfigError, DeliveryError
from ..reports.budgets import alerts_json, format_alerts
from ..service.channels import DeliveryFailed, Notice, sender_for
from ..service.delivery import utc_now
from ..service.runtime import host_name
from ..store.alerts import alert_history
from ..store.engine import Ledger
from . import EXIT_OK


def show_alerts(settings: Settings, out: TextIO, *, since: datetime | None = None, as_json: bool = False) -> int:
    """The alerts raised or resolved from `since` (all by default), with their deliveries."""
    with Ledger(settings.database_url, must_exist=True) as ledger, ledger.session() as session:
        history = alert_history(session, since)
        out.write(alerts_json(history) if as_json else format_alerts(history))
    return EXIT_OK


def test_channel(settings: Settings, out: TextIO, *, channel: str) -> int:
    """Send a test message through the channel named `channel`; DeliveryError when it does not take it."""
    found = next((c for c in settings.channels if c.name == channel), None)
    if found is None:
        known = ", ".join(c.name for c in settings.channels) or "none is configured"
        raise ConfigError(f"no channel named {channel!r} ({known})")
    sender = sender_for(found)
    now = utc_now()
    notice = Notice(f"msg_test_{secrets.token_hex(12)}", "test", "Test message",
                    f"A test message from credit-ledger on {host_name()} to channel {found.name} ({found.kind}), "
                    f"sent {now.isoformat(timespec='seconds')}.", {"channel": found.name}, now)
    try:
        detail = sender.send(notice)
    except DeliveryFailed as failure:
        raise DeliveryError(f"channel {found.name!r} did not take the test message: {failure.detail}") from None
    finally:
        sender.close()
    print(f"channel {found.name} ({found.kind}): test message sent, {detail}", file=out)
    return EXIT_OK
