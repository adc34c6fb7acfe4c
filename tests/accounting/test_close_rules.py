"""The close rules on plain values: which calls are late, and which open period lists them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ledger.accounting.closes import (
    CLOSE, REOPEN, CloseEvent, active_closes, adjustment_windows, is_closed, late_calls,
)
from ledger.accounting.periods import parse_period

T = datetime(2026, 7, 1, tzinfo=timezone.utc)
APRIL, MAY, JUNE = (parse_period(p) for p in ("2026-04", "2026-05", "2026-06"))


def event(i: int, action: str, period, days: int) -> CloseEvent:
    return CloseEvent(i, action, period, T + timedelta(days=days))


def test_the_latest_row_of_a_period_is_its_state():
    events = [event(1, CLOSE, APRIL, 0), event(2, REOPEN, APRIL, 1), event(3, CLOSE, MAY, 2)]
    assert [e.id for e in active_closes(events)] == [3]
    assert is_closed(events, APRIL) is None and is_closed(events, MAY).id == 3
    assert is_closed(events + [event(4, CLOSE, APRIL, 3)], APRIL).id == 4
    assert is_closed(events, APRIL, before=T + timedelta(hours=12)).id == 1  # as it was before the reopen


def test_late_calls_are_those_of_a_close_in_force_recorded_after_its_cutoff():
    events = [event(1, CLOSE, APRIL, 0), event(2, CLOSE, MAY, 1), event(3, REOPEN, MAY, 2)]
    quarter = parse_period("2026-Q2")
    (late,) = late_calls(events, quarter.start, quarter.end)
    assert (late.start, late.end, late.cutoff) == (APRIL.start, APRIL.end, T)
    assert late_calls(events, JUNE.start, JUNE.end) == []


def test_late_calls_go_to_the_first_period_open_when_they_were_recorded():
    # April closed at day 0; May closed at day 10, reopened at day 20.
    events = [event(1, CLOSE, APRIL, 0), event(2, CLOSE, MAY, 10), event(3, REOPEN, MAY, 20)]
    may = adjustment_windows(events, MAY.start, MAY.end)
    assert [(w.into.label, w.recorded_after, w.recorded_until) for w in may] == [
        ("2026-05", T, T + timedelta(days=10)), ("2026-05", T + timedelta(days=20), None)]
    june = adjustment_windows(events, JUNE.start, JUNE.end)
    assert [(w.into.label, w.recorded_after, w.recorded_until) for w in june] == [
        ("2026-06", T + timedelta(days=10), T + timedelta(days=20))]
    quarter = parse_period("2026-Q2")
    assert len(adjustment_windows(events, quarter.start, quarter.end)) == 3
    assert adjustment_windows(events, APRIL.start, APRIL.end) == []


def test_a_period_closed_after_a_late_call_keeps_it():
    # April closed at day 0, May at day 10: a call of April recorded on day 5 is May's, and stays May's.
    events = [event(1, CLOSE, APRIL, 0), event(2, CLOSE, MAY, 10)]
    (window,) = adjustment_windows(events, MAY.start, MAY.end)
    assert (window.recorded_after, window.recorded_until) == (T, T + timedelta(days=10))
