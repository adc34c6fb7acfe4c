"""The audit log's rows as tests compare them."""

from __future__ import annotations


def audit_rows(ledger) -> list[tuple[str, str, str | None, dict]]:
    """The audit log's rows, oldest first: (actor, action, target, detail)."""
    from sqlalchemy import select

    from ledger.store import audit
    from ledger.store.access import AuditEntry

    with ledger.session() as session:
        return [(e.actor, e.action, e.target, audit.detail_of(e))
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
