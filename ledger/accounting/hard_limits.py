"""Which enforced budgets a call counts in, and whether its slot is within what its process holds (no I/O).

The facts are the call's as its record will read them (project, user, tags),
its model as the upstream reads it and its key's fingerprint; the scope rule is
the budgets' own (`Scope.matches`), compiled once per budget. What a settle
with the ledger decides is `budgets.admission`; the shell is `ledger.record.limits`.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Mapping, NamedTuple, Protocol, Sequence, TypeVar

from .budgets import Scope, ScopeTest

Rule = ScopeTest  # (project, user, model, tags, fingerprint, fingerprints) -> whether the call is in the scope


class Quota(NamedTuple):
    """What a settle leaves a process for its calls to come: the `room`-th slot after `mark` is refused, in the
    period [start, end) (seconds since the epoch; unbounded for a rolling window)."""

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
    dict lookup (before its key and model are read); and whether any of them has a rule to run."""

    __slots__ = ("_named", "_any")

    def __init__(self, limits: Sequence[S], project_of: Callable[[S], str | None]) -> None:
        anywhere = tuple(limit for limit in limits if project_of(limit) is None)
        named: dict[str, tuple[S, ...]] = {}
        for limit in limits:
            if project_of(limit) is not None:
                named[project_of(limit)] = named.get(project_of(limit), ()) + (limit,)
        self._named = {project: _with_rules(found + anywhere) for project, found in named.items()}
        self._any = _with_rules(anywhere)

    def candidates(self, project: str | None) -> tuple[tuple[S, ...], bool]:
        """The budgets a call of `project` may count in (its project's, and those of any project), and whether
        `counted_in` must run their rules (else it is in each)."""
        return self._named.get(project, self._any)  # (no budget names the project None)


def _with_rules(limits: tuple[S, ...]) -> tuple[tuple[S, ...], bool]:
    return limits, any(limit.rule is not None for limit in limits)


def counted_in(candidates: Sequence[S], project: str | None, user: str | None, model: str | None,
               tags: Mapping[str, str] | None, fingerprint: str | None) -> list[S]:
    """Those of a call's `candidates` (`ByProject.candidates`) whose scope the call is in."""
    counted = []
    for limit in candidates:
        if limit.rule is None or limit.rule(project, user, model, tags, fingerprint, limit.fingerprints):
            counted.append(limit)
    return counted


def within(slot: int, quota: Quota) -> bool:
    """A call's slot is within what its process holds: admitted without asking the ledger."""
    return slot - quota.mark < quota.room
