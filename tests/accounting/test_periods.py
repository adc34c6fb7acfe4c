"""Periods in a zone: local midnight bounds, daylight-saving changes, names, and bad names refused."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounting.periods import (
    CALENDAR_KINDS, calendar_period, following, parse_duration, parse_period, preceding, range_period, requested_period,
    rolling_period,
)

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_berlin_month_starts_at_local_midnight_and_october_is_an_hour_longer():
    october = parse_period("2026-10", "Europe/Berlin")
    assert october.start == datetime(2026, 9, 30, 22, tzinfo=timezone.utc)  # 00:00 CEST
    assert october.end == datetime(2026, 10, 31, 23, tzinfo=timezone.utc)  # 00:00 CET: the clocks went back
    assert october.length == timedelta(days=31, hours=1)
    march = parse_period("2026-03", "Europe/Berlin")
    assert march.length == timedelta(days=31, hours=-1)
    assert following(october).label == "2026-11" and following(october).start == october.end


@pytest.mark.parametrize("text, kind, start, end", [
    ("2026-11-30", "day", datetime(2026, 11, 30), datetime(2026, 12, 1)),
    ("2026-W48", "week", datetime(2026, 11, 23), datetime(2026, 11, 30)),
    ("2026-W53", "week", datetime(2026, 12, 28), datetime(2027, 1, 4)),
    ("2026-11", "month", datetime(2026, 11, 1), datetime(2026, 12, 1)),
    ("2026-Q4", "quarter", datetime(2026, 10, 1), datetime(2027, 1, 1)),
    ("2026", "year", datetime(2026, 1, 1), datetime(2027, 1, 1)),
])
def test_each_kind_of_name_is_its_calendar_period(text, kind, start, end):
    period = parse_period(text)
    assert (period.kind, period.label, period.start, period.end) == (
        kind, text, start.replace(tzinfo=timezone.utc), end.replace(tzinfo=timezone.utc))


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-02-30", "2026-W54", "2025-W53", "2026-Q5", "26-11",
                                  "november", "", "2026-11-", "9999", "1969-12",
                                  "２０２６-１１", "２０２６", "2026-W４8", "2026-Q４", "2026-11-３0"])
def test_a_name_that_is_no_period_says_so(text):
    with pytest.raises(ValueError, match="period|knows"):
        parse_period(text)


def test_an_unknown_zone_is_refused_by_name():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        parse_period("2026-11", "Mars/Olympus")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(timezone.utc)),
       st.sampled_from(CALENDAR_KINDS), st.sampled_from(["UTC", "Europe/Berlin", "America/Santiago", "Asia/Kolkata"]))
def test_every_instant_is_in_exactly_one_period_of_each_kind(instant, kind, zone):
    period = calendar_period(kind, instant, zone)
    assert instant in period
    assert following(period).start == period.end and preceding(period).end == period.start
    assert instant not in following(period) and instant not in preceding(period)
    assert parse_period(period.label, zone) == period


def test_rolling_and_explicit_ranges():
    now = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    assert rolling_period(parse_duration("7d"), now).start == now - timedelta(days=7)
    assert parse_duration("24h") == timedelta(hours=24) and parse_duration("2w") == timedelta(days=14)
    for bad in ("0d", "7", "d", "7y", "1000000d", "７d"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match="before it starts"):
        range_period(now, now - timedelta(days=1))


def test_the_current_month_so_far_ends_at_the_next_whole_second_and_a_past_one_is_whole():
    from ledger.accounting.periods import to_date

    now = datetime(2026, 12, 7, 10, 30, 15, 250_000, tzinfo=timezone.utc)
    month = calendar_period("month", now, "Europe/Berlin")
    so_far = to_date(month, now)
    assert (so_far.label, so_far.start, so_far.end) == ("2026-12-to-date", month.start, datetime(2026, 12, 7, 10, 30, 16, tzinfo=timezone.utc))
    assert to_date(month, month.end) == month


def test_the_local_period_of_the_first_instant_the_ledger_knows_may_start_in_1969():
    first = datetime(1970, 1, 1, tzinfo=timezone.utc)
    week = calendar_period("week", first)
    assert (week.label, week.start) == ("1970-W01", datetime(1969, 12, 29, tzinfo=timezone.utc))
    assert calendar_period("day", first, "America/St_Johns").label == "1969-12-31"
    assert parse_period("1970-W01") == week  # named by its ISO year, 1970


def test_the_requested_period_is_a_name_a_range_or_this_month_so_far():
    now = datetime(2026, 12, 7, 9, 30, 15, 500000, tzinfo=timezone.utc)
    assert requested_period("Europe/Berlin", now, "2026-11") == parse_period("2026-11", "Europe/Berlin")
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert requested_period("UTC", now, start=start) == range_period(start, now, "UTC")
    assert requested_period("UTC", now, start=start, end=now.replace(day=2)) == range_period(start, now.replace(day=2))
    so_far = requested_period("Europe/Berlin", now)
    assert (so_far.label, so_far.start, so_far.end) == (
        "2026-12-to-date", datetime(2026, 11, 30, 23, tzinfo=timezone.utc), datetime(2026, 12, 7, 9, 30, 16, tzinfo=timezone.utc))
    for kwargs, message in (({"name": "2026-11", "start": start}, "not both"), ({"end": now}, "needs its start"),
                            ({"start": now, "end": start}, "before it starts")):
        with pytest.raises(ValueError, match=message):
            requested_period("UTC", now, **kwargs)
