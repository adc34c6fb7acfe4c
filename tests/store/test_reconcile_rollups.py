"""The reconciliation's window sums from the rollups equal the raw computation (`raw_snapshot_windows`, the
computation before the rollups, kept as the oracle) over random ledgers, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger_rows import empty
from sqlalchemy import delete

from ledger.accounting.pricing import default_rate_book, price
from ledger.accounting.records import ABORTED, COMPLETED, ERROR, FAILED, REFUSED, CallRecord, ResponseFacts, Usage
from ledger.accounting.snapshots import SnapshotPoint
from ledger.store import snapshot_windows
from ledger.store.calls import insert_calls
from ledger.store.models import Call

import raw_snapshot_windows

T0 = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
QUARTER = timedelta(minutes=15)
ACCOUNTS = (frozenset({"fp-a1", "fp-a2"}), frozenset({"fp-b1"}))
EVERY_KEY = frozenset().union(*ACCOUNTS)
KEYS = ("fp-a1", "fp-a2", "fp-b1", "fp-x", None)  # fp-x: a key of no account; None: no key
STATUSES = (COMPLETED, COMPLETED, COMPLETED, ABORTED, FAILED, ERROR, REFUSED)
MICRO = timedelta(microseconds=1)


def _polls(rng: random.Random) -> list[datetime]:
    """Poll instants: on bucket edges, a microsecond off them, either side of a bucket's middle, anywhere."""
    at, found = T0 + QUARTER * rng.randrange(0, 4), []
    for _ in range(rng.randrange(2, 7)):
        found.append(at)
        at = T0 + QUARTER * rng.randrange(1, 12) + (at - T0) // QUARTER * QUARTER
        at += rng.choice([timedelta(0), MICRO, -MICRO, timedelta(minutes=7, seconds=29), timedelta(minutes=7, seconds=30),
                          timedelta(minutes=1), timedelta(minutes=14, seconds=59), timedelta(seconds=rng.randrange(900))])
        if rng.random() < 0.15:  # two polls in one bucket
            at = found[-1] + timedelta(seconds=rng.randrange(1, 300))
    return sorted(found)


def _points(rng: random.Random, polls: list[datetime]) -> list[SnapshotPoint]:
    zero = Decimal(0)
    return [SnapshotPoint(k, taken, zero, zero, zero,
                          None if rng.random() < 0.2 else taken + timedelta(seconds=rng.choice([0, 1, 3, 90])))
            for k, taken in enumerate(polls)]


def _started(rng: random.Random, polls: list[datetime]) -> datetime:
    poll = rng.choice(polls)
    floor = T0 + (poll - T0) // QUARTER * QUARTER
    return rng.choice([
        poll, poll + MICRO, poll - MICRO, floor, floor + QUARTER, floor + QUARTER - MICRO,  # on a poll, a bucket edge
        poll - timedelta(seconds=rng.randrange(1, 200)), poll + timedelta(seconds=rng.randrange(1, 20)),
        T0 - timedelta(hours=1) + timedelta(seconds=rng.randrange(4 * 3600)),  # anywhere, before the first poll too
    ])


def _call(rng: random.Random, n: int, polls: list[datetime]) -> CallRecord:
    started = _started(rng, polls)
    status = rng.choice(STATUSES)
    duration = rng.choice([None, timedelta(0), timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=3),
                           timedelta(seconds=rng.randrange(30, 119)), timedelta(seconds=119), timedelta(seconds=121),
                           timedelta(minutes=rng.randrange(3, 90))])  # long calls outlast windows
    usage = None if rng.random() < 0.15 else Usage(rng.randrange(1, 5000), rng.randrange(0, 2000), rng.randrange(0, 100))
    charged = None if rng.random() < 0.15 else Decimal(rng.randrange(0, 300)) / 100
    model = rng.choice(["gemini-3.1-pro-preview", "gemini-3.1-pro-preview", "no-such-model"])
    facts = ResponseFacts(f"chatcmpl-{n}", model, "stop", usage, charged)
    return CallRecord(f"call-{n}", started, status, "gemini-3.1-pro", False, http_status=503 if status == ERROR else 200,
                      ended_at=None if duration is None else started + duration, response=facts,
                      key_fingerprint=rng.choice(KEYS), refunded=rng.random() < 0.05)


def _ledger(ledger, seed: int):
    """A random ledger's calls (written, their rollups with them) and its accounts' points and settle time."""
    rng = random.Random(seed)
    accounts = [(keys, _points(rng, _polls(rng))) for keys in ACCOUNTS]
    polls = [p.taken_at for _, points in accounts for p in points]
    records = [_call(rng, n, polls) for n in range(rng.randrange(20, 80))]
    with ledger.session() as session:
        insert_calls(session, [(r, price(r, default_rate_book())) for r in records])
    return accounts, timedelta(seconds=rng.choice([0, 2, 5]))


def _comparable(windows):
    """The windows' sums with the largest charge kept only where an account has calls of unknown charge: the only
    place it is read (what those calls could have cost), and the only place the rollups' reading looks for it."""
    found = []
    for sums, overlaps in windows:
        if not any(s.unknown_charge for s in sums):
            sums = [replace(s, max_charge=Decimal(0)) for s in sums]
        found.append((sums, overlaps))
    return found


def _mismatches(ledger, seeds, seen: dict | None = None) -> list:
    found = []
    seen = {} if seen is None else seen
    for seed in seeds:
        empty(ledger)
        accounts, settle = _ledger(ledger, seed)
        with ledger.session() as session:
            new = snapshot_windows.windows_and_overlaps_of(session, accounts, EVERY_KEY, settle)
        with ledger.session() as session:
            old = raw_snapshot_windows.windows_and_overlaps_of(session, accounts, EVERY_KEY, settle)
        for keys, points in accounts:
            seen["buckets taken whole"] = seen.get("buckets taken whole", 0) + len(
                snapshot_windows._Plan(points, settle).buckets)
        for sums, overlaps in old:
            for name in ("aborted", "unknown_charge", "unattributed_calls"):
                seen[name] = seen.get(name, 0) + sum(getattr(s, name) for s in sums)
            for name in ("booked_late", "booked_early"):
                seen[name] = seen.get(name, 0) + sum(1 for o in overlaps if getattr(o, name))
        for account, ((sums, overlaps), (raw_sums, raw_overlaps)) in enumerate(zip(_comparable(new), _comparable(old))):
            found += [(seed, account, "window", i, a, b) for i, (a, b) in enumerate(zip(sums, raw_sums)) if a != b]
            found += [(seed, account, "poll", i, a, b) for i, (a, b) in enumerate(zip(overlaps, raw_overlaps)) if a != b]
    return found


def test_window_sums_from_the_rollups_equal_the_raw_ones_over_random_ledgers(ledger):
    seen: dict[str, int] = {}
    mismatches = _mismatches(ledger, range(40), seen)
    assert not mismatches, mismatches[0]
    assert len(seen) == 6 and all(seen.values()), seen  # every part of the sums was exercised


def test_a_wrong_bucket_edge_is_found(ledger, monkeypatch):
    """[floor, poll] read as (floor, poll]: a call started on the bucket's edge is counted in both windows."""
    monkeypatch.setattr(snapshot_windows, "_MICRO", timedelta(0))
    assert _mismatches(ledger, range(10))


def test_windows_whose_raw_calls_are_gone_still_sum_from_the_rollups(ledger):
    """Polls on bucket edges and no call on a poll: every sum of a window is whole buckets. With the raw calls
    deleted (as retention does), the calls, charges, classes and unattributed calls stay; what only the raw rows
    say (aborted streams, unknown charges, calls booked across a poll) is gone with them."""
    rng = random.Random(7)
    polls = [T0 + QUARTER * k for k in (0, 1, 3, 4, 8)]
    records = []
    for n in range(60):
        record = _call(rng, n, polls)
        if record.started_at in polls:
            record = record._replace(started_at=record.started_at + timedelta(seconds=1))
        records.append(record)
    with ledger.session() as session:
        insert_calls(session, [(r, price(r, default_rate_book())) for r in records])
    accounts = [(keys, [SnapshotPoint(k, t, Decimal(0), Decimal(0), Decimal(0), t) for k, t in enumerate(polls)])
                for keys in ACCOUNTS]
    settle = timedelta(seconds=2)
    with ledger.session() as session:
        before = snapshot_windows.windows_and_overlaps_of(session, accounts, EVERY_KEY, settle)
        session.execute(delete(Call))
    with ledger.session() as session:
        after = snapshot_windows.windows_and_overlaps_of(session, accounts, EVERY_KEY, settle)
    kept = ("calls", "charged", "priced_charged", "expected", "by_class", "unattributed_calls", "unattributed_charged")
    for (sums, _), (gone, _) in zip(before, after):
        assert [[getattr(s, name) for name in kept] for s in sums] == [[getattr(s, name) for name in kept] for s in gone]
    assert sum(s.calls for sums, _ in after for s in sums) > 0
