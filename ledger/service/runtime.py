"""What a running service's jobs share: the settings, the ledger, the host's name, one credits client.

Its own module so that every job (`jobs`, `report_jobs`, `alerting`) can take it without importing the
scheduler that runs them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from ..config import Settings
from ..keys import load_secret
from ..store.engine import Ledger
from .credits import CreditsClient, RetryPolicy


def host_name() -> str:
    """This process, as job runs, closes and alert deliveries name who did them: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Service:
    """What the jobs share: settings, the ledger, one credits client."""

    settings: Settings
    ledger: Ledger
    host: str = field(default_factory=host_name)
    client: CreditsClient | None = None
    reconcile_settle_seconds: float | None = None  # None: the settings' schedule says

    def __post_init__(self) -> None:
        if self.reconcile_settle_seconds is None:
            self.reconcile_settle_seconds = self.settings.schedule.reconcile_settle_seconds

    def credits_client(self) -> CreditsClient:
        if self.client is None:
            self.client = CreditsClient(load_secret(self.settings.secret_path), RetryPolicy())
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
