"""The reconciliation's window sums from the raw calls alone, as `ledger.store.snapshot_windows` made them before
the rollups: the oracle the rollups' reading is compared with (tests/store/test_reconcile_rollups.py).

One change: a call of no key counts as unattributed whatever its status and class (here a plain one was left
out, its key's NULL making the whole condition NULL).

The sums for reconciliation are made in SQL, in a fixed number of statements
whatever the number of accounts and windows: each account's windows are rows
of one temporary table, joined to the calls on `started_at`, and each row
keeps to its account's keys. A call counts in the window in which it started.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Sequence

from sqlalchemy import (Column, Integer, MetaData, String, Table, and_, case, func, literal, or_, select, true,
                        union_all)
from sqlalchemy.orm import Session

from ledger.accounting.pricing import CLEAN_CLASSES, ROUNDING
from ledger.accounting.pricing import OK as OK_CLASS
from ledger.accounting.records import ABORTED, COMPLETED, ERROR, FAILED
from ledger.accounting.reconcile import NO_OVERLAP, ClassSum, LedgerSums, Overlap
from ledger.accounting.snapshots import SnapshotPoint
from ledger.money import ZERO
from ledger.store.models import Call, UTCDateTime, as_utc
from ledger.store.snapshot_windows import LONGEST_CALL, Windows

CHARGE_TIME = func.coalesce(Call.ended_at, Call.started_at)


def _bounds(points: Sequence[SnapshotPoint], billing_settle: timedelta) -> list[tuple]:
    """(window, lo, hi, early_until, late_after, beyond_after) of each window of `points`.

    Window i is (sent[i], sent[i+1]]; window -1 holds the calls in flight at the first poll,
    window `last` those that started while the last poll was answered.
    """
    sent = [p.taken_at for p in points]
    answered = [p.answered_at or p.taken_at for p in points]
    last = len(points) - 1
    bounds = [(-1, sent[0] - LONGEST_CALL, sent[0], sent[0], sent[0] - billing_settle, sent[1] - billing_settle)]
    for i in range(last):
        after_next = sent[i + 2] - billing_settle if i + 2 <= last else sent[last] + LONGEST_CALL
        bounds.append((i, sent[i], sent[i + 1], answered[i], sent[i + 1] - billing_settle, after_next))
    bounds.append((last, sent[last], answered[last], answered[last], answered[last] + LONGEST_CALL, answered[last] + LONGEST_CALL))
    return bounds


def windows_and_overlaps_of(
    session: Session,
    accounts: Sequence[tuple[frozenset[str], Sequence[SnapshotPoint]]],
    all_fingerprints: frozenset[str],
    billing_settle: timedelta,
) -> list[Windows]:
    """For each account (its keys' fingerprints and its snapshots), the ledger's sums for each window between
    consecutive snapshots and the overlap of each poll: two statements for every account, and one more when
    calls outlast a window.

    A call is in the window in which it started (started_at in (sent_i, sent_i+1]):
    an account's windows partition the started_at index, so each call is read once
    for each account. At the same pass, each window's calls that may have been
    booked on the other side of a snapshot are summed: started before the poll's
    answer came back (`booked_early` of the window's first snapshot), or ended
    within the billing's settle time of the next poll's request (`booked_late`
    of that snapshot). A call that outlasts a whole window is read again.
    """
    found: list[Windows] = [([], [NO_OVERLAP] * len(points)) for _, points in accounts]
    wanted = [a for a, (_, points) in enumerate(accounts) if len(points) >= 2]
    if not wanted:
        return found
    window = _windows_table(session, [(a, *b) for a in wanted for b in _bounds(accounts[a][1], billing_settle)])
    # Two statements, each one pass over the windows' calls: each account's calls summed per window
    # (no sort: the windows come in order), and the few calls that are not plain (another key, not
    # completed, a finding) grouped finely. Plain calls are then what the first has and the second does not.
    joined = window.join(Call, and_(Call.started_at > window.c.lo, Call.started_at <= window.c.hi))
    mine = or_(*[and_(window.c.account == a, Call.key_fingerprint.in_(sorted(accounts[a][0]))) for a in wanted])
    plain = and_(mine, Call.status == COMPLETED, Call.pricing_class.in_(sorted(CLEAN_CLASSES)))
    if session.get_bind().dialect.name == "postgresql":
        totals = _totals(window, *_own_calls(window, wanted, accounts))
    else:
        totals = _totals(window, Call.__table__.c, joined, mine)
    has_charge, has_expected = Call.credits_charged.is_not(None), Call.credits_expected.is_not(None)
    others = (
        select(
            window.c.account, window.c.idx, Call.key_fingerprint, Call.pricing_class, Call.status, has_charge,
            has_expected, func.count(), func.sum(Call.credits_charged), func.sum(Call.credits_expected),
        )
        # Another account's calls are left out here as they would be below: only the account's own and those of
        # no known key count (reading each account's windows, every other account's calls are not plain).
        .select_from(joined).where(or_(Call.key_fingerprint.is_(None), ~plain), or_(mine, Call.key_fingerprint.is_(None),
                                               Call.key_fingerprint.not_in(sorted(all_fingerprints))))
        .group_by(window.c.account, window.c.idx, Call.key_fingerprint, Call.pricing_class, Call.status, has_charge,
                  has_expected)
    )
    last = {a: len(accounts[a][1]) - 1 for a in wanted}
    sums = {(a, i): _Window() for a in wanted for i in range(last[a])}
    early = {a: [ZERO] * (last[a] + 1) for a in wanted}
    late = {a: [ZERO] * (last[a] + 1) for a in wanted}
    outlasting: set[tuple[int, int]] = set()
    for a, idx, count, s_charged, s_expected, m_charged, s_early, s_late, n_beyond, n_ok, s_ok in session.execute(totals):
        if 0 <= idx < last[a]:
            sums[a, idx].total(count, s_charged, s_expected, m_charged, n_ok, s_ok)
        if idx >= 0:
            early[a][idx] += s_early or ZERO
        if idx + 1 <= last[a]:
            late[a][idx + 1] += s_late or ZERO
        if n_beyond and idx + 2 <= last[a]:
            outlasting.add((a, idx))
    for a, idx, fp, klass, status, with_charge, with_expected, count, s_charged, s_expected in session.execute(others):
        if not 0 <= idx < last[a]:
            continue
        if fp in accounts[a][0]:
            sums[a, idx].not_plain(klass, status, with_charge, with_expected, count, s_charged, s_expected)
        elif fp not in all_fingerprints:
            sums[a, idx].unattributed(count, s_charged)
    _booked_late_after_outlasting(session, accounts, sorted(outlasting), billing_settle, late)
    for a in wanted:
        overlaps = [Overlap(booked_late=late[a][k], booked_early=early[a][k]) for k in range(last[a] + 1)]
        found[a] = ([sums[a, i].value() for i in range(last[a])], overlaps)
    return found


def _totals(window: Table, c, source, mine):
    """Each account's calls summed per window, `c` the calls' columns as `source` has them."""
    is_ok = c.pricing_class == OK_CLASS
    charge_time = func.coalesce(c.ended_at, c.started_at)
    return (
        select(
            window.c.account, window.c.idx, func.count(), func.sum(c.credits_charged),
            func.sum(c.credits_expected), func.max(c.credits_charged),
            func.sum(case((c.started_at <= window.c.early_until, c.credits_charged))),
            func.sum(case((charge_time > window.c.late_after, c.credits_charged))),
            func.count(case((charge_time > window.c.beyond_after, 1))),
            func.count(case((is_ok, 1))), func.sum(case((is_ok, c.credits_charged))),
        )
        .select_from(source).where(mine).group_by(window.c.account, window.c.idx)
    )


def _own_calls(window: Table, wanted: list[int], accounts) -> tuple:
    """PostgreSQL: each account's calls in each window read through its keys, a seek on (key_fingerprint,
    started_at) per key and window (the calls' columns, the join, no condition left): each call is read once, not
    once for every account's windows (BENCHMARKS.md, "Dashboard"). OFFSET 0 keeps the subquery per row: pulled up
    into the join, the planner hashes every call of the ledger by key."""
    keys = union_all(*[select(literal(a, Integer).label("account"), literal(fp, String(64)).label("fingerprint"))
                       for a in wanted for fp in sorted(accounts[a][0])]
                     or [select(literal(-1, Integer).label("account"), literal(None, String(64)).label("fingerprint"))]
                     ).subquery("reconcile_keys")
    own = (select(Call.started_at, Call.ended_at, Call.credits_charged, Call.credits_expected, Call.pricing_class)
           .where(Call.key_fingerprint == keys.c.fingerprint, Call.started_at > window.c.lo,
                  Call.started_at <= window.c.hi)
           .offset(0).lateral("own_calls"))
    return own.c, window.join(keys, keys.c.account == window.c.account).join(own, true()), true()


def _booked_late_after_outlasting(session: Session, accounts, outlasting: list[tuple[int, int]],
                                  billing_settle: timedelta, late: dict[int, list]) -> None:
    """Calls longer than a window: booked late at every poll they outlast (one statement for all such windows)."""
    if not outlasting:
        return
    parts = []
    for n, (a, idx) in enumerate(outlasting):
        fingerprints, points = accounts[a]
        sent = [p.taken_at for p in points]
        lo, hi = sent[0] - LONGEST_CALL if idx < 0 else sent[idx], sent[idx + 1]
        parts.append(select(literal(n).label("part"), CHARGE_TIME.label("charged_at"), Call.credits_charged).where(
            Call.key_fingerprint.in_(sorted(fingerprints)), Call.started_at > lo, Call.started_at <= hi,
            CHARGE_TIME > sent[idx + 2] - billing_settle,
        ))
    for n, ended, charged in session.execute(union_all(*parts) if len(parts) > 1 else parts[0]):
        a, idx = outlasting[n]
        sent = [p.taken_at for p in accounts[a][1]]
        for k in range(idx + 2, len(sent)):
            if as_utc(ended) + billing_settle > sent[k]:
                late[a][k] += charged or ZERO


_WINDOWS = Table(
    "reconcile_windows", MetaData(),  # a temporary table of the session's, never part of the schema
    Column("account", Integer, primary_key=True),  # which account's windows (its place in the list asked for)
    Column("idx", Integer, primary_key=True),  # each account's windows come out in this order: no sort to group
    Column("lo", UTCDateTime), Column("hi", UTCDateTime), Column("early_until", UTCDateTime),
    Column("late_after", UTCDateTime), Column("beyond_after", UTCDateTime),
    prefixes=["TEMPORARY"],
)


def _windows_table(session: Session, bounds: list[tuple]) -> Table:
    """The windows as rows of a temporary table of this connection, emptied and filled anew."""
    connection = session.connection()
    _WINDOWS.create(connection, checkfirst=True)
    connection.execute(_WINDOWS.delete())
    connection.execute(_WINDOWS.insert(), [
        {"account": a, "idx": i, "lo": lo, "hi": hi, "early_until": early, "late_after": late, "beyond_after": beyond}
        for a, i, lo, hi, early, late, beyond in bounds
    ])
    if connection.dialect.name == "postgresql":
        # Without statistics the planner guesses a thousand windows and a plan costly enough for
        # JIT compilation, which alone takes longer than the statements.
        connection.exec_driver_sql("ANALYZE reconcile_windows")
        # Even so, the join's estimate grows with the accounts (each window's rows guessed, not its keys'): at 5
        # accounts hourly for a week the plan costs enough for JIT, 0.96 s of compiling for a 70 ms statement.
        # Off for the rest of this reconciliation's transaction (its own session).
        connection.exec_driver_sql("SET LOCAL jit = off")
    return _WINDOWS


class _Window:
    """A window's sums as the rows of the two statements come in."""

    def __init__(self) -> None:
        self.by_class: dict[str, list] = {}
        self.calls = self.aborted = self.unknown = self.other_calls = 0
        self.charged = self.priced_charged = self.expected = self.aborted_charged = self.max_charge = ZERO
        self.other_charged = ZERO
        # what is plain (completed, clean) of the account's calls: the totals less what is not
        self.plain = [0, ZERO, ZERO]  # calls, charged (= priced), expected
        self.plain_ok = [0, ZERO]  # of which in the class ok: calls, charged (= expected)

    def total(self, count, s_charged, s_expected, m_charged, n_ok, s_ok) -> None:
        self.calls += count
        self.charged += s_charged or ZERO
        self.max_charge = max(self.max_charge, m_charged or ZERO)
        self.plain = [count, s_charged or ZERO, s_expected or ZERO]
        self.plain_ok = [n_ok, s_ok or ZERO]

    def not_plain(self, klass, status, with_charge, with_expected, count, s_charged, s_expected) -> None:
        s_charged, s_expected = s_charged or ZERO, s_expected or ZERO
        self.plain[0] -= count
        self.plain[1] -= s_charged
        self.plain[2] -= s_expected
        if klass == OK_CLASS:
            self.plain_ok[0] -= count
            self.plain_ok[1] -= s_charged
        priced = s_charged if with_expected else ZERO
        expected = s_expected if with_charge else ZERO
        self._add(klass, count, s_charged, priced, expected)
        if status in (ABORTED, FAILED):
            self.aborted += count
            self.aborted_charged += s_charged
        if not with_charge and status != ERROR:
            self.unknown += count  # the platform may have charged it; the ledger cannot say how much

    def _add(self, klass, count, charged, priced, expected) -> None:
        self.priced_charged += priced
        self.expected += expected
        entry = self.by_class.setdefault(klass, [0, ZERO, ZERO, ZERO])
        entry[0] += count
        entry[1] += charged
        entry[2] += priced
        entry[3] += expected

    def unattributed(self, count, s_charged) -> None:
        self.other_calls += count
        self.other_charged += s_charged or ZERO

    def value(self) -> LedgerSums:
        calls, charged, expected = self.plain
        ok_calls, ok_charged = self.plain_ok
        if ok_calls:
            self._add(OK_CLASS, ok_calls, ok_charged, ok_charged, ok_charged)  # charged what the card says
        if calls - ok_calls:
            self._add(ROUNDING, calls - ok_calls, charged - ok_charged, charged - ok_charged, expected - ok_charged)
        self.plain = [0, ZERO, ZERO]
        self.plain_ok = [0, ZERO]
        if not (self.calls or self.other_calls):
            return LedgerSums()
        return LedgerSums(
            calls=self.calls,
            charged=self.charged,
            priced_charged=self.priced_charged,
            expected=self.expected,
            by_class=tuple(ClassSum(k, *v) for k, v in sorted(self.by_class.items())),
            aborted=self.aborted,
            aborted_charged=self.aborted_charged,
            unknown_charge=self.unknown,
            max_charge=self.max_charge,
            unattributed_calls=self.other_calls,
            unattributed_charged=self.other_charged,
        )
