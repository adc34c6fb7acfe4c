"""The 15-minute UTC grid the rollups sum on, and how a reader's time conditions split over it (no I/O).

Every zone's offset today is a multiple of 15 minutes (+05:45, -03:30,
Lord Howe's half-hour change), so a local day, week or month is a whole
number of buckets. A range [start, end) is its whole buckets (from the
rollup) and at most two raw edges where a bound is off the grid (a custom
range, a period to date, an old offset such as Monrovia's -00:44:30). A
condition on the recording time (`recorded_at > cutoff`) decides every
recorded bucket but the one holding the cutoff, even on the grid: a call
recorded at the cutoff exactly is not after it, the rest of its bucket is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

BUCKET = timedelta(minutes=15)


def floor(instant: datetime) -> datetime:
    """The start of the bucket holding `instant` (aware), in UTC."""
    if instant.tzinfo is None:
        raise ValueError("a naive instant: the ledger never guesses a zone")
    utc = instant.astimezone(timezone.utc)
    return utc - timedelta(minutes=utc.minute % 15, seconds=utc.second, microseconds=utc.microsecond)


def on_grid(instant: datetime) -> bool:
    return floor(instant) == instant


def ceil(instant: datetime) -> datetime:
    """The first bucket bound at or after `instant`, in UTC."""
    start = floor(instant)
    return start if start == instant else start + BUCKET


@dataclass(frozen=True, slots=True)
class RangeSplit:
    """[start, end) as whole buckets [whole_start, whole_end) (empty when equal) and the raw edges around them."""

    whole_start: datetime
    whole_end: datetime
    edges: tuple[tuple[datetime, datetime], ...]

    @property
    def has_whole(self) -> bool:
        return self.whole_start < self.whole_end


def split_range(start: datetime, end: datetime) -> RangeSplit:
    """The whole buckets of [start, end) and its edges off the grid (each shorter than a bucket)."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    low, high = ceil(start), floor(end)
    if end <= start:
        return RangeSplit(low, low, ())
    if high <= low:  # no whole bucket: all of it is raw
        return RangeSplit(low, low, ((start, end),))
    edges = tuple(edge for edge in ((start, low), (high, end)) if edge[0] < edge[1])
    return RangeSplit(low, high, edges)


@dataclass(frozen=True, slots=True)
class CutoffSplit:
    """Recorded buckets against `recorded_at > cutoff`: those before `mixed` are all at or before it, those after all
    after it; the bucket starting at `mixed` takes raw rows."""

    cutoff: datetime
    mixed: datetime

    def wholly_before(self, recorded_bucket: datetime) -> bool:
        return recorded_bucket < self.mixed

    def wholly_after(self, recorded_bucket: datetime) -> bool:
        return recorded_bucket > self.mixed


def split_cutoff(cutoff: datetime) -> CutoffSplit:
    return CutoffSplit(cutoff.astimezone(timezone.utc), floor(cutoff))


def mixed_buckets(started_bounds: Iterable[datetime], recorded_bounds: Iterable[datetime]) -> tuple[frozenset[datetime], frozenset[datetime]]:
    """The buckets a rollup cannot decide: of the start, those holding an off-grid bound of a `started_at >= t` /
    `< t` condition; of the recording, those holding a `recorded_at > t` / `<= t` bound (any t)."""
    started = frozenset(floor(t) for t in started_bounds if not on_grid(t))
    recorded = frozenset(split_cutoff(t).mixed for t in recorded_bounds)
    return started, recorded
