"""`db upgrade` and `db current`: the ledger's schema and its migration."""

from __future__ import annotations

from typing import TextIO

from ..config import Settings
from ..store.engine import Ledger, current_revision, head_revision
from . import EXIT_OK


def upgrade(settings: Settings, out: TextIO) -> int:
    """Upgrade the ledger's schema to the newest migration (making the ledger if it is not there)."""
    with Ledger(settings.database_url) as ledger:
        print(f"ledger at {ledger.engine.url!r} is at migration {current_revision(ledger.engine)}", file=out)
    return EXIT_OK


def current(settings: Settings, out: TextIO) -> int:
    """Print the schema's migration (or `empty`) and the newest one, changing nothing."""
    with Ledger(settings.database_url, upgrade_schema=False) as ledger:
        print(f"{current_revision(ledger.engine) or 'empty'} (newest: {head_revision()})", file=out)
    return EXIT_OK
