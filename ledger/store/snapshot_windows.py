"""The ledger's sums over the windows between balance snapshots, for every account at once.

A call counts in the window in which it started: window i of an account is
(sent_i, sent_i+1] of its snapshots' requests. The sums come from the
15-minute rollups (`call_rollups`: per UTC bucket of `started_at`, key and
pricing class, exact integers) for the buckets a window holds, and from the
raw calls for the part of a bucket cut by a poll: at each poll the shorter
side of its bucket is read raw, added to one window and taken away from the
other, which takes the bucket whole. Integer sums subtract exactly.

What the rollups do not keep is read from the raw calls, and only where it
can be: a call's status (aborted streams, calls of unknown charge) and its
charge's nullness from one pass over the few calls that are not completed
or have no charge; each window's largest charge only for an account with
calls of unknown charge; and the calls that may be booked on the other side
of a poll (they need `ended_at`): those that started while the poll was
answered, those that started within NEAR_POLL of its request (less the
billing's settle time) and ended after it, and the calls longer than
NEAR_POLL, found by their duration in that one pass.

A fixed number of statements whatever the number of accounts and windows:
the temporary table of ranges, the rollups, the raw ranges (edges and
overlaps), the late calls near polls, the pass over the unusual calls, and two
more only when an account has calls of unknown charge (its windows whole, then
their largest charges).

Where retention deleted the raw calls, the rollups still give every sum; the
cut buckets are then counted whole in the window that takes them, and what
only the raw rows say (aborted streams, unknown charges, the largest charge,
the calls booked across a poll) is missing for those windows.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, and_, case, func, literal, or_, select, true, type_coerce
from sqlalchemy.orm import Session

from ..accounting.pricing import CLEAN_CLASSES, MISSING_CHARGE, MISSING_USAGE, UNPRICED_MODEL
from ..accounting.records import ABORTED, COMPLETED, ERROR, FAILED
from ..accounting.reconcile import NO_OVERLAP, ClassSum, LedgerSums, Overlap
from ..accounting.snapshots import SnapshotPoint
from ..money import ZERO, from_nano, to_nano
from .calls import sqlite_utc_text
from .models import Call, CallRollup, UTCDateTime, as_utc
from .rollup_tables import QUARTER, QUARTERLY

# Calls in flight at the first snapshot are looked for this far back: none is expected to last longer.
LONGEST_CALL = timedelta(hours=6)
# The calls that started this long before a poll's request (less the billing's settle time) are read raw for
# whether they ended after it; a longer call is found by its duration (the one pass over unusual calls).
NEAR_POLL = timedelta(minutes=2)
_SLACK = timedelta(seconds=1)  # SQLite measures a duration in days (a float): the pass takes calls a second shorter
_NO_EXPECTED = (MISSING_USAGE, UNPRICED_MODEL)  # classes whose calls have no expected cost
# Parts of the ranges table: a raw range of a window's sums (signed), the calls that started while a poll was
# answered, those near the next poll's request that may be booked after it, and a window whole (its largest charge).
EDGE, EARLY, LATE, WHOLE = 0, 1, 2, 3

Windows = tuple[list[LedgerSums], list[Overlap]]


def windows_and_overlaps(
    session: Session,
    fingerprints: frozenset[str],
    all_fingerprints: frozenset[str],
    points: Sequence[SnapshotPoint],
    billing_settle: timedelta,
) -> Windows:
    """The ledger's sums for each window between consecutive `points` of one account's keys (`fingerprints`), and
    the overlap of each poll (`windows_and_overlaps_of` for one account)."""
    (found,) = windows_and_overlaps_of(session, [(fingerprints, points)], all_fingerprints, billing_settle)
    return found


def _cut_up(moment: datetime) -> bool:
    """Whether the bucket holding a poll at `moment` goes whole to the window after it (its part before the poll
    read raw and taken away), rather than to the window before it (its part after the poll taken away)."""
    return moment - QUARTERLY.floor(moment) < QUARTER / 2


_MICRO = timedelta(microseconds=1)  # [a, b] is (a - 1 us, b]: every instant the ledger keeps is of whole microseconds


class _Plan:
    """One account's windows: the rollup buckets each takes whole, and the raw ranges (lo, hi] of its parts, each
    with the windows it goes to: (window, sign) for an EDGE (a poll's cut bucket serves the windows either side)."""

    def __init__(self, points: Sequence[SnapshotPoint], billing_settle: timedelta) -> None:
        sent = self.sent = [as_utc(p.taken_at) for p in points]
        answered = [as_utc(p.answered_at or p.taken_at) for p in points]
        last = self.last = len(points) - 1
        self.buckets: dict[datetime, list[int]] = {}  # bucket start: the windows taking it whole
        self.ranges: list[tuple[int, datetime, datetime, datetime | None]] = []  # part, lo, hi, late_after
        self.targets: list[list[tuple[int, int]]] = []  # of each range: (window, sign)
        self.cuts: dict[int, int] = {}  # poll: its cut bucket's raw part, a range's number
        self.first = sent[0] - LONGEST_CALL  # window -1: the calls in flight at the first poll
        self.near: list[datetime] = []  # of windows -1 .. last-1: the start of the range read for late calls
        for i in range(-1, last):
            lo, hi = (self.first, sent[0]) if i < 0 else (sent[i], sent[i + 1])
            late_after = hi - billing_settle
            near = max(lo, late_after - NEAR_POLL)
            self.near.append(near)
            self._range(LATE, near, hi, i, late_after)
            if i >= 0:
                self._range(EARLY, lo, min(answered[i], hi), i)
                self._window(i, lo, hi)
        self._range(EARLY, sent[last], answered[last], last)

    def _range(self, part: int, lo: datetime, hi: datetime, idx: int, late_after: datetime | None = None,
               sign: int = 1) -> int | None:
        if lo >= hi:
            return None
        self.ranges.append((part, lo, hi, late_after))
        self.targets.append([(idx, sign)])
        return len(self.ranges) - 1

    def _cut(self, k: int, idx: int, sign: int) -> None:
        """Window `idx` takes the raw part of poll k's cut bucket with `sign` (the part before the poll when the
        bucket goes whole to the window after it, else the part after)."""
        n = self.cuts.get(k)
        if n is None:
            moment, floor = self.sent[k], QUARTERLY.floor(self.sent[k])
            lo, hi = (floor - _MICRO, moment) if _cut_up(moment) else (moment, floor + QUARTER - _MICRO)
            n = self.cuts[k] = len(self.ranges)
            self.ranges.append((EDGE, lo, hi, None))
            self.targets.append([])
        self.targets[n].append((idx, sign))

    def _window(self, i: int, lo: datetime, hi: datetime) -> None:
        floor = QUARTERLY.floor
        if lo >= hi:
            return
        if floor(lo) == floor(hi):  # within a bucket: read raw
            self._range(EDGE, lo, hi, i)
            return
        if _cut_up(lo):  # the bucket whole, less its part up to the poll
            start = floor(lo)
            self._cut(i, i, -1)
        else:  # the part after the poll
            start = floor(lo) + QUARTER
            self._cut(i, i, 1)
        if _cut_up(hi):  # the part up to the poll
            end = floor(hi)
            self._cut(i + 1, i, 1)
        else:  # the bucket whole, less its part after the poll
            end = floor(hi) + QUARTER
            self._cut(i + 1, i, -1)
        at = start
        while at < end:
            self.buckets.setdefault(at, []).append(i)
            at += QUARTER

    def window_of(self, started: datetime) -> int:
        """The window (-1 .. last) a call that started at `started` is in; -2 or last+1 outside them all."""
        if started <= self.first:
            return -2
        return bisect_left(self.sent, started) - 1


def windows_and_overlaps_of(
    session: Session,
    accounts: Sequence[tuple[frozenset[str], Sequence[SnapshotPoint]]],
    all_fingerprints: frozenset[str],
    billing_settle: timedelta,
) -> list[Windows]:
    """For each account (its keys' fingerprints and its snapshots), the ledger's sums for each window between
    consecutive snapshots and the overlap of each poll (the module's doc says how)."""
    found: list[Windows] = [([], [NO_OVERLAP] * len(points)) for _, points in accounts]
    wanted = [a for a, (_, points) in enumerate(accounts) if len(points) >= 2]
    if not wanted:
        return found
    plans = {a: _Plan(accounts[a][1], billing_settle) for a in wanted}
    ranges = _ranges_table(session, [(a, n, *r) for a in wanted for n, r in enumerate(plans[a].ranges)])
    sums = {(a, i): _Window() for a in wanted for i in range(plans[a].last)}
    _from_rollups(session, accounts, wanted, plans, all_fingerprints, sums)
    early = {a: [0] * (plans[a].last + 1) for a in wanted}
    late = {a: [0] * (plans[a].last + 1) for a in wanted}
    c, joined = _range_calls(session, ranges)
    mine = or_(*[and_(ranges.c.account == a, c.key_fingerprint.in_(sorted(accounts[a][0]))) for a in wanted])
    unknown = or_(c.key_fingerprint.is_(None), c.key_fingerprint.not_in(sorted(all_fingerprints)))
    parts = (
        select(ranges.c.account, ranges.c.n, ranges.c.part, c.key_fingerprint, c.pricing_class,
               func.count(), func.sum(c.credits_charged), func.sum(c.credits_expected))
        .select_from(joined)
        .where(ranges.c.part.in_([EDGE, EARLY]), or_(mine, and_(ranges.c.part == EDGE, unknown)))
        .group_by(ranges.c.account, ranges.c.n, ranges.c.part, c.key_fingerprint, c.pricing_class)
    )
    for a, n, part, fp, klass, count, charged, expected in session.execute(parts):
        for idx, sign in plans[a].targets[n]:
            if part == EARLY:
                if fp in accounts[a][0]:
                    early[a][idx] += _nano(charged)
            elif fp in accounts[a][0]:
                sums[a, idx].add(klass, sign * count, sign * _nano(charged), sign * _nano(expected))
            elif fp not in all_fingerprints:
                sums[a, idx].unattributed(sign * count, sign * _nano(charged))
    charge_time = func.coalesce(c.ended_at, c.started_at)
    near = (select(ranges.c.account, ranges.c.n, charge_time, c.credits_charged).select_from(joined)
            .where(ranges.c.part == LATE, mine, charge_time > ranges.c.late_after))
    for a, n, ended, charged in session.execute(near):
        ((idx, _),) = plans[a].targets[n]
        _booked_late(plans[a], late[a], idx, as_utc(ended), charged, billing_settle)
    with_unknown = _unusual(session, accounts, wanted, plans, billing_settle, sums, late)
    if with_unknown:  # each window whole, of the accounts with calls of unknown charge: their largest charge
        whole = [(a, len(plans[a].ranges) + i, WHOLE, plans[a].sent[i], plans[a].sent[i + 1], None)
                 for a in with_unknown for i in range(plans[a].last)]
        _insert_ranges(session.connection(), whole)
        largest = (select(ranges.c.account, ranges.c.n, func.max(c.credits_charged)).select_from(joined)
                   .where(ranges.c.part == WHOLE, mine).group_by(ranges.c.account, ranges.c.n))
        for a, n, charged in session.execute(largest):
            sums[a, n - len(plans[a].ranges)].max_charge = charged or ZERO
    for a in wanted:
        last = plans[a].last
        overlaps = [Overlap(booked_late=from_nano(late[a][k]), booked_early=from_nano(early[a][k]))
                    for k in range(last + 1)]
        found[a] = ([sums[a, i].value() for i in range(last)], overlaps)
    return found


def _range_calls(session: Session, ranges: Table) -> tuple:
    """(the calls' columns, the ranges joined to the calls that started in each). On PostgreSQL each range reads its
    calls through the `started_at` index, a LATERAL subquery per range (OFFSET 0 keeps it per row): joined plainly,
    with the accounts' keys OR'ed in the WHERE, the planner read every call of the ledger once for each range
    (a sequential scan nested in a loop over the ranges: minutes at 10,000,000 calls, BENCHMARKS.md)."""
    if session.get_bind().dialect.name != "postgresql":
        return Call.__table__.c, ranges.join(Call, and_(Call.started_at > ranges.c.lo, Call.started_at <= ranges.c.hi))
    own = (select(Call.started_at, Call.ended_at, Call.key_fingerprint, Call.pricing_class, Call.credits_charged,
                  Call.credits_expected)
           .where(Call.started_at > ranges.c.lo, Call.started_at <= ranges.c.hi)
           .offset(0).lateral("range_calls"))
    return own.c, ranges.join(own, true())


def _nano(amount) -> int:
    return 0 if amount is None else to_nano(amount)


def _booked_late(plan: _Plan, late: list[int], idx: int, ended: datetime, charged, billing_settle: timedelta) -> None:
    """A call of window `idx` that ended at `ended`: booked late at every later poll within the settle time of it."""
    for k in range(idx + 1, plan.last + 1):
        if ended + billing_settle > plan.sent[k]:
            late[k] += _nano(charged)
        else:
            break


def _owners(accounts, wanted: list[int]) -> dict[str, list[int]]:
    """{key fingerprint: its accounts} (one, but the same key may be given to two), of the accounts read."""
    owners: dict[str, list[int]] = {}
    for a in wanted:
        for fp in sorted(accounts[a][0]):
            owners.setdefault(fp, []).append(a)
    return owners


def _from_rollups(session: Session, accounts, wanted: list[int], plans: dict[int, _Plan],
                  all_fingerprints: frozenset[str], sums: dict) -> None:
    """The buckets each window takes whole, summed from `call_rollups` per bucket, account and pricing class."""
    buckets = [b for a in wanted for b in plans[a].buckets]
    if not buckets:
        return
    owners = _owners(accounts, wanted)
    groups = sorted({tuple(found) for found in owners.values()})
    # Each key as the number of its accounts' group (a CASE: a join to a list of keys costs SQLite a scan of it a row)
    owner = case({fp: groups.index(tuple(found)) for fp, found in owners.items()}, value=CallRollup.key_fingerprint,
                 else_=None) if owners else literal(None, Integer)
    rollup = CallRollup
    statement = (
        select(rollup.bucket_start, owner, rollup.pricing_class, func.sum(rollup.calls),
               func.sum(type_coerce(rollup.credits_charged, BigInteger)),  # nano-credits, as the sums are made
               func.sum(type_coerce(rollup.credits_expected, BigInteger)))
        .where(rollup.bucket_start >= min(buckets), rollup.bucket_start <= max(buckets),
               or_(rollup.key_fingerprint.in_(sorted(owners)), rollup.key_fingerprint.is_(None),
                   rollup.key_fingerprint.not_in(sorted(all_fingerprints))))
        .group_by(rollup.bucket_start, owner, rollup.pricing_class)
    )
    for bucket, group, klass, count, charged, expected in session.execute(statement):
        bucket, count, charged, expected = as_utc(bucket), int(count), int(charged or 0), int(expected or 0)
        for account in (wanted if group is None else groups[group]):
            for idx in plans[account].buckets.get(bucket, ()):
                if group is None:
                    sums[account, idx].unattributed(count, charged)
                else:
                    sums[account, idx].add(klass, count, charged, expected or 0)


def _unusual(session: Session, accounts, wanted: list[int], plans: dict[int, _Plan], billing_settle: timedelta,
             sums: dict, late: dict) -> list[int]:
    """One pass over the accounts' calls that are not completed, have no charge, or last longer than NEAR_POLL:
    aborted streams and calls of unknown charge in each window, and the long calls booked after a later poll than
    the near ones. The accounts with calls of unknown charge are returned."""
    low = min(plans[a].first for a in wanted)
    high = max(plans[a].sent[-1] for a in wanted)
    if session.get_bind().dialect.name == "postgresql":
        long = Call.ended_at - Call.started_at > NEAR_POLL - _SLACK
    else:
        long = func.julianday(Call.ended_at) - func.julianday(Call.started_at) > (NEAR_POLL - _SLACK).total_seconds() / 86400
    not_plain = or_(Call.status != COMPLETED, Call.pricing_class.not_in(sorted(CLEAN_CLASSES)))
    statement = (
        select(Call.key_fingerprint, Call.started_at, Call.ended_at, Call.status, Call.credits_charged,
               Call.pricing_class)
        # every key's (a few rows): a condition on the keys would have SQLite seek each key's calls, not one range
        .where(Call.started_at > low, Call.started_at <= high,
               or_(Call.status.in_([ABORTED, FAILED]),
                   and_(Call.credits_charged.is_(None), Call.status != ERROR, not_plain), long))
    )
    with_unknown = set()
    owners = _owners(accounts, wanted)
    for fp, started, ended, status, charged, klass in session.execute(statement):
        started = as_utc(started)
        for a in owners.get(fp, ()):
            plan = plans[a]
            idx = plan.window_of(started)
            if not -1 <= idx < plan.last:
                continue
            if idx >= 0:
                if status in (ABORTED, FAILED):
                    sums[a, idx].aborted_call(_nano(charged))
                if charged is None and status != ERROR and (status != COMPLETED or klass not in CLEAN_CLASSES):
                    sums[a, idx].unknown += 1  # the platform may have charged it; the ledger cannot say how much
                    with_unknown.add(a)
            if ended is not None and started <= plan.near[idx + 1]:
                ended = as_utc(ended)
                if ended > plan.sent[idx + 1] - billing_settle:
                    _booked_late(plan, late[a], idx, ended, charged, billing_settle)
    return sorted(with_unknown)


_RANGES = Table(
    "reconcile_ranges", MetaData(),  # a temporary table of the session's, never part of the schema
    Column("account", Integer, primary_key=True),  # which account's windows (its place in the list asked for)
    Column("n", Integer, primary_key=True),
    Column("part", Integer),  # EDGE, EARLY, LATE or WHOLE (the windows it goes to: the account's _Plan.targets)
    Column("lo", UTCDateTime), Column("hi", UTCDateTime),  # the calls that started in (lo, hi]
    Column("late_after", UTCDateTime),  # a LATE's: a call charged after this may be booked after the poll
    prefixes=["TEMPORARY"],
)


_INSERT = "INSERT INTO reconcile_ranges (account, n, part, lo, hi, late_after) "


def _insert_ranges(connection, rows: list[tuple]) -> None:
    """The rows (account, n, part, lo, hi, late_after) as the driver takes them, in one statement: PostgreSQL's as
    arrays (a statement a row costs a round trip's work each), SQLite's times as the texts UTCDateTime stores."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            _INSERT + "SELECT * FROM unnest(%s::integer[], %s::integer[], %s::integer[], %s::timestamptz[], "
            "%s::timestamptz[], %s::timestamptz[])", tuple(list(column) for column in zip(*rows)))
    else:
        connection.exec_driver_sql(_INSERT + "VALUES (?, ?, ?, ?, ?, ?)",
                                   [(a, n, part, sqlite_utc_text(lo), sqlite_utc_text(hi), sqlite_utc_text(late))
                                    for a, n, part, lo, hi, late in rows])


def _ranges_table(session: Session, rows: list[tuple]) -> Table:
    """The raw ranges as rows of a temporary table of this connection, emptied and filled anew."""
    connection = session.connection()
    _RANGES.create(connection, checkfirst=True)
    connection.execute(_RANGES.delete())
    _insert_ranges(connection, rows)
    if connection.dialect.name == "postgresql":
        # Without statistics the planner guesses a thousand rows and a plan costly enough for JIT compilation,
        # which alone takes longer than the statements; off for the rest of this reconciliation's transaction.
        connection.exec_driver_sql("ANALYZE reconcile_ranges")
        connection.exec_driver_sql("SET LOCAL jit = off")
    return _RANGES


class _Window:
    """A window's sums as the statements' rows come in: integers (credits in nano-credits), each pricing class's
    calls, charges and expected costs of the account's calls."""

    def __init__(self) -> None:
        self.by_class: dict[str, list[int]] = {}
        self.aborted = self.unknown = self.other_calls = 0
        self.aborted_charged = self.other_charged = 0
        self.max_charge = ZERO

    def add(self, klass: str, count: int, charged: int, expected: int) -> None:
        entry = self.by_class.get(klass)
        if entry is None:
            entry = self.by_class[klass] = [0, 0, 0]
        entry[0] += count
        entry[1] += charged
        entry[2] += expected

    def unattributed(self, count: int, charged: int) -> None:
        self.other_calls += count
        self.other_charged += charged

    def aborted_call(self, charged: int) -> None:
        self.aborted += 1
        self.aborted_charged += charged

    def value(self) -> LedgerSums:
        """The window's LedgerSums. A class's charges count as priced unless its calls have no expected cost, and its
        expected costs unless its calls have no charge (the pricing classes say which: `pricing.classify`)."""
        classes = []
        for klass, (count, charged, expected) in sorted(self.by_class.items()):
            if count:
                priced = 0 if klass in _NO_EXPECTED else charged
                classes.append(ClassSum(klass, count, from_nano(charged), from_nano(priced),
                                        from_nano(0 if klass == MISSING_CHARGE else expected)))
        calls = sum(c.calls for c in classes)
        if not (calls or self.other_calls):
            return LedgerSums()
        return LedgerSums(
            calls=calls,
            charged=from_nano(sum(v[1] for v in self.by_class.values())),
            priced_charged=sum((c.priced_charged for c in classes), ZERO),
            expected=sum((c.expected for c in classes), ZERO),
            by_class=tuple(classes),
            aborted=self.aborted,
            aborted_charged=from_nano(self.aborted_charged),
            unknown_charge=self.unknown,
            max_charge=self.max_charge,
            unattributed_calls=self.other_calls,
            unattributed_charged=from_nano(self.other_charged),
        )
