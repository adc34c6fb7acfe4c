"""The 15-minute grid: local days in every zone are whole buckets, off-grid ranges get raw edges, a cutoff leaves
one recorded bucket mixed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounting.buckets import BUCKET, ceil, floor, mixed_buckets, on_grid, split_cutoff, split_range
from ledger.accounting.periods import calendar_period, parse_period, range_period

UTC = timezone.utc
DAYS = {  # zone: local days around its offsets' oddities (+05:45, -03:30/-02:30, half-hour DST, Berlin's changes)
    "Asia/Kathmandu": ["2026-01-01", "2026-11-30"],
    "Australia/Lord_Howe": ["2026-04-05", "2026-10-04"],
    "America/St_Johns": ["2026-03-08", "2026-11-01"],
    "Europe/Berlin": ["2026-03-29", "2026-10-25"],
}
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@pytest.mark.parametrize("zone,day", [(z, d) for z, days in DAYS.items() for d in days])
def test_a_local_day_week_and_month_are_whole_buckets(zone, day):
    period = parse_period(day, zone)
    for kind in ("day", "week", "month"):
        found = calendar_period(kind, period.start, zone)
        split = split_range(found.start, found.end)
        assert split.edges == () and (split.whole_start, split.whole_end) == (found.start, found.end)
        assert (found.end - found.start) % BUCKET == timedelta(0)
    # The change day's length is what the zone says (23 h, 23.5 h, 25 h), still whole buckets.
    assert period.length in (timedelta(hours=h) for h in (23, 23.5, 24, 24.5, 25))


def test_the_days_of_the_zones_change_days_are_not_24_hours():
    assert parse_period("2026-10-25", "Europe/Berlin").length == timedelta(hours=25)
    assert parse_period("2026-04-05", "Australia/Lord_Howe").length == timedelta(hours=24, minutes=30)
    assert parse_period("2026-03-08", "America/St_Johns").length == timedelta(hours=23)
    assert parse_period("2026-01-01", "Asia/Kathmandu").start == datetime(2025, 12, 31, 18, 15, tzinfo=UTC)


def test_a_custom_range_off_the_grid_has_two_edges_shorter_than_a_bucket():
    period = range_period(datetime(2026, 11, 3, 10, 7, 30, 5, tzinfo=UTC), datetime(2026, 11, 5, 8, 59, 59, tzinfo=UTC))
    split = split_range(period.start, period.end)
    assert split.whole_start == datetime(2026, 11, 3, 10, 15, tzinfo=UTC)
    assert split.whole_end == datetime(2026, 11, 5, 8, 45, tzinfo=UTC)
    assert split.edges == ((period.start, split.whole_start), (split.whole_end, period.end))


def test_a_range_inside_one_bucket_is_all_raw():
    start, end = datetime(2026, 11, 3, 10, 1, tzinfo=UTC), datetime(2026, 11, 3, 10, 14, tzinfo=UTC)
    split = split_range(start, end)
    assert not split.has_whole and split.edges == ((start, end),)
    across = split_range(start, datetime(2026, 11, 3, 10, 16, tzinfo=UTC))  # two part buckets, no whole one
    assert not across.has_whole and across.edges == ((start, datetime(2026, 11, 3, 10, 16, tzinfo=UTC)),)


@given(instants, instants, instants)
def test_whole_buckets_and_edges_hold_each_instant_of_the_range_once(a, b, probe):
    start, end = min(a, b), max(a, b)
    split = split_range(start, end)
    assert on_grid(split.whole_start) and on_grid(split.whole_end)
    assert all(high - low < 2 * BUCKET and low < high for low, high in split.edges)
    places = [split.has_whole and split.whole_start <= probe < split.whole_end]
    places += [low <= probe < high for low, high in split.edges]
    assert sum(places) == (1 if start <= probe < end else 0)


@given(instants, instants)
def test_a_cutoff_decides_every_recorded_bucket_but_the_one_holding_it(cutoff, recorded):
    split = split_cutoff(cutoff)
    bucket = floor(recorded)
    if split.wholly_before(bucket):
        assert recorded <= cutoff
    elif split.wholly_after(bucket):
        assert recorded > cutoff
    else:
        assert bucket == split.mixed


def test_a_cutoff_on_the_grid_still_leaves_its_bucket_mixed():
    cutoff = datetime(2026, 12, 2, 10, 15, tzinfo=UTC)
    split = split_cutoff(cutoff)
    assert split.mixed == cutoff  # a call recorded at the cutoff is not late, one a microsecond later is
    assert not split.wholly_after(floor(cutoff)) and not split.wholly_before(floor(cutoff + timedelta(microseconds=1)))


def test_mixed_buckets_of_the_start_are_only_off_grid_bounds():
    on = datetime(2026, 11, 1, 18, 15, tzinfo=UTC)
    off = datetime(2026, 11, 1, 18, 20, 1, tzinfo=UTC)
    started, recorded = mixed_buckets([on, off], [on, off])
    assert started == {datetime(2026, 11, 1, 18, 15, tzinfo=UTC)} and recorded == {on}


def test_floor_and_ceil_take_any_zone_and_refuse_a_naive_instant():
    kathmandu = datetime(2026, 11, 3, 0, 50, tzinfo=timezone(timedelta(hours=5, minutes=45)))
    assert floor(kathmandu) == datetime(2026, 11, 2, 19, 0, tzinfo=UTC)
    assert ceil(kathmandu) == datetime(2026, 11, 2, 19, 15, tzinfo=UTC)
    with pytest.raises(ValueError):
        floor(datetime(2026, 1, 1))
