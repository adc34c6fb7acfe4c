"""Polling the prepaid balance: one snapshot per account and poll (readers find the top-ups in the snapshots)."""

from __future__ import annotations

from datetime import datetime, timezone

from ..accounting.snapshots import BalanceSnapshotValue
from ..config import Settings, configured_accounts, configured_keys
from ..keys import load_secret
from ..store import balances
from ..store.engine import Ledger
from ..store.keys import register_keys
from .credits import CreditsClient


def poll_balances(
    settings: Settings, ledger: Ledger, *, client: CreditsClient | None = None
) -> list[BalanceSnapshotValue]:
    """Poll every account once, store a snapshot each (usable or not)."""
    secret = load_secret(settings.secret_path)
    accounts = configured_accounts(settings)
    owned = client is None
    client = client or CreditsClient(secret)
    try:
        with ledger.session() as session:
            register_keys(session, configured_keys(settings, secret), datetime.now(timezone.utc))
        values = []
        for account in accounts:
            value = client.poll(account)
            with ledger.session() as session:
                balances.insert_snapshot(session, value)
            values.append(value)
        return values
    finally:
        if owned:
            client.close()
