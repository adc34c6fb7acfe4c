"""A sink's life ends with its process's: interpreter exit, SIGTERM and fork.

At interpreter exit (atexit) every live sink drains what it can within its
exit timeout and leaves the rest in the journal. For SIGTERM, a sink made in
the main thread of a process whose SIGTERM disposition is still the default
installs a handler that raises `SystemExit(143)` in the main thread, so the
interpreter exits normally and the atexit drain runs. An application with
its own SIGTERM handler (or a sink made in another thread, where Python
cannot install one) keeps its handler: it should close the sink itself. A
forked child gets a journal segment and a writer of its own at its first
emit; the parent's stay the parent's.
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import threading
import weakref
from typing import Protocol

from .. import redact

log = redact.logger(__name__)


class Closable(Protocol):
    exit_timeout: float

    def close(self, timeout: float = 5.0) -> object: ...
    def reset_after_fork(self) -> None: ...


_live: "weakref.WeakSet[Closable]" = weakref.WeakSet()
_at_exit: dict[int, functools.partial] = {}  # id(sink) -> what atexit calls for it (held: the sink lives to exit)
_sigterm_installed = False


def register(sink: Closable, *, handle_sigterm: bool) -> None:
    """Close `sink` at interpreter exit (and on SIGTERM, see above); reset it in a forked child."""
    _live.add(sink)
    closer = _at_exit[id(sink)] = functools.partial(_close_at_exit, sink)
    atexit.register(closer)
    if handle_sigterm:
        _install_sigterm_handler()


def unregister(sink: Closable) -> None:
    """The sink is closed: nothing more to do for it at exit."""
    _live.discard(sink)
    closer = _at_exit.pop(id(sink), None)
    if closer is not None:
        atexit.unregister(closer)
    _restore_sigterm_handler()


def _close_at_exit(sink: Closable) -> None:
    try:
        sink.close(sink.exit_timeout)
    except Exception as error:
        log.error("closing the ledger sink at exit failed: %s", error)


def _on_sigterm(signum, _frame) -> None:
    # Unwind the main thread; the interpreter then exits normally and atexit drains each sink.
    raise SystemExit(128 + signum)


def _install_sigterm_handler() -> None:
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _restore_sigterm_handler() -> None:
    global _sigterm_installed
    if not _sigterm_installed or _live or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _sigterm_installed = False


def _after_fork_in_child() -> None:
    for sink in list(_live):
        sink.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
