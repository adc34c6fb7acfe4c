"""Real parts for the proxy's tests: the simulator on a fixed clock, the proxy served by uvicorn in a thread, the ledger's rows."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import uvicorn
from sqlalchemy import select

from factories import wait_for
from ledger.config import Settings
from ledger.keys import load_secret
from ledger.proxy.guard import ProxyKeys
from ledger.proxy.server import build_app, listen, worker_config
from ledger.config.proxy import ProxySettings
from ledger.record.recorder import Recorder
from ledger.sim.platform import Platform
from ledger.sim.server import SimulatorConfig, SimulatorServer
from ledger.store.engine import Ledger
from ledger.store.models import Call

# The simulator's clock stands still, so after /sim/reset it answers a call with the very bytes it answered
# before: what a client gets straight from it and through the proxy can be compared byte for byte.
FIXED_NOW = 1_796_601_600.0  # 2026-12-07T00:00:00Z


def fixed_clock_simulator() -> SimulatorServer:
    return SimulatorServer(platform=Platform(SimulatorConfig(seed=11, chunk_latency=0.2), clock=lambda: FIXED_NOW))


def proxy_settings(database_url: str, folder: Path, **proxy: object) -> Settings:
    return Settings(database_url=database_url, secret_path=str(folder / "secret"), journal_path=str(folder / "journal"),
                    writer_processes=0, limits_refresh_seconds=0.05, proxy=ProxySettings(**proxy))


class ProxyUnderTest:
    """The proxy's app as a worker runs it (its Recorder, httpx2 transport, uvicorn config), in a thread on loopback."""

    def __init__(self, upstream: str, settings: Settings, environ: dict | None = None) -> None:
        self.settings = settings
        # The schema first: two sinks of one process migrating a new SQLite file at once have crashed the
        # interpreter here (a segfault in sqlite3, the in-process recorder's and this one's writer threads).
        Ledger(settings.database_url).close()
        self.recorder = Recorder(settings=settings, journal_dir=Path(settings.journal_path) / "proxy-1")
        keys = ProxyKeys(settings.proxy.keys, load_secret(settings.secret_path), environ) if settings.proxy.keys else None
        self.app = build_app(upstream, self.recorder, settings.proxy, keys, "127.0.0.1")
        self._socket = listen("127.0.0.1", 0)
        self.port = self._socket.getsockname()[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.root_url + "/v1"
        self._server = uvicorn.Server(worker_config(self.app, settings.proxy))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> "ProxyUnderTest":
        self._thread.start()
        wait_for(lambda: self._server.started, what="the proxy to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
        self.recorder.close()

    def rows(self) -> list[Call]:
        assert self.recorder.flush(30)
        return ledger_rows(self.settings.database_url)


def ledger_rows(database_url: str) -> list[Call]:
    with Ledger(database_url) as ledger, ledger.session() as session:
        return list(session.scalars(select(Call).order_by(Call.started_at)))


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes as they are (a request no HTTP client would write, with Connection: close); what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while True:
            try:
                piece = connection.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            answer += piece
        return answer
