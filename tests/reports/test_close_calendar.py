"""The ledger's closed periods: one calendar (one kind, one zone), never overlapping; every credit in one place of every view."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from ledger_rows import call_values, insert

from ledger.accounting.periods import parse_period
from ledger.config import Settings
from ledger.errors import ReportError
from ledger.service import closing
from ledger.store.calls import CALL_COLUMNS
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


# Each zone's months closed, then read in that zone and in another whose day bounds fall elsewhere (+05:45,
# a half-hour daylight-saving shift): every report zone is read against a close in its own and in another zone.
REPORT_ZONES = {"UTC": ("UTC", "Asia/Kathmandu"), "Australia/Lord_Howe": ("Australia/Lord_Howe", "Europe/Berlin")}


def _year_of_calls(ledger, zone: str) -> tuple[Decimal, int]:
    """Calls all through 2026 (every zone's 2026), months of `zone` closed with late calls of them; the ledger's sum."""
    year = [parse_period(f"2026-{m:02d}", zone) for m in range(1, 13)]
    first, last = datetime(2026, 1, 1, 0, 15, tzinfo=timezone.utc), datetime(2026, 12, 31, 12, 45, tzinfo=timezone.utc)
    starts = [first + (last - first) * i / 173 for i in range(174)]
    for month in year:  # a call on each side of every month's edge, in this zone and in UTC
        for edge in (month.start, month.end, month.start.replace(hour=0, minute=0)):
            starts += [t for t in (edge - timedelta(minutes=20), edge + timedelta(minutes=20)) if first <= t <= last]
    rows = [call_values(started_at=t, charged=Decimal(i % 7 + 1) / 4) for i, t in enumerate(starts)]
    insert(ledger, rows)
    # Close January to November in turn, a week after each ends; June reopened and closed again on the way.
    cutoffs = {}
    settings = Settings(database_url=ledger.url)
    for month in year[:11]:
        cutoffs[month.label] = month.end + timedelta(days=7)
        closing.close_period(settings, ledger, month, now=lambda m=month: cutoffs[m.label])
        if month.label == "2026-07":
            closing.reopen_period(ledger, year[6], "late journal", now=lambda: cutoffs["2026-07"] + timedelta(hours=1))
            closing.reopen_period(ledger, year[5], "late journal", now=lambda: cutoffs["2026-07"] + timedelta(hours=2))
            for again in year[5:7]:
                closing.close_period(settings, ledger, again, now=lambda: cutoffs["2026-07"] + timedelta(hours=3))
    # Late calls of closed months, recorded between later closes and after all of them (some in December, open).
    late = []
    for i, month in enumerate(year[:11]):
        for k, recorded in enumerate((cutoffs[month.label] + timedelta(days=3), cutoffs["2026-11"] + timedelta(days=1),
                                      cutoffs["2026-07"] + timedelta(hours=2, minutes=30))):
            if recorded > cutoffs[month.label]:
                late.append(call_values(started_at=month.start + timedelta(minutes=10 + 600 * k), recorded_at=recorded,
                                        charged=Decimal(i + k + 1) / 8))
    insert(ledger, late)
    return sum((Decimal(r[CALL_COLUMNS.index("credits_charged")]) for r in rows + late), Decimal(0)), len(rows + late)


@pytest.mark.parametrize("close_zone", ["UTC", "Australia/Lord_Howe"])
def test_every_credit_is_in_exactly_one_report_of_every_view_of_a_year(ledger, close_zone):
    from ledger.reports.spend import build_report

    ledger_sum, ledger_calls = _year_of_calls(ledger, close_zone)
    with ledger.session() as session:
        for zone in REPORT_ZONES[close_zone]:
            views = {"months": [f"2026-{m:02d}" for m in range(1, 13)], "quarters": [f"2026-Q{q}" for q in range(1, 5)],
                     "the year": ["2026"]}
            for name, labels in views.items():
                found, calls = Decimal(0), 0
                for label in labels:
                    report = build_report(session, parse_period(label, zone))
                    found += report.total.credits_charged + report.adjustment_total.credits_charged
                    calls += report.total.calls + report.adjustment_total.calls
                assert (zone, name, found, calls) == (zone, name, ledger_sum, ledger_calls)


def _pre_rule_close(ledger, label: str, zone: str, at: datetime) -> None:
    """A close as a ledger from before the one-calendar rule holds it: written straight into `period_closes`."""
    from ledger.store.closes import insert_close

    with ledger.session() as session:
        insert_close(session, parse_period(label, zone), at, at, calls=1, credits_charged=Decimal("0.25"),
                     credits_expected=Decimal("0.25088"), totals_json="{}", calls_digest="0" * 64,
                     reconciliation="no_snapshots", reconciliation_json=None, reason=None, host=None)


PRE_RULE = pytest.mark.parametrize("closes", [
    [("2026-10", "UTC", datetime(2026, 11, 2, tzinfo=timezone.utc)),  # a closed week inside a closed month
     ("2026-W42", "UTC", datetime(2026, 10, 20, tzinfo=timezone.utc))],
    [("2026-10", "UTC", datetime(2026, 11, 2, tzinfo=timezone.utc)),  # a month closed in two zones
     ("2026-10", "Europe/Berlin", datetime(2026, 11, 3, tzinfo=timezone.utc))],
])


def _pre_rule_ledger(ledger, closes) -> set[str]:
    """Two calls (one late for both closes) and the closes, as a pre-rule ledger holds them; the pair's names."""
    insert(ledger, [call_values(started_at=datetime(2026, 10, 14, 12, tzinfo=timezone.utc)),
                    call_values(started_at=datetime(2026, 10, 14, 13, tzinfo=timezone.utc),
                                recorded_at=datetime(2026, 11, 20, tzinfo=timezone.utc))])
    for label, zone, at in closes:
        _pre_rule_close(ledger, label, zone, at)
    return {f"{label} ({zone})" for label, zone, _ in closes}


def _run(ledger, *args) -> tuple[int, str]:
    import io

    from ledger.cli import main

    out = io.StringIO()
    return main(["--database-url", ledger.url, *args], out=out), out.getvalue()


@PRE_RULE
def test_closes_names_each_overlapping_pair_and_how_to_resolve_it(ledger, closes):
    import json

    pair = _pre_rule_ledger(ledger, closes)
    code, text = _run(ledger, "closes")
    (line,) = [line for line in text.splitlines() if line.startswith("OVERLAP: ")] or [text]
    assert code == 0 and all(p in line for p in pair) and "reopen one of them" in line, text
    code, text = _run(ledger, "closes", "--json")
    named = [sorted(f"{c['period']} ({c['zone']})" for c in o["closes"]) for e in json.loads(text) for o in e.get("overlaps", ())]
    assert named == [sorted(pair)] * 2, text  # on each close of the pair
    assert all("reopen one of them" in o["resolve"] for e in json.loads(text) for o in e.get("overlaps", ()))


@PRE_RULE
def test_check_finds_overlapping_closes_and_exits_3(ledger, closes):
    import json

    pair = _pre_rule_ledger(ledger, closes)
    code, text = _run(ledger, "check")
    assert code == 3 and any(line.startswith("closes overlap: ") and all(p in line for p in pair)
                             for line in text.splitlines()), text
    code, text = _run(ledger, "check", "--json")
    assert code == 3 and len(json.loads(text).get("overlapping_closes", ())) == 1, text


@PRE_RULE
def test_no_period_is_closed_while_closes_overlap(ledger, closes):
    _pre_rule_ledger(ledger, closes)
    for label in ("2026-12", "2026-W49"):  # of the calendar of either close or of another
        with pytest.raises(ReportError, match=rf"{label} \(UTC\) not closed: .* are both closed and overlap"):
            _close(ledger, label)


@PRE_RULE
def test_reports_over_overlapping_closes_say_so(ledger, closes):
    import json

    pair = _pre_rule_ledger(ledger, closes)
    code, text = _run(ledger, "report", "--period", "2026-10", "--tz", "UTC", "--format", "table", "--output", "-")
    assert code == 0 and "CLOSES OVERLAP: " in text and all(p in text for p in pair), text
    # November lists October's late call as an adjustment, as a report over the other close may.
    code, text = _run(ledger, "report", "--period", "2026-11", "--tz", "UTC", "--format", "json", "--output", "-")
    assert code == 0 and len(json.loads(text).get("overlapping_closes", ())) == 1, text
    code, text = _run(ledger, "report", "--period", "2026-12", "--tz", "UTC", "--format", "json", "--output", "-")
    assert "overlapping_closes" not in json.loads(text)  # a period neither close reaches nor adjusts



@PRE_RULE
def test_the_workbook_over_overlapping_closes_says_so(ledger, closes, tmp_path):
    import openpyxl

    pair = _pre_rule_ledger(ledger, closes)
    path = tmp_path / "october.xlsx"
    code, text = _run(ledger, "report", "--period", "2026-10", "--tz", "UTC", "--format", "xlsx", "--output", str(path))
    assert code == 0, text
    book = openpyxl.load_workbook(path, read_only=True)  # read-only keeps the file open until closed
    try:
        rows = list(book["Summary"].iter_rows(values_only=True))
    finally:
        book.close()
    (said,) = [row[1] for row in rows if row and row[0] == "CLOSES OVERLAP"] or [None]
    assert said is not None and all(p in said for p in pair), said
