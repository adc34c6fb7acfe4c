"""What the dashboard's benchmarks share: a viewer source that is always one viewer, and p50/p95 timing."""

from __future__ import annotations

import statistics
import time

from ledger.web.viewer import Viewer


class OneViewer:
    """Every request is this viewer (the sign-in is not what is measured)."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer

    def viewer_of(self, request) -> Viewer:
        return self.viewer


def percentiles(action, runs: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of `runs` calls of `action`, after one warm-up call."""
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
