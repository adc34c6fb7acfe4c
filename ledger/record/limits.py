"""Hard budget limits (`enforce = true`): a call in an enforced budget's scope is refused once its limit is reached.

Each process holds room in the ledger for its calls in flight (`limit_holds`,
one row per budget and process), each counted at a pessimistic charge
(`accounting.hard_limits.pessimistic_charge`): CHARGE_MARGIN x the largest charge
the scope has seen (the ledger's, for a scope with none), or the rate card's
price of FIRST_CALL_TOKENS on a ledger with no charged call. A process admits
the n-th call it has in flight while

    spent (ledger) + the other processes' holds + (n - 1) x charge < limit

and refuses from then on, with HTTP 402 `budget_exceeded` (`call.Refusal`).
Its hold is rewritten while the budget's holds are locked (`store.limit_holds`):
every `limits_refresh_seconds` by a thread of the Recorder, and on the
caller's path when its calls use up what it holds. Far from the limit a hold
has a lease of calls to come, so the caller's path is a counter (no lock, no
ledger); near it, each call goes through the ledger.

The bound: however many threads and processes, the scope passes its limit by
less than one call, as long as no call in flight costs more than the charge
it is counted at. A call that lands in the ledger while its hold still counts
it is counted twice (until its process's next refresh): a call may be refused
a little early, never admitted past. When the ledger cannot be read, calls go
through (fail open), said once in the log.
"""

from __future__ import annotations

import math
import os
import itertools
import threading
import time
import weakref
from collections import deque
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from .. import redact
from ..accounting.budgets import Budget
from ..accounting.hard_limits import Admission, ByProject, Quota, admission, first_call_charge, pessimistic_charge, scope_rule
from ..accounting.parsing import UNREADABLE_MODEL, requested_model
from ..accounting.pricing import RateBook
from ..accounting.records import REFUSED
from ..config import Settings, configured_keys
from ..errors import describe
from ..exactjson import dumps
from ..money import ZERO
from ..store.budgets import key_fingerprints, own_calls, recent_largest_charge
from ..store.limit_reads import DayCharges, limit_reads
from ..store.engine import Ledger, current_revision, head_revision
from ..store.limit_holds import held_by_others, hold, lock_budget, release
from . import call
from .call import Refusal
from ..sink.capture import attribution_of

log = redact.logger("ledger.record")
PENDING_WINDOW = 300.0  # seconds: a call of this process older than this is taken to be in the ledger
HOLD_SECONDS = 30.0  # a hold not renewed for this long (at least 5 refreshes) is of a process that is gone
_live: "weakref.WeakSet[HardLimits]" = weakref.WeakSet()


def refusal(budget: Budget, spent: Decimal, limit: Decimal, period_label: str, in_flight: Decimal = ZERO) -> Refusal:
    flying = f", and calls in flight may cost {in_flight:,.2f} more," if in_flight > 0 else ""
    message = (f"credit-ledger refused this call before it was sent: budget {budget.name!r} "
               f"({budget.scope.describe()}, {period_label}) has spent {spent:,.2f}{flying} of its limit of {limit:,.2f} credits")
    body = dumps({"error": {"code": "budget_exceeded", "type": "billing_error", "message": message,
                            "budget": budget.name, "spent": spent, "limit": limit}}).encode()
    return Refusal(budget.name, spent, limit, body)


class _Limit:
    """One enforced budget's state: what the caller's path reads, and what a settle (`HardLimits._settle`) sets.

    The caller's path takes no lock: each call in the scope appends its start
    to `times`, then takes a slot (`next(counter)`, atomic); the k-th slot
    after the settle's `mark` is admitted while k < `room`. A settle takes its
    mark from the counter before it counts `times`, so every call whose slot is
    before the mark is among those it counts in flight and holds room for.
    """

    __slots__ = ("budget", "rule", "fingerprints", "limit", "spent", "charge", "pending", "held", "others", "asking",
                 "tickets", "closed", "counter", "quota", "times", "refused", "period_label", "days")

    def __init__(self, budget: Budget) -> None:
        self.budget, self.rule = budget, scope_rule(budget.scope)  # the scope's rule, compiled once
        self.fingerprints: frozenset[str] = frozenset()  # the keys a key scope stands for, as the last settle read them
        self.limit: Decimal | None = None  # None until a settle has read it: nothing is refused before
        self.spent = self.others = self.charge = ZERO
        self.pending = self.held = 0  # calls of this process in flight at the mark; calls its hold is for
        self.asking = 0  # calls waiting for a settle to find them room
        self.tickets = 0  # of them, those the last settle found room for (each admits one)
        self.closed = False  # the period's spend has reached the limit: refused without asking the ledger
        self.counter = itertools.count()
        self.quota = Quota(0, math.inf, -math.inf, math.inf)
        self.times: deque[float] = deque()  # when each call of the window that was checked started
        self.refused: deque[float] = deque()  # when each of them that was refused started (appended after `times`)
        self.period_label = ""
        self.days = DayCharges()  # the whole days' largest charges the settles read (`store.limit_reads`)

    def in_flight(self, slot: int) -> Decimal:
        """What this process's calls in flight, up to `slot`, are counted at."""
        return max(0, self.pending + slot - self.quota.mark) * self.charge


class HardLimits:
    """The enforced budgets of one Recorder, checked on the caller's path and refreshed in a thread of their own."""

    def __init__(self, budgets: tuple[Budget, ...], settings: Settings, secret: bytes, rate_book: RateBook,
                 *, refresh_seconds: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = tuple(_Limit(b) for b in budgets)
        self.settings, self.secret, self.rate_book, self.clock = settings, secret, rate_book, clock
        self.refresh_seconds = settings.limits_refresh_seconds if refresh_seconds is None else refresh_seconds
        self.needs_key = any(b.scope.by_key for b in budgets)
        self.needs_model = any(b.scope.model is not None for b in budgets)
        self.by_project = ByProject(self.limits, lambda limit: limit.budget.scope.project)
        self.enforcing = False  # off until the first refresh, and while the ledger cannot be read
        self.refreshes = 0
        self.ready = threading.Event()
        self._lock = threading.Lock()  # a settle's count, and a period's end (never taken by a call otherwise)
        self._settling = threading.Lock()  # one settle with the ledger at a time: a refresh's, or a call's near the limit
        self._configured: dict | None = None
        self._stop = threading.Event()
        self._ledger: Ledger | None = None
        self._thread: threading.Thread | None = None
        self._failing = False
        self._schema_seen = False
        _live.add(self)

    # -- the caller's path

    def check(self, core: Any, started: float, context: Any, attributed: dict | None, request: Any) -> Refusal | None:
        """None: the call may go. A Refusal: it is over an enforced budget's limit."""
        if not self.enforcing:
            return None
        if attributed:  # read as the call's record reads it (capture.attribution_of): unreadable tags are no tags
            project, user, tags, _ = attribution_of(
                (context.project, context.user, context.tags) if context is not None else None, attributed)
        elif context is not None:
            project, user, tags = context.project, context.user, context.tags
        else:
            project = user = tags = None
        candidates = self.by_project.candidates(project)
        if not candidates:
            return None
        key = model = None
        if self.needs_key:
            authorization = call.request_headers(request)[0]
            key = core.key_facts(authorization)[0] if authorization is not None else None
        if self.needs_model:
            model = _model_of(request)
        found = None
        for limit in candidates:
            if limit.rule is not None and not limit.rule(project, user, model, tags, key, limit.fingerprints):
                continue  # not in its scope (the budgets' rule, compiled: a call each candidate at most)
            mark, room, start, end = limit.quota
            if not start <= started < end:
                self._roll(limit, started)
                mark, room, start, end = limit.quota
            limit.times.append(started)  # before the slot: see _Limit
            slot = next(limit.counter)
            if slot - mark >= room and not self._admitted_by_ledger(limit, slot):
                limit.refused.append(started)
                if found is None:
                    found = refusal(limit.budget, limit.spent, limit.limit, limit.period_label,
                                    limit.others + limit.in_flight(slot))
        return found

    def _admitted_by_ledger(self, limit: _Limit, slot: int) -> bool:
        """A call past what this process holds: admitted if a settle with the ledger finds room for it.

        The calls that ask meanwhile are counted by one settle, which admits as
        many of them as there is room for (`tickets`). Once the ledger shows the
        period's spend at the limit, calls are refused without asking it. In
        the proxy this runs on a worker's event loop: near a limit, each call
        holds the worker for one short transaction (the price of a bound that
        holds across workers).
        """
        if limit.closed or limit.limit is None:
            return limit.limit is None
        with self._lock:
            limit.asking += 1
        with self._settling:
            # Asking no more before the next settle can start: a call still counted as asking once admitted would
            # get a ticket again, which the next call past the room takes (one call more than the room held).
            try:
                mark, room, _, _ = limit.quota
                if mark <= slot < mark + room:
                    return True  # a settle while this waited holds room for it
                if not limit.tickets and not limit.closed:
                    try:
                        self._settle(limit, self.clock())
                    except Exception as error:
                        self._failed(error)
                        return True  # fail open, as when the ledger cannot be read
                if limit.tickets:
                    limit.tickets -= 1
                    return True
                return False
            finally:
                with self._lock:
                    limit.asking -= 1

    def _roll(self, limit: _Limit, started: float) -> None:
        """A call of another period than the one last read: it starts from nothing until the next refresh.

        A rolling window never rolls: it slides, and each refresh reads it anew.
        """
        with self._lock:
            if limit.quota.start <= started < limit.quota.end:
                return  # another thread rolled it
            self._start_period(limit, started)

    def _start_period(self, limit: _Limit, at: float) -> None:
        period = limit.budget.period_at(datetime.fromtimestamp(at, timezone.utc))
        limit.period_label, limit.spent, limit.others, limit.pending, limit.held = period.label, ZERO, ZERO, 0, 0
        limit.closed, limit.tickets = False, 0  # nothing held in the new period yet: the next call asks the ledger
        limit.times.clear()
        limit.refused.clear()
        start, end = (-math.inf, math.inf) if limit.budget.rolling else (period.start.timestamp(), period.end.timestamp())
        limit.quota = Quota(next(limit.counter) + 1, 0 if limit.limit is not None else math.inf, start, end)

    # -- the refresh, off the caller's path

    def refresh(self) -> None:
        """Settle each enforced budget with the ledger; on failure, let calls through (said once)."""
        try:
            self._configured = None  # the configured keys are read again at each refresh
            now = self.clock()
            for limit in self.limits:
                with self._settling:
                    self._settle(limit, now)
        except Exception as error:
            self._failed(error)
        else:
            if self._failing:
                self._failing = False
                log.warning("credit-ledger: the ledger's spend can be read again; hard budget limits are enforced")
            self.enforcing = True
        finally:
            self.refreshes += 1
            self.ready.set()

    def _failed(self, error: BaseException) -> None:
        self.enforcing = False
        if not self._failing:
            self._failing = True
            log.error("credit-ledger: cannot read the ledger's spend for hard budget limits (%s); calls go "
                      "through unchecked until it can be read", describe(error))

    def _settle(self, limit: _Limit, now: float) -> None:
        """Read the budget's spend and the others' holds, and rewrite this process's hold, in one locked transaction.

        The calls waiting for room (`asking`) are counted in flight, and as many
        of them as fit get a ticket; the hold covers the calls in flight that
        were admitted, the tickets, and a lease for the calls to come.
        """
        if self._ledger is None:
            self._ledger = Ledger(self.settings.database_url, upgrade_schema=False)
        if not self._schema_seen:  # a new ledger its writer has not made yet, or not to the end: counted from nothing
            # (SQLite's DDL is not one transaction: the settle's tables appear one migration at a time)
            self._schema_seen = current_revision(self._ledger.engine) == head_revision()
        budget, instant = limit.budget, datetime.fromtimestamp(now, timezone.utc)
        period = budget.period_at(instant)
        cut = max(now - PENDING_WINDOW, period.start.timestamp())
        with self._lock:
            if period.label != limit.period_label:
                self._start_period(limit, now)
            mark = next(limit.counter) + 1  # every call with a slot before this is in `times` now
            used = max(0, mark - 1 - limit.quota.mark)  # slots since the last mark: this process's rate
            asking = limit.asking
            for kept in (limit.times, limit.refused):
                while kept and kept[0] < cut:
                    kept.popleft()
            in_window = len(limit.times) - len(limit.refused)  # a refusal still on its way: counted as sent
        card = self.rate_book.card_at(period.start)
        cap, first_call = budget.limit_credits(card.usd_per_credit), first_call_charge(card, budget.scope.model)
        if not self._schema_seen:  # nothing spent, nothing held by others; no hold can be written yet
            room = admission(cap, ZERO, ZERO, first_call, in_window, asking, used)
            self._publish(limit, mark, cap, ZERO, ZERO, first_call, room)
            return
        holder = call.id_prefix()
        with self._ledger.session() as session:
            lock_budget(session, budget.name)
            keys = _fingerprints(session, budget, self._configured_keys()) if budget.scope.by_key else None
            # Ours first: a call that lands between the two reads is counted twice (refused a little early),
            # never missed (admitted past the limit).
            ours = own_calls(session, holder, budget.scope, datetime.fromtimestamp(cut, timezone.utc), REFUSED, keys)
            found, largest = limit_reads(session, budget.scope, period.start, period.end, keys, limit.days)
            spent, largest = found.credits, largest or recent_largest_charge(session)
            charge = pessimistic_charge(largest, first_call)
            others = held_by_others(session, budget.name, period.label, holder, instant)
            room = admission(cap, spent, others, charge, max(0, in_window - ours), asking, used)
            hold(session, budget.name, period.label, holder, room.held * charge,
                 instant + timedelta(seconds=max(HOLD_SECONDS, 5 * self.refresh_seconds)))
        limit.fingerprints = keys or frozenset()
        self._publish(limit, mark, cap, spent, others, charge, room)  # once the hold is in the ledger

    def _publish(self, limit: _Limit, mark: int, cap: Decimal, spent: Decimal, others: Decimal, charge: Decimal,
                 room: Admission) -> None:
        """The settle's figures, for the caller's path: calls after `mark` are admitted within the room held."""
        with self._lock:
            limit.limit, limit.spent, limit.others, limit.charge = cap, spent, others, charge
            limit.pending, limit.held, limit.tickets = room.in_flight + room.tickets, room.held, room.tickets
            limit.closed = spent >= cap  # the spend only grows within a period
            limit.quota = limit.quota._replace(mark=mark, room=room.held - room.in_flight - room.tickets)

    def _configured_keys(self) -> dict:
        if self._configured is None:
            self._configured = _configured_fingerprints(self.settings, self.secret)
        return self._configured

    def start(self, wait: float = 2.0) -> "HardLimits":
        """Refresh in a thread of its own every refresh_seconds; wait up to `wait` for the first refresh."""
        self._stop.clear()
        self.ready.clear()
        self._thread = threading.Thread(target=self._run, name="credit-ledger-limits", daemon=True)
        self._thread.start()
        self.ready.wait(wait)
        return self

    def _run(self) -> None:
        self.refresh()
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self._thread = None
        if self._ledger is not None:
            try:
                if self._schema_seen:
                    with self._ledger.session() as session:
                        release(session, call.id_prefix())  # this process's calls are all ended: it holds nothing
            except Exception as error:
                log.warning("credit-ledger: could not release this process's hard-limit holds (%s); they expire",
                            describe(error))
            self._ledger.close()
            self._ledger = None
        _live.discard(self)

    def _after_fork(self) -> None:
        # The child's calls have new ids; its own thread reads the ledger on its own connections.
        self._lock = threading.Lock()
        self._settling = threading.Lock()
        for limit in self.limits:
            limit.times.clear()
            limit.refused.clear()
            limit.pending = limit.held = limit.tickets = limit.asking = 0
            limit.quota = limit.quota._replace(mark=next(limit.counter) + 1, room=0)  # the child holds nothing: its first call settles
        if self._ledger is not None:
            self._ledger.engine.dispose(close=False)
            self._ledger = None
        if self._thread is not None:
            self.start(wait=0)


def _model_of(request: Any) -> str | None:
    """The request's model as the upstream will read it (`parsing.requested_model`); a body not at hand to read
    (sent in pieces) is UNREADABLE_MODEL, counted by every model-scoped limit."""
    try:
        body = request.content
    except Exception:
        return UNREADABLE_MODEL
    return requested_model(body)


def _fingerprints(session: Any, budget: Budget, configured: dict) -> frozenset[str]:
    """The keys a scope's account and label stand for: as api_keys and the config know them (both, where both are given)."""
    scope, found = budget.scope, []
    if scope.key is not None:
        found.append(key_fingerprints(session, label=scope.key) | configured.get(("label", scope.key), frozenset()))
    if scope.account is not None:
        found.append(key_fingerprints(session, account=scope.account) | configured.get(("account", scope.account), frozenset()))
    return frozenset.intersection(*found)


def _configured_fingerprints(settings: Settings, secret: bytes) -> dict[tuple[str, str], frozenset[str]]:
    """The fingerprints of the configured keys whose value is at hand, by ("label", label) and ("account", name)."""
    found: dict[tuple[str, str], set[str]] = {}
    for fp, _, label, account in configured_keys(settings, secret):
        found.setdefault(("label", label), set()).add(fp)
        found.setdefault(("account", account), set()).add(fp)
    return {k: frozenset(v) for k, v in found.items()}


def enforced(settings: Settings) -> tuple[Budget, ...]:
    return tuple(b for b in settings.budgets if b.enforce)


def _after_fork_in_child() -> None:
    for limits in list(_live):
        limits._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
