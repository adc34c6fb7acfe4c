"""Hard budget limits (`enforce = true`): a call in an enforced budget's scope is refused once its limit is reached.

The spend comes from the ledger, re-read every `limits_refresh_seconds` by a
thread of the Recorder (off the caller's path), plus this process's own calls
that the ledger does not show yet: those it let through in the last
`PENDING_WINDOW` seconds less those of them the ledger holds, each counted at
the average charge of the scope's charged calls in the period (the ledger's
recent average while the scope has none). A call is let through while

    spent (ledger) + pending calls x average charge < limit

and refused from then on, with HTTP 402 `budget_exceeded` (`call.Refusal`).

How far it can overshoot: one process, however many threads call at once,
passes the limit by less than one call, give or take the difference between
the average and the actual charges of its pending calls (each call takes a
numbered slot, see `_Limit`; no lock on the caller's path). Each other
process adds what it lets through before its own next refresh sees this
one's calls (a refresh interval and its writer's lag, at its call rate).
A call that lands in the ledger while a refresh reads it may be counted
twice: the limit is then reached up to one call early. When the ledger
cannot be read the calls go through (fail open), said once in the log.
"""

from __future__ import annotations

import math
import os
import re
import itertools
import threading
import time
import weakref
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from .. import redact
from ..accounting.budgets import Budget
from ..accounting.pricing import RateBook
from ..accounting.records import REFUSED
from ..config import Settings, configured_keys
from ..errors import describe
from ..exactjson import dumps
from ..money import ZERO
from ..store.budgets import Spend, key_fingerprints, own_calls, recent_average_charge, spend
from ..store.engine import Ledger
from . import call
from .call import Refusal
from .capture import attribution_of

log = redact.logger("ledger.record")
PENDING_WINDOW = 300.0  # seconds: a call of this process older than this is taken to be in the ledger
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_live: "weakref.WeakSet[HardLimits]" = weakref.WeakSet()


def refusal(budget: Budget, spent: Decimal, limit: Decimal, period_label: str) -> Refusal:
    message = (f"credit-ledger refused this call before it was sent: budget {budget.name!r} "
               f"({budget.scope.describe()}, {period_label}) has spent {spent:,.2f} of its limit of {limit:,.2f} credits")
    body = dumps({"error": {"code": "budget_exceeded", "type": "billing_error", "message": message,
                            "budget": budget.name, "spent": spent, "limit": limit}}).encode()
    return Refusal(budget.name, spent, limit, body)


class _Limit:
    """One enforced budget's state: what the caller's path reads, and what a refresh sets.

    The caller's path takes no lock: each call in the scope appends its start
    to `times`, then takes a slot (`next(counter)`, atomic); the k-th slot
    after the refresh's `mark` is admitted while k < `room`. A refresh takes
    its mark from the counter before it counts `times`, so every call whose
    slot is before the mark is among those counted (a call between the two
    may be counted twice: refused a little early, never admitted past).
    """

    __slots__ = ("budget", "user", "model", "tags", "by_key", "fingerprints", "limit", "spent", "average", "pending",
                 "counter", "quota", "times", "refused", "period_label")

    def __init__(self, budget: Budget) -> None:
        scope = budget.scope
        self.budget, self.user, self.model, self.tags, self.by_key = budget, scope.user, scope.model, scope.tags, scope.by_key
        self.fingerprints: frozenset[str] = frozenset()
        self.limit: Decimal | None = None  # None until a refresh has read it: nothing is refused before
        self.spent = self.average = ZERO
        self.pending = 0  # calls of this process in the window the ledger did not show at the refresh
        self.counter = itertools.count()
        self.quota: tuple[int, float, float, float] = (0, math.inf, -math.inf, math.inf)  # (mark, room, period start, end)
        self.times: deque[float] = deque()  # when each call of the window that was checked started
        self.refused: deque[float] = deque()  # when each of them that was refused started (appended after `times`)
        self.period_label = ""

    def estimate(self, slot: int) -> Decimal:
        return self.spent + (self.pending + slot - self.quota[0]) * self.average

    def room(self) -> float:
        """Calls after the mark to admit: the k-th while spent + (pending + k) x average < limit, that is k < ceil(...)."""
        if self.limit is None:
            return math.inf
        if self.spent >= self.limit:
            return 0
        if self.average <= 0:
            return math.inf
        return max(0, math.ceil((self.limit - self.spent) / self.average - self.pending))

    def publish(self, start: float, end: float) -> None:
        self.quota = (next(self.counter) + 1, self.room(), start, end)


class HardLimits:
    """The enforced budgets of one Recorder, checked on the caller's path and refreshed in a thread of their own."""

    def __init__(self, budgets: tuple[Budget, ...], settings: Settings, secret: bytes, rate_book: RateBook,
                 *, refresh_seconds: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = tuple(_Limit(b) for b in budgets)
        self.settings, self.secret, self.rate_book, self.clock = settings, secret, rate_book, clock
        self.refresh_seconds = settings.limits_refresh_seconds if refresh_seconds is None else refresh_seconds
        self.needs_key = any(limit.by_key for limit in self.limits)
        self.needs_model = any(limit.model is not None for limit in self.limits)
        self.needs_user = any(limit.user is not None for limit in self.limits)
        self.needs_tags = any(limit.tags for limit in self.limits)
        by_project: dict[str, list[_Limit]] = {}
        for limit in self.limits:
            if limit.budget.scope.project is not None:
                by_project.setdefault(limit.budget.scope.project, []).append(limit)
        # What the caller's path looks at first: a call whose project has no enforced budget, where every
        # enforced budget names a project, costs a dict lookup.
        self._by_project = {project: tuple(found) for project, found in by_project.items()}
        self._unprojected = tuple(limit for limit in self.limits if limit.budget.scope.project is None)
        self.enforcing = False  # off until the first refresh, and while the ledger cannot be read
        self.refreshes = 0
        self.ready = threading.Event()
        self._lock = threading.Lock()  # a refresh's, and a period's end (never taken by a call otherwise)
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
        candidates = self._by_project.get(project, ()) if project is not None else ()
        if self._unprojected:
            candidates += self._unprojected
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
            if limit.user is not None and limit.user != user:
                continue
            if limit.model is not None and limit.model != model:
                continue
            if limit.tags and (tags is None or any(tags.get(k) != v for k, v in limit.tags)):
                continue
            if limit.by_key and key not in limit.fingerprints:
                continue
            mark, room, start, end = limit.quota
            if not start <= started < end:
                self._roll(limit, started)
                mark, room, start, end = limit.quota
            limit.times.append(started)  # before the slot: see _Limit
            slot = next(limit.counter)
            if slot - mark >= room:
                limit.refused.append(started)
                if found is None:
                    found = refusal(limit.budget, limit.estimate(slot), limit.limit, limit.period_label)
        return found

    def _roll(self, limit: _Limit, started: float) -> None:
        """A call of another period than the one last read: it starts from nothing until the next refresh.

        A rolling window never rolls: it slides, and each refresh reads it anew.
        """
        with self._lock:
            if limit.quota[2] <= started < limit.quota[3]:
                return  # another thread rolled it
            self._start_period(limit, started)

    def _start_period(self, limit: _Limit, at: float) -> None:
        period = limit.budget.period_at(datetime.fromtimestamp(at, timezone.utc))
        limit.period_label, limit.spent, limit.pending = period.label, ZERO, 0
        limit.times.clear()
        limit.refused.clear()
        if limit.budget.rolling:
            limit.publish(-math.inf, math.inf)
        else:
            limit.publish(period.start.timestamp(), period.end.timestamp())

    # -- the refresh, off the caller's path

    def refresh(self) -> None:
        """Read each enforced budget's spend from the ledger; on failure, let calls through (said once)."""
        try:
            self._refresh()
        except Exception as error:
            self.enforcing = False
            if not self._failing:
                self._failing = True
                log.error("credit-ledger: cannot read the ledger's spend for hard budget limits (%s); calls go "
                          "through unchecked until it can be read", describe(error))
        else:
            if self._failing:
                self._failing = False
                log.warning("credit-ledger: the ledger's spend can be read again; hard budget limits are enforced")
            self.enforcing = True
        finally:
            self.refreshes += 1
            self.ready.set()

    def _refresh(self) -> None:
        if self._ledger is None:
            self._ledger = Ledger(self.settings.database_url, upgrade_schema=False)
        now = self.clock()
        instant = datetime.fromtimestamp(now, timezone.utc)
        prefix = call.id_prefix()
        configured = _configured_fingerprints(self.settings, self.secret)
        if not self._schema_seen:
            self._schema_seen = self._ledger.has_table("calls")  # a new ledger its writer has not made yet: nothing spent
        with self._ledger.session() as session:
            average_all = None
            for limit in self.limits:
                budget = limit.budget
                period = budget.period_at(instant)
                cut = max(now - PENDING_WINDOW, period.start.timestamp())
                with self._lock:
                    if period.label != limit.period_label:
                        self._start_period(limit, now)
                    mark = next(limit.counter) + 1  # every call with a slot before this is in `times` now
                    for kept in (limit.times, limit.refused):
                        while kept and kept[0] < cut:
                            kept.popleft()
                    in_window = len(limit.times) - len(limit.refused)  # a refusal still on its way: counted as sent
                keys = _fingerprints(session, budget, configured) if budget.scope.by_key and self._schema_seen else None
                if self._schema_seen:
                    # Ours first: a call that lands between the two reads is counted twice (refused a little
                    # early), never missed (admitted past the limit).
                    ours = own_calls(session, prefix, budget.scope, datetime.fromtimestamp(cut, timezone.utc), REFUSED, keys)
                    spent = spend(session, budget.scope, period.start, period.end, keys, charged=True)
                else:
                    ours, spent = 0, Spend(ZERO, 0)
                if spent.charged:  # over the calls that were charged: refused and failed ones cost nothing, pending ones may
                    average = spent.average_charge
                elif not self._schema_seen:
                    average = ZERO
                else:
                    average = average_all = recent_average_charge(session) if average_all is None else average_all
                cap = budget.limit_credits(self.rate_book.card_at(period.start).usd_per_credit)
                with self._lock:
                    limit.spent, limit.average, limit.limit = spent.credits, average, cap
                    limit.pending, limit.fingerprints = max(0, in_window - ours), keys or frozenset()
                    _, _, start, end = limit.quota
                    limit.quota = (mark, limit.room(), start, end)

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
            self._ledger.close()
            self._ledger = None
        _live.discard(self)

    def _after_fork(self) -> None:
        # The child's calls have new ids; its own thread reads the ledger on its own connections.
        self._lock = threading.Lock()
        for limit in self.limits:
            limit.times.clear()
            limit.refused.clear()
            limit.pending = 0
        if self._ledger is not None:
            self._ledger.engine.dispose(close=False)
            self._ledger = None
        if self._thread is not None:
            self.start(wait=0)


def _model_of(request: Any) -> str | None:
    """The request's model, from its body's bytes (a streamed body: unknown)."""
    try:
        found = _MODEL.search(request.content, 0, 4096)
    except Exception:
        return None
    return found[1].decode("utf-8", "replace") if found else None


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
