"""The `api_keys` table: keys known by their keyed fingerprint and last four characters, and whose they are."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .engine import insert_for
from .models import ApiKey


def remember_keys(session: Session, last4_by_fingerprint: dict[str, str]) -> None:
    """Note keys seen in calls (first sighting only: what configuration says of them stays)."""
    if not last4_by_fingerprint:
        return
    now = datetime.now(timezone.utc)
    session.execute(
        insert_for(session, ApiKey.__table__).on_conflict_do_nothing(index_elements=["fingerprint"]),
        [{"fingerprint": fp, "last4": l4, "first_seen_at": now} for fp, l4 in last4_by_fingerprint.items()],
    )


def register_keys(session: Session, keys: Iterable[tuple[str, str, str, str]], now: datetime) -> None:
    """Upsert (fingerprint, last4, label, account) of configured keys: config says whose a key is."""
    rows = [{"fingerprint": fp, "last4": l4, "label": label, "account": account, "first_seen_at": now} for fp, l4, label, account in keys]
    if not rows:
        return
    statement = insert_for(session, ApiKey.__table__)
    statement = statement.on_conflict_do_update(
        index_elements=["fingerprint"],
        set_={"account": statement.excluded.account, "label": statement.excluded.label},
    )
    session.execute(statement, rows)


def account_fingerprints(session: Session) -> dict[str, frozenset[str]]:
    """Each account's key fingerprints, as configuration last registered them."""
    found: dict[str, set[str]] = {}
    for fp, account in session.execute(select(ApiKey.fingerprint, ApiKey.account).where(ApiKey.account.is_not(None))):
        found.setdefault(account, set()).add(fp)
    return {account: frozenset(fps) for account, fps in found.items()}
