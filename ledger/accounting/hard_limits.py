"""Hard limits as values: which enforced budgets a call counts in, and how many calls a process may admit (no I/O).

A call's facts (project, user and tags as its record reads them, its model as
the upstream reads it, its key's fingerprint) meet the budgets' own scope rule
(`Scope.matches`, compiled once per budget); a settle's figures (spend, others'
holds, charge, calls in flight) meet `admission`. The shell is `ledger.record.limits`.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any, Callable, Generic, NamedTuple, Protocol, Sequence, TypeVar

from .budgets import Scope, ScopeTest
from .pricing import RateCard

# A call in flight is counted at twice the largest charge the scope (or, for a scope with none, the ledger)
# has seen: calls of one workload vary, and a call that costs more than this may pass the limit by more.
CHARGE_MARGIN = 2
# With no charged call to go by, a call in flight is counted at the rate card's price of this many prompt and
# completion tokens (2.24 credits for gemini-3.1-pro): more than most chat calls cost.
FIRST_CALL_TOKENS = (2000, 2000)
# A process far from a limit holds a share of the room left for calls it has not made yet, so that its
# calls need not go through the ledger; near the limit (fewer calls left than this) it holds what it uses.
LEASE_SHARE = 8
CHAT_ENDPOINT = "/chat/completions"

Rule = ScopeTest  # (project, user, model, tags, fingerprint, fingerprints) -> whether the call is in the scope


class Quota(NamedTuple):
    """What a settle leaves a process for its calls to come: the slots from `mark` to `mark + room` (excluded)
    are admitted in the period [start, end) (seconds since the epoch; unbounded for a rolling window)."""

    mark: int
    room: float
    start: float
    end: float


class Scoped(Protocol):
    """An enforced budget as the caller's path holds it: its compiled rule and the keys its scope stands for."""

    rule: Rule | None
    fingerprints: frozenset[str]


S = TypeVar("S", bound=Scoped)


def scope_rule(scope: Scope) -> Rule | None:
    """`Scope.matches`, compiled once, for the calls `ByProject` finds a scope's candidate (its project's): None when
    the scope names nothing else (every such call is in it), else the tests of the fields it names but the project."""
    tests = scope.tests(project=False)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]

    def every(*facts: Any) -> bool:
        for test in tests:
            if not test(*facts):
                return False
        return True

    return every


class ByProject(Generic[S]):
    """Enforced budgets by the project their scope names, with those of any project: what a call may count in is a
    dict lookup (before its key and model are read)."""

    __slots__ = ("_named", "_any")

    def __init__(self, limits: Sequence[S], project_of: Callable[[S], str | None]) -> None:
        anywhere = tuple(limit for limit in limits if project_of(limit) is None)
        named: dict[str, tuple[S, ...]] = {}
        for limit in limits:
            if project_of(limit) is not None:
                named[project_of(limit)] = named.get(project_of(limit), ()) + (limit,)
        self._named = {project: found + anywhere for project, found in named.items()}
        self._any = anywhere

    def candidates(self, project: str | None) -> tuple[S, ...]:
        """The budgets a call of `project` may count in: its project's, and those of any project. The call is in
        each whose `rule` is None or passes."""
        return self._named.get(project, self._any)  # (no budget names the project None)


def pessimistic_charge(largest: Decimal | None, first_call: Decimal) -> Decimal:
    """What a call in flight is counted at: CHARGE_MARGIN x the largest charge seen, else the first call's estimate."""
    return largest * CHARGE_MARGIN if largest else first_call


def first_call_charge(card: RateCard, model: str | None) -> Decimal:
    """A call in flight with no charge to go by: the rate card's price of FIRST_CALL_TOKENS at the model's rate (for
    a scope of any model, or a model the card does not know, at the dearest chat rate: the calls a limit sees)."""
    found = card.rate_for(model)
    rates = [found[1]] if found is not None else [r for r in card.rates.values() if r.endpoint.endswith(CHAT_ENDPOINT)]
    return max((rate.cost(*FIRST_CALL_TOKENS) for rate in rates or card.rates.values()), default=Decimal(1))


def calls_admitted(limit: Decimal, spent: Decimal, held_by_others: Decimal, charge: Decimal) -> int:
    """How many calls one process may have in flight: the n-th starts while spent + others + (n - 1) x charge < limit.

    So the last call admitted starts under the limit, and the calls in flight
    pass it by less than one call as long as none costs more than `charge`.
    """
    room = limit - spent - held_by_others
    if room <= 0:
        return 0
    return int((room / charge).to_integral_value(rounding=ROUND_CEILING))  # (n - 1) x charge < room


def calls_to_hold(admitted: int, in_flight: int, used: int) -> int:
    """How many calls a process holds room for: those in flight, and a lease for the next ones.

    The lease is what it used since it last held (its rate), or a LEASE_SHARE-th
    of the room left when that is more, never more than the room.
    """
    free = admitted - in_flight
    if free <= 0:
        return in_flight  # what is in flight is held whatever it comes to: it cannot be called back
    return in_flight + min(free, max(used, free // LEASE_SHARE))


class Admission(NamedTuple):
    """What one settle of a hard limit decides for a process: its calls in flight that were admitted, the waiting
    calls it admits now, and the calls it holds room for (those, and a lease for the calls to come)."""

    in_flight: int
    tickets: int
    held: int


def admission(limit: Decimal, spent: Decimal, held_by_others: Decimal, charge: Decimal, pending: int, asking: int,
              used: int) -> Admission:
    """A process's admission: `pending` calls of it not in the ledger, of which `asking` wait for room."""
    admitted = calls_admitted(limit, spent, held_by_others, charge)
    in_flight = max(0, pending - asking)
    tickets = max(0, min(asking, admitted - in_flight))
    return Admission(in_flight, tickets, calls_to_hold(admitted, in_flight + tickets, used))
