"""Budget math without I/O: scopes, periods in a zone, projections, thresholds, runways and the alert plan."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, strategies as st

from ledger.accounting.alerts import OpenAlert, balance_conditions, budget_conditions, plan_alerts
from ledger.accounting.budgets import (
    FORECAST_OVER, OK, OVER, WARNING, BalanceAlert, Budget, Scope, budget_status, runway, series_bar, tag_fragments,
)
from ledger.accounting.snapshots import SnapshotPoint
from ledger.money import ZERO

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_a_scope_matches_only_calls_with_every_given_field():
    scope = Scope(project="search", tags=(("feature", "summary"),))
    assert scope.matches("search", "u-1", "gemini-3.1-pro", {"feature": "summary", "x": "y"})
    assert not scope.matches("search", "u-1", None, {"feature": "chat"})
    assert not scope.matches("support", "u-1", None, {"feature": "summary"})
    assert not scope.matches("search", None, None, None)
    keyed = Scope(account="prod")
    assert keyed.matches(None, None, None, None, "fp1", frozenset({"fp1", "fp2"}))
    assert not keyed.matches(None, None, None, None, "fp3", frozenset({"fp1"}))
    assert not keyed.matches(None, None, None, None, None, frozenset({"fp1"}))
    assert Scope().matches(None, None, None, None) and Scope().describe() == "all calls"
    assert scope.describe() == "project=search, tag feature=summary"


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4), st.text(max_size=8), st.text(max_size=8))
def test_a_tag_is_found_in_the_stored_tags_exactly_when_the_call_has_it(tags, name, value):
    stored = json.dumps(dict(sorted(tags.items())))  # as ledger.store.calls stores them
    found = any(fragment in stored for fragment in tag_fragments(name, value))
    assert found == (tags.get(name) == value)


def test_a_month_in_berlin_starts_at_local_midnight_across_the_clock_change():
    budget = Budget("m", Scope(), "month", "Europe/Berlin", Decimal(100))
    october = budget.period_at(at("2026-10-15T12:00:00+00:00"))
    assert (october.label, october.start, october.end) == ("2026-10", at("2026-09-30T22:00:00+00:00"), at("2026-10-31T23:00:00+00:00"))
    assert october.length == timedelta(days=31, hours=1)  # the clocks went back on the 25th
    # An instant just after local midnight of 1 November is November's, 23:00 UTC the day before.
    assert budget.period_at(at("2026-10-31T23:00:00+00:00")).label == "2026-11"
    assert budget.period_at(at("2026-10-31T22:59:59+00:00")).label == "2026-10"
    rolling = Budget("r", Scope(), "24h", "UTC", Decimal(100)).period_at(at("2026-10-15T12:00:00+00:00"))
    assert rolling.start == at("2026-10-14T12:00:00+00:00") and rolling.label == "last 24h"


def test_the_state_follows_the_thresholds_and_the_projection():
    budget = Budget("m", Scope(project="search"), "month", "UTC", Decimal(1000), thresholds=(50, 80, 100), forecast=True)
    period = budget.period_at(at("2026-11-15T00:00:00+00:00"))
    mid = at("2026-11-16T00:00:00+00:00")  # half of November
    low = budget_status(budget, period, mid, Decimal(300), 10, Decimal(1000))
    assert (low.state, low.crossed, low.projection, low.forecast_over) == (OK, (), Decimal(600), False)
    fast = budget_status(budget, period, at("2026-11-10T00:00:00+00:00"), Decimal(300), 10, Decimal(1000))
    assert (fast.state, fast.forecast_over, fast.projection, fast.crossed) == (OK, False, Decimal(1000), ())  # not past it
    faster = budget_status(budget, period, at("2026-11-10T00:00:00+00:00"), Decimal(400), 10, Decimal(1000))
    assert faster.state == FORECAST_OVER and faster.projection > 1000
    assert budget_status(budget, period, mid, Decimal(499), 10, Decimal(1000)).state == OK  # 998 by the end
    assert budget_status(budget, period, mid, Decimal(520), 10, Decimal(1000)).state == WARNING
    over = budget_status(budget, period, mid, Decimal(1000), 10, Decimal(1000))
    assert over.state == OVER and over.crossed == (50, 80, 100) and not over.forecast_over
    # No forecast from the first tenth of the period: a projection from an hour is noise.
    early = budget_status(budget, period, at("2026-11-02T00:00:00+00:00"), Decimal(200), 1, Decimal(1000))
    assert early.projection == Decimal(6000) and not early.forecast_over


def _daily_points(days: int, per_day: int, balance_now: int, end: datetime) -> list[SnapshotPoint]:
    points = []
    for i in range(days + 1):
        consumed = per_day * i
        balance = balance_now + per_day * (days - i)
        points.append(SnapshotPoint(i, end - timedelta(days=days - i), Decimal(balance), Decimal(balance + consumed), Decimal(consumed)))
    return points


def test_a_burn_of_100_a_day_against_500_lasts_5_days_and_warns_under_7():
    now = at("2026-11-20T12:00:00+00:00")
    found = runway("prod", _daily_points(8, 100, 500, now), now)
    assert found.burn_per_day == Decimal(100) and found.days_left == Decimal(5) and found.balance == Decimal(500)
    assert found.top_up_for(7) == Decimal(200) and found.top_up_for(3) == Decimal(0)
    (below, short) = balance_conditions(BalanceAlert("prod", Decimal(1000), 7, ("oncall",)), found)
    assert below.holds and short.holds
    assert "runs out in 5.0 days (under 7)" in short.message and "top-up of 200.00 credits covers 7 days" in short.message
    assert not balance_conditions(BalanceAlert("prod", None, 4), found)[0].holds


def test_the_burn_rate_weighs_the_recent_days_more():
    now = at("2026-11-20T00:00:00+00:00")
    points = _daily_points(7, 100, 500, now)
    # The last day burned 800 instead of 100: weights 7..1 put it at 100 + 700 * 7 / 28.
    last = points[-1]
    points[-1] = SnapshotPoint(last.id, last.taken_at, last.balance - 700, last.total_purchased, last.total_consumed + 700)
    found = runway("prod", points, now)
    assert found.burn_per_day == Decimal(275)
    assert found.daily[-1] == Decimal(800) and found.daily[0] == Decimal(100)
    # Snapshots of only the last two days: the days before have no data and do not count.
    recent = runway("prod", points[-3:], now)
    assert recent.daily[:5] == (None,) * 5
    assert recent.burn_per_day == ((Decimal(100) * 6 + Decimal(800) * 7) / 13).quantize(Decimal("1e-9"))


def test_no_snapshot_or_no_burn_says_so():
    now = at("2026-11-20T00:00:00+00:00")
    assert runway("prod", [], now).balance is None
    flat = [SnapshotPoint(i, now - timedelta(days=2 - i), Decimal(500), Decimal(500), Decimal(0)) for i in range(3)]
    found = runway("prod", flat, now)
    assert found.burn_per_day == 0 and found.days_left is None and found.top_up_for(7) == 0
    assert series_bar([Decimal(1), None, Decimal(8)]) == "▁ █"


def _open(condition, key, alert_id=1) -> OpenAlert:
    return OpenAlert(alert_id, key, condition.condition_id, condition.subject, condition.name, condition.kind,
                     condition.threshold, condition.period_label, condition.period_end, condition.facts)


def test_a_period_alert_is_raised_once_and_resolved_with_its_budget_when_the_period_is_over():
    budget = Budget("m", Scope(), "month", "Europe/Berlin", Decimal(1000), thresholds=(50, 80), channels=("c",))
    now = at("2026-11-20T00:00:00+00:00")
    period = budget.period_at(now)
    conditions = budget_conditions(budget_status(budget, period, now, Decimal(900), 1, Decimal(1000)))
    plan = plan_alerts(conditions, [], {}, now)
    assert [r.alert_key for r in plan.raised] == ["budget:m:50:2026-11", "budget:m:80:2026-11"] and not plan.resolved
    opened = [_open(c, r.alert_key, i) for i, (c, r) in enumerate(zip(conditions, plan.raised), 1)]
    assert plan_alerts(conditions, opened, {}, now) == ((), ())
    # December: November's two alerts resolve together, in one notice carried by the 80% one.
    december = at("2026-12-01T00:00:00+00:00")
    fresh = budget_conditions(budget_status(budget, budget.period_at(december), december, Decimal(0), 0, Decimal(1000)))
    plan = plan_alerts(fresh, opened, {}, december)
    assert not plan.raised and len(plan.resolved) == 1
    (resolve,) = plan.resolved
    assert [a.alert_key for a in resolve.alerts] == ["budget:m:80:2026-11", "budget:m:50:2026-11"]
    assert "period 2026-11 is over" in resolve.message and "2026-12 starts at 0.00" in resolve.message
    assert resolve.channels == ("c",)


def test_a_balance_condition_is_an_episode_resolved_when_it_clears_and_raised_again_as_the_next():
    now = at("2026-11-20T00:00:00+00:00")
    alert = BalanceAlert("prod", below=Decimal(1000))
    low = balance_conditions(alert, runway("prod", _daily_points(2, 100, 500, now), now))
    plan = plan_alerts(low, [], {"balance:prod:below": 2}, now)
    assert [r.alert_key for r in plan.raised] == ["balance:prod:below:3"]
    topped = balance_conditions(alert, runway("prod", _daily_points(2, 100, 5000, now), now))
    plan = plan_alerts(topped, [_open(low[0], "balance:prod:below:3")], {"balance:prod:below": 3}, now)
    assert not plan.raised and "no longer below 1,000.00" in plan.resolved[0].message


# ---------------------------------------------------------------- the hard limits' admission rule


def test_a_process_may_have_in_flight_the_calls_that_each_start_under_the_limit():
    from ledger.accounting.hard_limits import calls_admitted

    charge = Decimal("0.5")
    assert calls_admitted(Decimal(2), ZERO, ZERO, charge) == 4  # 0, 0.5, 1, 1.5 < 2
    assert calls_admitted(Decimal("2.1"), ZERO, ZERO, charge) == 5  # the fifth starts at 2 < 2.1
    assert calls_admitted(Decimal(2), Decimal("1.2"), Decimal("0.5"), charge) == 1  # others' holds count as spent
    assert calls_admitted(Decimal(2), Decimal(2), ZERO, charge) == 0
    assert calls_admitted(Decimal(2), ZERO, ZERO, Decimal(5)) == 1  # one call, however dear, while nothing is spent


def test_a_hold_covers_the_calls_in_flight_and_a_lease_of_the_room_left():
    from ledger.accounting.hard_limits import LEASE_SHARE, calls_to_hold

    assert calls_to_hold(100, 2, 0) == 2 + 98 // LEASE_SHARE  # far from the limit: a share of what is left
    assert calls_to_hold(100, 2, 50) == 52  # a busy process: what it used since it last held
    assert calls_to_hold(5, 2, 0) == 2  # near the limit: only what is in flight, each next call asks the ledger
    assert calls_to_hold(5, 2, 9) == 5  # never more than the room
    assert calls_to_hold(1, 3, 0) == 3  # in flight past the room: held as it is, nothing more admitted


def test_a_call_in_flight_counts_at_twice_the_largest_charge_or_the_first_calls_price():
    from ledger.accounting.hard_limits import first_call_charge, pessimistic_charge
    from ledger.accounting.pricing import default_rate_book

    card = default_rate_book().cards[-1]
    first = first_call_charge(card, "gemini-3.1-pro")
    assert first == Decimal("2.24")  # 2,000 prompt x 160 + 2,000 completion x 960, per million
    assert first_call_charge(card, None) == first  # any model: the card's dearest chat rate
    assert pessimistic_charge(Decimal("0.29"), first) == Decimal("0.58")
    assert pessimistic_charge(None, first) == first


def test_calls_waiting_for_room_are_admitted_while_they_fit():
    from ledger.accounting.hard_limits import Admission, admission

    one = Decimal(1)
    # 3 calls' room (spent 0 of 3 at 1 each): 1 in flight, 4 waiting: 2 of them admitted, nothing more held.
    assert admission(Decimal(3), ZERO, ZERO, one, pending=5, asking=4, used=0) == Admission(1, 2, 3)
    assert admission(Decimal(3), Decimal(3), ZERO, one, pending=5, asking=4, used=0) == Admission(1, 0, 1)
    assert admission(Decimal(100), ZERO, ZERO, one, pending=1, asking=1, used=0) == Admission(0, 1, 1 + 99 // 8)
