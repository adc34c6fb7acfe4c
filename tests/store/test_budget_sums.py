"""A budget's spend is a sum in SQL over its scope and period: every scope key, bounds exclusive at the end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from factories import insert_records, make_call

from ledger.accounting.budgets import Scope
from ledger.store.budgets import SpendQuery, largest_charge, own_calls, recent_largest_charge, spend, spends
from ledger.store.keys import register_keys

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_each_scope_key_picks_its_calls_and_the_period_bounds_them(ledger):
    inside = START + timedelta(days=3)
    records = [
        make_call(inside, "1.5", project="search", user="u-1", fingerprint="a" * 32, tags={"feature": "summary"}),
        make_call(inside, "2.25", project="search", user="u-2", fingerprint="b" * 32, tags={"feature": "chat", "x": "feature"}),
        make_call(inside, "4", project="support", user="u-1", fingerprint="b" * 32, model="gemini-2.5-pro"),
        make_call(START, "8", project="search", user="u-1", fingerprint="a" * 32),  # the first instant is in
        make_call(END, "100", project="search", user="u-1", fingerprint="a" * 32),  # the end is not
        make_call(START - timedelta(microseconds=1), "200", project="search"),
    ]
    insert_records(ledger, records)
    with ledger.session() as session:
        register_keys(session, [("a" * 32, "aaaa", "backend", "prod"), ("b" * 32, "bbbb", "batch", "prod")], START)
        expected = {
            Scope(): (Decimal("15.75"), 4),
            Scope(project="search"): (Decimal("11.75"), 3),
            Scope(user="u-1"): (Decimal("13.5"), 3),
            Scope(project="search", user="u-1"): (Decimal("9.5"), 2),
            Scope(key="backend"): (Decimal("9.5"), 2),
            Scope(account="prod"): (Decimal("15.75"), 4),
            Scope(model="gemini-2.5-pro"): (Decimal("4"), 1),
            Scope(tags=(("feature", "summary"),)): (Decimal("1.5"), 1),
            Scope(tags=(("x", "feature"),)): (Decimal("2.25"), 1),
            Scope(tags=(("feature", "x"),)): (Decimal(0), 0),
            Scope(account="nobody"): (Decimal(0), 0),
        }
        for scope, (credits, calls) in expected.items():
            assert tuple(spend(session, scope, START, END))[:2] == (credits, calls), scope
        # All at once: indexed sums and one pass for the rest agree with one sum each.
        queries = [SpendQuery(scope, START, END) for scope in expected] + [SpendQuery(Scope(), START, START + timedelta(days=1))]
        found = spends(session, queries)
        assert [tuple(s)[:2] for s in found[:-1]] == list(expected.values())
        assert tuple(found[-1]) == (Decimal(8), 1)
        assert all(isinstance(s.credits, Decimal) for s in found)


def test_a_processs_own_calls_and_the_largest_charges(ledger):
    with ledger.session() as session:
        assert recent_largest_charge(session) is None
        assert largest_charge(session, Scope(project="p"), START, START + timedelta(days=1)) is None
    insert_records(ledger, [make_call(START, "2", project="p", call_id="abc123-1"), make_call(START, "4", project="p", call_id="abc123-2"),
                            make_call(START, "6", project="q", call_id="abc124-1")])
    with ledger.session() as session:
        assert own_calls(session, "abc123-", Scope(project="p"), START, "refused") == 2
        assert own_calls(session, "abc123-", Scope(project="q"), START, "refused") == 0
        assert own_calls(session, "abc123-", Scope(project="p"), START + timedelta(seconds=1), "refused") == 0
        assert recent_largest_charge(session) == Decimal(6)
        assert largest_charge(session, Scope(project="p"), START, START + timedelta(days=1)) == Decimal(4)
        assert largest_charge(session, Scope(project="p"), START + timedelta(seconds=1), START + timedelta(days=1)) is None
