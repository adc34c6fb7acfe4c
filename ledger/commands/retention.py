"""`retention run`: raw calls of closed periods older than `[retention] calls_days` deleted, in batches."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TextIO

from ..config import Settings
from ..errors import ConfigError
from ..store.engine import Ledger
from ..store.retention import delete_old_calls
from . import EXIT_OK


def run(settings: Settings, out: TextIO, *, now: datetime | None = None, progress_stream: TextIO | None = None) -> int:
    """`credit-ledger retention run`: delete what retention allows now and say how many calls and since when."""
    days = settings.retention_calls_days
    if days is None:
        raise ConfigError("retention is off: set [retention] calls_days = N (days) in the config to delete raw calls")
    with Ledger(settings.database_url, must_exist=True) as ledger:
        result = delete_old_calls(ledger, days, now or datetime.now(timezone.utc), progress_stream)
    print(f"retention: {result.calls_deleted} call{'s' * (result.calls_deleted != 1)} of closed periods started before "
          f"{result.deleted_before:%Y-%m-%dT%H:%M:%SZ} deleted (calls_days = {days}); "
          "their sums stay in the rollups, their digests in the closes", file=out)
    return EXIT_OK
