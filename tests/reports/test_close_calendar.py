"""The ledger's closed periods: one calendar (one kind, one zone), never overlapping; every credit in one place of every view."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from ledger_rows import call_values, insert

from ledger.accounting.periods import parse_period
from ledger.config import Settings
from ledger.errors import ReportError
from ledger.service import closing
from ledger.store.closes import close_events


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)  # nothing writes concurrently in these tests


LATER = datetime(2027, 3, 1, tzinfo=timezone.utc)  # every period closed here has ended
_ticks = itertools.count()


def _clock() -> datetime:
    """A second later at each reading, from LATER on: closes and reopens come in the order they are made."""
    return LATER + timedelta(seconds=next(_ticks))


def _close(ledger, label: str, zone: str = "UTC"):
    return closing.close_period(Settings(database_url=ledger.url), ledger, parse_period(label, zone), now=_clock)


def _reopen(ledger, label: str, zone: str = "UTC"):
    return closing.reopen_period(ledger, parse_period(label, zone), "wrong calendar", now=_clock)


def _in_force(ledger) -> list[str]:
    from ledger.accounting.closes import active_closes

    with ledger.session() as session:
        return sorted(f"{e.period.label} ({e.period.zone})" for e in active_closes(close_events(session)))


@pytest.mark.parametrize("first, then, refusal", [
    (("2026-11", "UTC"), ("2026-W46", "UTC"), r"2026-W46 \(UTC\) not closed: the ledger's closes are months in UTC "
                                             r"\(2026-11 \(UTC\) is closed\)"),
    (("2026-10", "UTC"), ("2026-Q4", "UTC"), r"2026-Q4 \(UTC\) not closed: the ledger's closes are months in UTC "
                                            r"\(2026-10 \(UTC\) is closed\).*close the quarter's months"),
    (("2026-Q4", "UTC"), ("2026-11", "UTC"), r"the ledger's closes are quarters in UTC \(2026-Q4 \(UTC\) is closed\)"),
    (("2026-11", "UTC"), ("2026-11", "Europe/Berlin"), r"the ledger's closes are months in UTC \(2026-11 \(UTC\)"),
    (("2026-10", "UTC"), ("2026-12", "Europe/Berlin"), r"the ledger's closes are months in UTC \(2026-10 \(UTC\)"),
    (("2026-11-02", "UTC"), ("2026-11", "UTC"), r"the ledger's closes are days in UTC \(2026-11-02 \(UTC\)"),
])
def test_a_close_that_does_not_fit_the_calendar_in_force_is_refused_naming_the_close(ledger, first, then, refusal):
    insert(ledger, [call_values(started_at=datetime(2026, 11, 2, 12, tzinfo=timezone.utc))])
    _close(ledger, *first)
    with pytest.raises(ReportError, match=refusal):
        _close(ledger, *then)
    assert _in_force(ledger) == [f"{first[0]} ({first[1]})"]


def test_reopening_the_calendar_in_force_lets_another_begin(ledger):
    insert(ledger, [call_values(started_at=datetime(2026, 10, 2, 12, tzinfo=timezone.utc))])
    _close(ledger, "2026-10")
    _close(ledger, "2026-11")
    with pytest.raises(ReportError, match=r"2026-11 \(UTC\) is closed and may carry 2026-10's"):
        _reopen(ledger, "2026-10")
    _reopen(ledger, "2026-11")
    with pytest.raises(ReportError, match=r"months in UTC \(2026-10 \(UTC\) is closed\)"):
        _close(ledger, "2026-10", "Europe/Berlin")
    _reopen(ledger, "2026-10")  # nothing in force: a calendar may begin
    _close(ledger, "2026-10", "Europe/Berlin")
    assert _in_force(ledger) == ["2026-10 (Europe/Berlin)"]


def test_a_closed_month_keeps_its_figures_when_a_week_across_it_is_refused(ledger):
    november = parse_period("2026-11")
    insert(ledger, [call_values(started_at=november.start + timedelta(days=d)) for d in range(30)])
    closed = _close(ledger, "2026-11").row
    insert(ledger, [call_values(started_at=datetime(2026, 11, 12, tzinfo=timezone.utc),
                                recorded_at=LATER + timedelta(days=1000))])
    with pytest.raises(ReportError, match=r"2026-W46 \(UTC\) not closed"):
        _close(ledger, "2026-W46")
    from ledger.reports.spend import build_report

    with ledger.session() as session:
        report = build_report(session, november)
    assert report.digest_matches_close is True and report.total.calls == closed.calls == 30
