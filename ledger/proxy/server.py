"""Running the proxy: one worker in this process, or N worker processes that share one listening socket.

Each worker is a uvicorn server over `ProxyApp` with a Recorder of its own
(its journal in `<journal>/proxy-<n>`, all of them writing to one ledger). A
worker that dies is started again with the same number, so its journal's
orphans are replayed by the new one. SIGTERM (or Ctrl-C): no new
connections, the calls in flight finish (up to `[proxy] shutdown_seconds`),
the ledger is flushed, exit 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import httpx2
import uvicorn

from .. import redact
from ..config import DEFAULT_BASE_URL, Settings, setting
from ..errors import LedgerError
from ..config.proxy import ProxySettings, check_upstream
from .app import ProxyApp
from .guard import ProxyKeys, allowed_hosts
from .protocol import connection_limits, protocol_class

log = redact.logger("ledger.proxy")
QUICK_DEATH_SECONDS = 2.0  # a worker that dies sooner than this after its start is failing, not killed
MAX_QUICK_DEATHS = 5


@dataclass(frozen=True)
class ProxyPlan:
    """What one `credit-ledger proxy` serves: settled from the flags, the config and the environment."""

    upstream: str
    host: str
    port: int
    workers: int
    settings: Settings


def plan(settings: Settings, *, host: str | None, port: int | None, upstream: str | None, workers: int | None) -> ProxyPlan:
    """The flags over `[proxy]` over the environment; each flag checked as its setting is (one ConfigError line)."""
    options = settings.proxy
    if upstream is not None:
        chosen, where = upstream, "--upstream"
    elif options.upstream is not None:
        chosen, where = options.upstream, "[proxy] upstream"
    else:
        chosen, where = os.environ.get("AIVIDEO_BASE_URL") or DEFAULT_BASE_URL, "AIVIDEO_BASE_URL"
    port = options.port if port is None else setting("proxy", "port").check(port, "--port")
    workers = options.workers if workers is None else setting("proxy", "workers").check(workers, "--workers")
    return ProxyPlan(check_upstream(chosen, where), host or options.host, port, workers, settings)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, made once and shared by every worker."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        raise LedgerError(f"cannot listen on {host}:{port}: {getattr(error, 'strerror', None) or error}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(infos[0][4])
        listener.listen(2048)
    except OSError as error:
        listener.close()
        raise LedgerError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    listener.set_inheritable(True)
    return listener


def serve(proxy: ProxyPlan, keys: ProxyKeys, listener: socket.socket, out: TextIO, stop: Stop | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C (`stop`: noted since before the port opened); 0 when every worker ended cleanly."""
    if proxy.workers == 1:
        return run_worker(1, proxy, keys, listener, stop)
    return supervise(proxy.workers, lambda index: run_worker(index, proxy, keys, listener),
                     stop.signalled if stop is not None else 0)


# ---------------------------------------------------------------- one worker


class Stop:
    """SIGTERM and SIGINT noted before uvicorn takes them over (it hands them back after its shutdown).

    Made before the port opens: a SIGTERM that comes as soon as it is open is a stop, not a death.
    """

    def __init__(self) -> None:
        self.signalled = 0
        self.server: uvicorn.Server | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))  # a forked worker starts with them held

    def _note(self, signum: int, _frame: Any) -> None:
        self.signalled = signum
        if self.server is not None:  # before uvicorn has its own handlers: stop it all the same
            self.server.should_exit = True


class _QuietCut(logging.Filter):
    # An answer the upstream broke off is cut on the client's side too, on purpose: not an error of the app.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


def build_app(upstream: str, recorder: Any, options: ProxySettings, keys: ProxyKeys | None, bound_host: str) -> ProxyApp:
    """The app of one worker: its Recorder's transport around httpx2's, to the one upstream."""
    limits = httpx2.Limits(max_connections=options.max_connections,
                           max_keepalive_connections=min(options.max_connections, 256), keepalive_expiry=30.0)
    transport = recorder.transport(httpx2.AsyncHTTPTransport(limits=limits, retries=0))
    return ProxyApp(upstream, transport, keys=keys, max_body_bytes=options.max_body_bytes,
                    connect_timeout=options.connect_timeout, read_timeout=options.read_timeout,
                    allowed_hosts=allowed_hosts(options.allowed_hosts, bound_host),
                    whole_bodies=recorder.limits is not None and recorder.limits.needs_model)


def worker_config(app: ProxyApp, options: ProxySettings) -> uvicorn.Config:
    """uvicorn as the proxy runs it: the guarded protocol, no headers of its own (the upstream's Date and Server pass), no access log."""
    return uvicorn.Config(app, http=protocol_class(connection_limits(options)), ws="none", lifespan="on", access_log=False,
                          log_level="warning", server_header=False, date_header=False, proxy_headers=False, backlog=2048,
                          timeout_keep_alive=options.idle_timeout,  # type: ignore[arg-type]  # seconds, a float is fine
                          timeout_graceful_shutdown=int(max(1, options.shutdown_seconds)))


def run_worker(index: int, proxy: ProxyPlan, keys: ProxyKeys, listener: socket.socket, stop: Stop | None = None) -> int:
    """One worker: a Recorder with its own journal, the app, uvicorn on the shared socket; flushed at the end."""
    from ..record.recorder import Recorder

    stop = stop or Stop()  # before the recorder's sink, which leaves a handler it finds in place
    settings, options = proxy.settings, proxy.settings.proxy
    logging.getLogger("uvicorn.error").addFilter(_QuietCut())
    recorder = Recorder(settings=settings, journal_dir=Path(settings.journal_path) / f"proxy-{index}")
    server = None
    try:
        app = build_app(proxy.upstream, recorder, options, keys, proxy.host)
        server = stop.server = uvicorn.Server(worker_config(app, options))
        server.should_exit = bool(stop.signalled)
        server.run(sockets=[listener])
        if stop.signalled:
            log.info("credit-ledger proxy worker %d: stopped by signal %d, calls in flight finished", index, stop.signalled)
    finally:
        if not recorder.flush(timeout=options.shutdown_seconds):
            log.warning("credit-ledger proxy worker %d: the ledger did not take every call in time; "
                        "the rest waits in the journal for the next start", index)
        recorder.close()
    return 0 if server is not None and (server.started or stop.signalled) else 1


# ---------------------------------------------------------------- several workers


def supervise(workers: int, work: Callable[[int], int], signalled: int = 0) -> int:
    """Run `work(index)` in `workers` forked processes; start a dead one again; on SIGTERM (or `signalled`), stop them all."""
    context = multiprocessing.get_context("fork")  # the parent has no thread: what forks is this loop only
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    stopping: list[int] = [signalled] if signalled else []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        try:
            os.write(wake_write, b"!")
        except OSError:
            pass

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        signal.signal(signum, on_signal)

    def start(index: int) -> tuple[Any, float]:
        # Signals wait until the child has its own handlers: the parent's would wake this loop instead.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            process = context.Process(target=_worker_main, args=(work, index), name=f"credit-ledger-proxy-{index}")
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        return process, time.monotonic()

    running = {} if stopping else {index: start(index) for index in range(1, workers + 1)}
    quick_deaths = 0
    try:
        while not stopping:
            sentinels = [process.sentinel for process, _ in running.values()]
            multiprocessing.connection.wait(sentinels + [wake_read])
            for index, (process, started) in list(running.items()):
                if stopping or process.exitcode is None:
                    continue
                lived = time.monotonic() - started
                quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                print(f"credit-ledger proxy: worker {index} (pid {process.pid}) ended ({_exit_text(process.exitcode)}); "
                      "starting it again", file=sys.stderr, flush=True)
                if quick_deaths >= MAX_QUICK_DEATHS:
                    print("credit-ledger proxy: workers keep failing as they start; stopping", file=sys.stderr, flush=True)
                    stopping.append(0)
                    break
                if quick_deaths:
                    multiprocessing.connection.wait([wake_read], timeout=QUICK_DEATH_SECONDS)
                running[index] = start(index)
    finally:
        for process, _ in running.values():
            if process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in running.values():
            process.join()
        os.close(wake_read)
        os.close(wake_write)
    codes = [process.exitcode for process, _ in running.values()]
    return 0 if stopping != [0] and all(code == 0 for code in codes) else 1


def _worker_main(work: Callable[[int], int], index: int) -> None:
    # SIGTERM and SIGINT are held until run_worker has its own handlers in place (the parent's are not a child's).
    sys.exit(work(index))


def _exit_text(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit {code}"
