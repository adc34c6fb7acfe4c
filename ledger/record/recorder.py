"""The Recorder: what an application holds to record its chat calls (three lines in the README).

It hands out recording clients and transports, all sharing one sink (the
journal and the writer), the installation's fingerprint secret and the hard
budget limits of the config (`enforce = true`: `ledger.record.limits`);
settings come from the config file and the environment, as the CLI reads them.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import httpx2

from .. import keys
from ..accounting.pricing import load_rate_book
from ..config import Settings, load_settings
from .call import RecorderCore, Sink, attribution
from .limits import HardLimits, enforced
from ..sink.sink import LedgerSink, SinkStats
from .transport import wrap_transport

__all__ = ["Recorder"]


class Recorder:
    """Records every chat call of the clients and transports it hands out; a context manager."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        journal_dir: str | Path | None = None,
        include_usage: bool | None = None,
        rate_book: Any = None,
        sink: Sink | None = None,
        config: str | Path | None = None,
    ) -> None:
        if settings is None:  # the config file (`config`, else as the CLI finds it) and the environment; the URL given wins
            settings = load_settings(str(config) if config is not None else None, database_url=database_url)
        elif database_url:
            settings = settings.with_database_url(database_url)
        self.settings = settings
        book = rate_book if rate_book is not None else load_rate_book(settings.rate_cards_path)
        if sink is None:
            sink = LedgerSink(
                settings.database_url,
                journal_dir if journal_dir is not None else settings.journal_path,
                rate_book=book,
                policy=settings.pricing,
                writer_processes=settings.writer_processes,
            )
        self.sink = sink
        use = settings.include_usage if include_usage is None else include_usage
        secret = keys.load_secret(settings.secret_path)
        budgets = enforced(settings)
        # The spend of the enforced budgets is read before the first call (within 2 s; else it fails open until read).
        self.limits = HardLimits(budgets, settings, secret, book).start() if budgets else None
        self._core = RecorderCore(sink, secret, bool(use), self.limits)

    def transport(self, inner: Any) -> Any:
        """A recording wrapper of an httpx2 or httpx transport, sync or async (by the inner one's type)."""
        return wrap_transport(inner, self._core)

    def client(self, **kwargs: Any) -> httpx2.Client:
        """An httpx2 client with the openai SDK's defaults (timeouts, limits, redirects), recording."""
        from openai import DefaultHttpxClient

        return _recording_client(DefaultHttpxClient, self._core)(**kwargs)

    def async_client(self, **kwargs: Any) -> httpx2.AsyncClient:
        from openai import DefaultAsyncHttpxClient

        return _recording_client(DefaultAsyncHttpxClient, self._core)(**kwargs)

    @contextmanager
    def attribute(self, project: str | None = None, user: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[None]:
        """Attribute the calls made inside (this task and the tasks it starts); inner values win, tags merge."""
        with attribution(project, user, tags):
            yield

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until all that was recorded is in the ledger; True if it is."""
        return self.sink.flush(timeout)

    def close(self, timeout: float = 5.0) -> SinkStats | None:
        """Write what is left (within `timeout`; the rest waits in the journal); the sink's last stats."""
        if self.limits is not None:
            self.limits.close()
        return self.sink.close(timeout)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recording_client(base: type, core: RecorderCore) -> type:
    # The client builds its transports itself (the default one, and one for each proxy of the
    # environment), so that every default of the SDK and httpx2 applies; wrapping what it builds
    # keeps them all. This overrides httpx2's private builders, for a reason the public API cannot
    # meet: passing `transport=` would turn the environment's proxies off.
    class RecordingClient(base):  # type: ignore[misc, valid-type]
        def _init_transport(self, *args: Any, **kwargs: Any) -> Any:
            return wrap_transport(super()._init_transport(*args, **kwargs), core)

        def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> Any:
            return wrap_transport(super()._init_proxy_transport(*args, **kwargs), core)

    return RecordingClient
