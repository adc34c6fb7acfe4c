"""The proxy's tests share one simulator per module (its clock stands still: see proxy_parts)."""

from __future__ import annotations

import pytest

from proxy_parts import fixed_clock_simulator


@pytest.fixture(scope="module")
def sim():
    with fixed_clock_simulator() as server:
        yield server
