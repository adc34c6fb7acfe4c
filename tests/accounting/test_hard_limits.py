"""The hard limits' admission core on its own: which enforced budgets a call counts in, by the budgets' own scope
rule (`Scope.matches`, and the rule compiled from it once per budget), and whether a slot is within a quota."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ledger.accounting.budgets import Scope
from ledger.accounting.hard_limits import ByProject, scope_rule
from ledger.accounting.parsing import UNREADABLE_MODEL
from ledger.sink.capture import attribution_of

KEYS = frozenset({"fp-a", "fp-b"})  # what the scope's account or label stands for, as a settle read it
CHAT = {"feature": "chat", "env": "prod"}
# (scope, the call's facts: project, user, model as requested, tags, key fingerprint), whether it is in the scope
CASES = [
    (Scope(), ("search", "u1", "gemini-3.1-pro", CHAT, "fp-a"), True),
    (Scope(), (None, None, None, None, None), True),
    (Scope(project="search"), ("search", None, None, None, None), True),
    (Scope(project="search"), ("support", None, None, None, None), False),
    (Scope(project="search"), (None, None, None, None, None), False),
    (Scope(user="u1"), ("search", "u1", None, None, None), True),
    (Scope(user="u1"), ("search", "u2", None, None, None), False),
    (Scope(user="u1"), ("search", None, None, None, None), False),
    (Scope(model="gemini-3.1-pro"), (None, None, "gemini-3.1-pro", None, None), True),
    (Scope(model="gemini-3.1-pro"), (None, None, "gemini-3-flash", None, None), False),
    (Scope(model="gemini-3.1-pro"), (None, None, None, None, None), False),
    (Scope(model="gemini-3.1-pro"), (None, None, UNREADABLE_MODEL, None, None), True),  # may be of any model
    (Scope(tags=(("feature", "chat"),)), (None, None, None, CHAT, None), True),
    (Scope(tags=(("feature", "chat"), ("env", "prod"))), (None, None, None, CHAT, None), True),
    (Scope(tags=(("feature", "chat"), ("env", "dev"))), (None, None, None, CHAT, None), False),
    (Scope(tags=(("feature", "summary"),)), (None, None, None, CHAT, None), False),
    (Scope(tags=(("feature", "chat"),)), (None, None, None, {}, None), False),
    (Scope(tags=(("feature", "chat"),)), (None, None, None, None, None), False),
    (Scope(key="ci"), (None, None, None, None, "fp-a"), True),
    (Scope(key="ci"), (None, None, None, None, "fp-c"), False),
    (Scope(key="ci"), (None, None, None, None, None), False),
    (Scope(account="prod"), (None, None, None, None, "fp-b"), True),
    (Scope(account="prod"), (None, None, None, None, "fp-c"), False),
    (Scope(project="search", user="u1"), ("search", "u1", None, None, None), True),
    (Scope(project="search", user="u1"), ("support", "u1", None, None, None), False),
    (Scope(project="search", user="u1"), ("search", "u2", None, None, None), False),
    (Scope(project="search", user="u1", model="gemini-3.1-pro", tags=(("env", "prod"),), key="ci"),
     ("search", "u1", "gemini-3.1-pro", CHAT, "fp-a"), True),
    (Scope(project="search", user="u1", model="gemini-3.1-pro", tags=(("env", "prod"),), key="ci"),
     ("search", "u1", "gemini-3.1-pro", CHAT, "fp-c"), False),
    (Scope(project="search", user="u1", model="gemini-3.1-pro", tags=(("env", "prod"),), key="ci"),
     ("search", "u1", "gemini-3-flash", CHAT, "fp-a"), False),
    (Scope(project="search", user="u1", model="gemini-3.1-pro", tags=(("env", "prod"),), key="ci"),
     ("search", "u1", UNREADABLE_MODEL, CHAT, "fp-a"), True),
]


def limit_of(scope: Scope) -> SimpleNamespace:
    return SimpleNamespace(scope=scope, rule=scope_rule(scope), fingerprints=KEYS if scope.by_key else frozenset())


def counted(limits: list[SimpleNamespace], facts: tuple) -> list[SimpleNamespace]:
    """What the caller's path counts a call in: its project's candidates whose compiled rule is None or passes."""
    candidates = ByProject(limits, lambda limit: limit.scope.project).candidates(facts[0])
    return [limit for limit in candidates if limit.rule is None or limit.rule(*facts, limit.fingerprints)]


@pytest.mark.parametrize(("scope", "facts", "inside"), CASES)
def test_a_call_counts_in_an_enforced_budget_by_the_budgets_scope_rule(scope, facts, inside):
    fingerprints = KEYS if scope.by_key else None
    assert scope.matches(*facts, fingerprints) is inside
    limit = limit_of(scope)
    assert counted([limit], facts) == ([limit] if inside else [])


def test_of_several_budgets_a_call_counts_in_those_whose_scope_it_is_in():
    limits = [limit_of(scope) for scope, _, _ in CASES]
    for _, facts, _ in CASES:
        expected = [limit for limit in limits if limit.scope.matches(*facts, KEYS if limit.scope.by_key else None)]
        assert sorted(map(id, counted(limits, facts))) == sorted(map(id, expected))


def test_a_scope_of_a_project_alone_runs_no_rule_and_a_call_of_another_project_has_no_candidates():
    by_project = ByProject([limit_of(Scope(project="search"))], lambda limit: limit.scope.project)
    assert scope_rule(Scope(project="search")) is None and scope_rule(Scope()) is None
    assert by_project.candidates("support") == () and by_project.candidates(None) == ()


@pytest.mark.parametrize(("header", "in_tag_scope", "flagged"), [
    (b'{"feature": "chat"}', True, ()),
    (b'{"feature": ', False, ("bad_ledger_tags",)),  # unreadable: the context's tags, and the call flagged
    (b'{"a": ' + b"[" * 100_000, False, ("bad_ledger_tags",)),  # nested past the interpreter's depth
])
def test_attribution_is_read_as_the_record_reads_it_and_unreadable_tags_are_flagged(header, in_tag_scope, flagged):
    project, user, tags, notes = attribution_of(("search", "u1", {"env": "prod"}),
                                                {b"x-ledger-tags": header, b"x-ledger-user": b"u2"})
    assert (project, user, notes) == ("search", "u2", flagged)
    limits = [limit_of(Scope(project="search", tags=(("feature", "chat"),))), limit_of(Scope(project="search")),
              limit_of(Scope(tags=(("env", "prod"),))), limit_of(Scope(user="u1"))]
    found = counted(limits, (project, user, None, tags, None))
    assert found == ([limits[0]] if in_tag_scope else []) + limits[1:3]
