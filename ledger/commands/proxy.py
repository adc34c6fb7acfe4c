"""`proxy` and `proxy --fingerprint`: everything checked before a socket is opened, then served until SIGTERM.

Bad input (an upstream that is not a URL, a proxy key's variable unset, a
rate card that cannot be read, a port taken) is one line and exit 1 before
any worker starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ..accounting.pricing import load_rate_book
from ..config import Settings
from ..errors import ConfigError, LedgerError
from ..keys import load_secret
from ..proxy.guard import ProxyKeys, fingerprint_of
from ..proxy.protocol import client_connection_cap, raise_open_files_limit
from ..proxy.server import Stop, listen, plan, serve
from . import EXIT_OK


def fingerprint(settings: Settings, out: TextIO, *, key_input: TextIO) -> int:
    """Read a proxy key (one line, sk-…) from `key_input` and print its fingerprint, for [[proxy.keys]]."""
    secret = load_secret(settings.secret_path)
    line = key_input.readline()
    if not line.strip():
        raise ConfigError("--fingerprint reads the proxy key on standard input (one line, sk-…); it got nothing")
    print(fingerprint_of(line, secret), file=out)
    return EXIT_OK


def serve_proxy(settings: Settings, out: TextIO, *, host: str | None = None, port: int | None = None,
                upstream: str | None = None, workers: int | None = None) -> int:
    """Serve the recording proxy until SIGTERM; each argument left None comes from [proxy], else its default."""
    secret = load_secret(settings.secret_path)
    proxy = plan(settings, host=host, port=port, upstream=upstream, workers=workers)
    keys = ProxyKeys(settings.proxy.keys, secret)
    load_rate_book(settings.rate_cards_path)  # a bad card stops here, not in each worker
    for index in range(1, proxy.workers + 1):
        journal = Path(settings.journal_path) / f"proxy-{index}"
        try:
            journal.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LedgerError(f"cannot make the journal {journal}: {error.strerror or error}") from None
    open_files = raise_open_files_limit()  # before the workers are made: they inherit it
    cap = client_connection_cap(settings.proxy.max_client_connections, open_files)
    if cap < settings.proxy.max_client_connections:
        print(f"credit-ledger proxy: {cap} client connections per worker, not {settings.proxy.max_client_connections} "
              f"([proxy] max_client_connections): the open-files limit is {open_files}", file=sys.stderr, flush=True)
    stop = Stop()  # from the moment the port is open, SIGTERM stops the proxy cleanly
    listener = listen(proxy.host, proxy.port)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    attributed = f", {len(keys)} proxy key(s)" if len(keys) else ""
    print(f"credit-ledger proxy on http://{shown}:{port}/v1 -> {proxy.upstream} "
          f"({proxy.workers} worker{'s' if proxy.workers > 1 else ''}{attributed}; journal {settings.journal_path}/proxy-N)",
          file=out, flush=True)
    with listener:
        return serve(proxy, keys, listener, out, stop)
