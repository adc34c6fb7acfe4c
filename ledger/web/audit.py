"""`record(request, action, ...)`: an audit row for what a signed-in viewer did (an export, a close, a change).

The actor is the request's viewer (a user's name, or `token:NAME`), the
address its caller's. It blocks (a write to the ledger): call it from a plain
endpoint, or through run_in_threadpool; pass `session` to write it in the
same transaction as the change it records.
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy.orm import Session

from ..store import audit
from .sessions import client_address, now_of


def actor_of(request) -> str:
    viewer = getattr(request.state, "viewer", None)
    if viewer is None:
        return "(not signed in)"
    return viewer.name if viewer.via == "session" else f"{viewer.via}:{viewer.name}"


def record(request, action: str, target: str | None = None, detail: Mapping[str, Any] | None = None, *,
           session: Session | None = None) -> None:
    """Add an audit row: `action` such as "export" or "close", `target` what it was done to, `detail` a JSON object
    (no secret in it)."""
    fields = dict(actor=actor_of(request), action=action, target=target, detail=detail,
                  address=client_address(request), at=now_of(request))
    if session is not None:
        audit.record(session, **fields)
        return
    with request.app.state.ledger.session() as own:
        audit.record(own, **fields)
