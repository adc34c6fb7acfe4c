"""`run`, `simulate` and `demo`: the scheduled service, the API simulator, and a workload through the recorder."""

from __future__ import annotations

from typing import TextIO

from ..config import Settings
from ..service.jobs import run_service
from ..sim.demo import run_demo
from ..sim.server import SimulatorConfig, serve
from . import EXIT_OK


def run(settings: Settings) -> int:
    """The scheduled service (poll, reconcile, replay, reports, budgets, alerts) until SIGINT or SIGTERM."""
    return run_service(settings)


def simulate(out: TextIO, *, host: str = "127.0.0.1", port: int = 8765, seed: int = 0) -> int:
    """Serve the API simulator in the foreground until Ctrl-C or SIGTERM."""
    print(f"simulator on http://{host}:{port}/v1 (Ctrl-C stops it)", file=out, flush=True)
    serve(SimulatorConfig(seed=seed), host, port)
    return EXIT_OK


def demo(settings: Settings, out: TextIO, *, calls: int = 120, seed: int = 7) -> int:
    """A mixed workload of `calls` chat calls against the simulator, recorded, then checked."""
    return run_demo(settings, calls=calls, seed=seed, out=out)
