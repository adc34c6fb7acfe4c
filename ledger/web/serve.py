"""Serving the dashboard: `credit-ledger dashboard` in the foreground, or beside the service in `credit-ledger run`.

uvicorn runs the proxy's guarded protocol (ledger.proxy.protocol): a request's
head must come within 10 s and 32 KiB (8 KiB a line, 100 headers), a silent
connection closes after 5 s. It binds loopback unless told otherwise, and
refuses another address while the ledger has no user: an open dashboard on a
network with nobody to sign in as is a mistake, not a wish.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

import uvicorn

from ..config import Settings, setting
from ..errors import ConfigError, LedgerError
from ..proxy.protocol import ConnectionLimits, protocol_class
from ..proxy.server import listen
from ..store.engine import Ledger
from ..store.users import active_users
from .app import create_app
from .sessions import SignedInViewers, utc_now

LIMITS = ConnectionLimits(header_timeout=10.0, idle_timeout=5.0, max_connections=1000, max_header_bytes=32 * 1024,
                          max_line_bytes=8 * 1024, max_headers=100)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(ledger: Ledger, host: str) -> None:
    """On an address other than loopback, the ledger must have a user to sign in as."""
    if is_loopback(host):
        return
    with ledger.session() as session:
        if not active_users(session):
            raise ConfigError(f"the dashboard would listen on {host}, beyond this machine, and the ledger has no user: "
                              "add one first (credit-ledger users add NAME --role admin), or serve it on 127.0.0.1")


def server_config(app, settings: Settings) -> uvicorn.Config:
    trusted = list(settings.dashboard.trusted_proxies)
    return uvicorn.Config(app, http=protocol_class(LIMITS), ws="none", lifespan="on", access_log=False,
                          log_level="warning", server_header=False, proxy_headers=bool(trusted),
                          forwarded_allow_ips=trusted or None, timeout_keep_alive=5,
                          timeout_graceful_shutdown=10)


def dashboard_app(settings: Settings, ledger: Ledger, clock: Callable = utc_now):
    return create_app(settings, SignedInViewers(clock), ledger=ledger)


def serve_dashboard(settings: Settings, out: TextIO, *, host: str | None = None, port: int | None = None) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM; host and port from the flags, else [dashboard]."""
    host = host or settings.dashboard.host
    port = settings.dashboard.port if port is None else setting("dashboard", "port").check(port, "--port")
    with Ledger(settings.database_url, must_exist=True) as ledger:
        check_exposure(ledger, host)
        listener = listen(host, port)
        with listener:
            bound, bound_port = listener.getsockname()[:2]
            shown = f"[{bound}]" if ":" in bound else bound
            print(f"credit-ledger dashboard on http://{shown}:{bound_port}/ (Ctrl-C stops it)", file=out, flush=True)
            server = uvicorn.Server(server_config(dashboard_app(settings, ledger), settings))
            with _stopped_by_signals(server):
                server.run(sockets=[listener])
    return 0


@contextmanager
def _stopped_by_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop the server cleanly: uvicorn hands a signal it caught back to the handler it found,
    which, left the default, would kill the process once the server had stopped."""
    def stop(_signum, _frame) -> None:
        server.should_exit = True

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class DashboardThread:
    """The dashboard served by uvicorn in a thread of this process, on `listener` (a bound, listening socket)."""

    def __init__(self, settings: Settings, ledger: Ledger, listener, clock: Callable = utc_now) -> None:
        self.listener = listener
        self.server = uvicorn.Server(server_config(dashboard_app(settings, ledger, clock), settings))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [listener]},
                                       name="credit-ledger-dashboard", daemon=True)

    def start(self, timeout: float = 10.0) -> "DashboardThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LedgerError("the dashboard did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextmanager
def dashboard_beside(settings: Settings, out: TextIO) -> Iterator[None]:
    """With `[dashboard] enabled`, the dashboard in a thread for as long as the block runs (`credit-ledger run`)."""
    if not settings.dashboard.enabled:
        yield
        return
    options = settings.dashboard
    with Ledger(settings.database_url) as ledger:
        check_exposure(ledger, options.host)
        with listen(options.host, options.port) as listener:
            dashboard = DashboardThread(settings, ledger, listener).start()
            bound, port = listener.getsockname()[:2]
            print(f"credit-ledger dashboard on http://{bound}:{port}/", file=out, flush=True)
            try:
                yield
            finally:
                dashboard.stop()
