"""The audit log: who did what, when, from where. Rows are only added (the database refuses an UPDATE or DELETE).

`record` is called in the same transaction as the change it describes, so a
change and its audit row are kept together or not at all.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..exactjson import dumps, loads
from .access import AuditEntry

MAX_TEXT = 400


def record(session: Session, *, actor: str, action: str, target: str | None = None,
           detail: Mapping[str, Any] | None = None, address: str | None = None, at: datetime | None = None) -> None:
    """Add one row. `detail` is a JSON object (exact decimals kept); never put a secret in it."""
    session.add(AuditEntry(at=at or datetime.now(timezone.utc), actor=actor[:200], action=action[:100],
                           target=None if target is None else target[:MAX_TEXT],
                           detail=None if detail is None else dumps(dict(detail)),
                           address=None if address is None else address[:100]))
    session.flush()


def entries(session: Session, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
    """The newest `limit` rows (before the row of id `before`), newest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(session.scalars(query))


def detail_of(entry: AuditEntry) -> dict:
    return {} if entry.detail is None else loads(entry.detail)
