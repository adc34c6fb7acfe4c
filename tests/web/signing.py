"""Users and a clock for the dashboard's tests (the fixtures in conftest.py and the browser tests use them)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

PASSWORD = "correct horse battery staple"


class Clock:
    """Now, as the dashboard's sessions see it: a test moves it forward."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **span) -> None:
        self.now += timedelta(**span)


def add_user(ledger, name: str, role: str = "viewer", projects=None, password: str | None = PASSWORD) -> None:
    """A dashboard user in `ledger`, with `password` (Argon2id-hashed as `users add` does)."""
    from ledger.store.credentials import hash_password
    from ledger.store.users import add_user as store_user

    with ledger.session() as session:
        store_user(session, name, role, projects, hash_password(password) if password else None,
                   datetime.now(timezone.utc))
