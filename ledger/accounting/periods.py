"""Periods of time as finance and budgets name them, bounded in a time zone (no I/O).

A calendar period (a day, an ISO week, a month, a quarter, a year) starts at
local midnight of its first day in its zone and ends where the next one
starts, so a month that crosses a daylight-saving change is 743 or 745 hours
long, as its local calendar says. A rolling period is the last `duration`
before an instant. Every bound is an aware UTC instant; `end` is exclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY, WEEK, MONTH, QUARTER, YEAR = "day", "week", "month", "quarter", "year"
CALENDAR_KINDS = (DAY, WEEK, MONTH, QUARTER, YEAR)
ROLLING, RANGE = "rolling", "range"
MIN_YEAR, MAX_YEAR = 1970, 9998  # a period's end must still be a date

# ASCII digits only: `\d` alone takes any script's (２０２６-１１ would read as 2026-11).
_YEAR = re.compile(r"(\d{4})", re.ASCII)
_QUARTER = re.compile(r"(\d{4})-Q([1-4])", re.ASCII)
_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.ASCII)
_MONTH = re.compile(r"(\d{4})-(\d{2})", re.ASCII)
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_DURATION = re.compile(r"\s*(\d{1,6})\s*([mhdw])\s*", re.ASCII)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_NAMES = (  # a period's name: its form, its kind, its first day
    (_DAY, DAY, lambda m: date(int(m[1]), int(m[2]), int(m[3]))),
    (_MONTH, MONTH, lambda m: date(int(m[1]), int(m[2]), 1)),
    (_WEEK, WEEK, lambda m: date.fromisocalendar(int(m[1]), int(m[2]), 1)),
    (_QUARTER, QUARTER, lambda m: date(int(m[1]), 3 * int(m[2]) - 2, 1)),
    (_YEAR, YEAR, lambda m: date(int(m[1]), 1, 1)),
)


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in UTC, with the name and zone it was given in."""

    kind: str
    label: str
    start: datetime
    end: datetime
    zone: str = "UTC"

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def elapsed(self, now: datetime) -> timedelta:
        """How much of the period has passed at `now` (none before it, all of it after)."""
        return min(max(now, self.start), self.end) - self.start


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone of that name; ValueError naming it when there is none."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"not a time zone: {name!r}")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin or UTC)") from None


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # Where local midnight does not exist (a change at midnight), fold=0 gives the first instant of the day.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc)


def _first_day(kind: str, day: date) -> date:
    if kind == DAY:
        return day
    if kind == WEEK:
        return day - timedelta(days=day.weekday())
    if kind == MONTH:
        return day.replace(day=1)
    if kind == QUARTER:
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if kind == YEAR:
        return date(day.year, 1, 1)
    raise ValueError(f"not a calendar period: {kind!r} (one of {', '.join(CALENDAR_KINDS)})")


def _next_first_day(kind: str, first: date) -> date:
    if kind == DAY:
        return first + timedelta(days=1)
    if kind == WEEK:
        return first + timedelta(days=7)
    months = {MONTH: 1, QUARTER: 3, YEAR: 12}[kind]
    month = first.month - 1 + months
    return date(first.year + month // 12, month % 12 + 1, 1)


def _label(kind: str, first: date) -> str:
    if kind == DAY:
        return first.isoformat()
    if kind == WEEK:
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    if kind == MONTH:
        return f"{first.year}-{first.month:02d}"
    if kind == QUARTER:
        return f"{first.year}-Q{(first.month - 1) // 3 + 1}"
    return f"{first.year}"


def _calendar(kind: str, first: date, zone: ZoneInfo) -> Period:
    # No year check here: the local period of an instant of 1970 may start in 1969 (1970-W01, a day west of UTC).
    try:
        end = _local_midnight(_next_first_day(kind, first), zone)
    except (ValueError, OverflowError):
        raise ValueError(f"a {kind} past the last date the ledger knows (the year {MAX_YEAR})") from None
    return Period(kind, _label(kind, first), _local_midnight(first, zone), end, zone.key)


def calendar_period(kind: str, instant: datetime, zone: ZoneInfo | str = "UTC") -> Period:
    """The calendar period of `kind` that holds `instant` (aware), in `zone`."""
    zone = zone_named(zone) if isinstance(zone, str) else zone
    if instant.tzinfo is None:
        raise ValueError("a naive instant: the ledger never guesses a zone")
    return _calendar(kind, _first_day(kind, instant.astimezone(zone).date()), zone)


def following(period: Period) -> Period:
    """The calendar period just after this one (same kind and zone)."""
    return calendar_period(period.kind, period.end, period.zone)


def preceding(period: Period) -> Period:
    """The calendar period just before this one (same kind and zone)."""
    return calendar_period(period.kind, period.start - timedelta(microseconds=1), period.zone)


def parse_period(text: str, zone: ZoneInfo | str = "UTC") -> Period:
    """A period by its name: `2026` (year), `2026-Q4`, `2026-W48` (ISO week), `2026-11` (month), `2026-11-30` (day)."""
    zone = zone_named(zone) if isinstance(zone, str) else zone
    text = text.strip() if isinstance(text, str) else ""
    for pattern, kind, first_day in _NAMES:
        if (match := pattern.fullmatch(text)) is None:
            continue
        if not MIN_YEAR <= int(match[1]) <= MAX_YEAR:  # a named 1969 or 9999 is a typo
            raise ValueError(f"a period in year {match[1]}: the ledger knows {MIN_YEAR} to {MAX_YEAR}")
        try:
            return _calendar(kind, first_day(match), zone)
        except ValueError as error:
            raise ValueError(f"no such period: {text!r} ({error})") from None
    raise ValueError(f"not a period: {text!r} (use 2026-11, 2026-W48, 2026-Q4, 2026 or 2026-11-30)")


def parse_duration(text: str) -> timedelta:
    """A rolling length: `30m`, `24h`, `7d`, `2w`."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match[1]) == 0:
        raise ValueError(f"not a duration: {text!r} (use 30m, 24h, 7d or 2w)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def rolling_period(duration: timedelta, now: datetime, label: str | None = None) -> Period:
    """The last `duration` up to `now` (aware)."""
    if now.tzinfo is None:
        raise ValueError("a naive instant: the ledger never guesses a zone")
    end = now.astimezone(timezone.utc)
    return Period(ROLLING, label or f"last {duration}", end - duration, end, "UTC")


def to_date(period: Period, now: datetime) -> Period:
    """The part of `period` up to `now` (to the next whole second), named `2026-12-to-date`; the whole period once it is over."""
    if now >= period.end:
        return period
    end = max(now.astimezone(timezone.utc).replace(microsecond=0) + timedelta(seconds=1), period.start + timedelta(seconds=1))
    return Period(period.kind, f"{period.label}-to-date", period.start, min(end, period.end), period.zone)


def range_period(start: datetime, end: datetime, zone: ZoneInfo | str = "UTC") -> Period:
    """An explicit [start, end); ValueError when it is empty or inverted."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("a naive instant: the ledger never guesses a zone")
    if end <= start:
        raise ValueError(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    zone = zone_named(zone) if isinstance(zone, str) else zone
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    return Period(RANGE, f"{start.isoformat()}/{end.isoformat()}", start, end, zone.key)


def requested_period(zone: ZoneInfo | str, now: datetime, name: str | None = None, start: datetime | None = None,
                     end: datetime | None = None) -> Period:
    """The period a report asks for: by `name`, or [start, end or now), or else this month so far in `zone`.

    ValueError when a name and a range are both given, when an end has no start, or when the range is empty.
    """
    if name and (start or end):
        raise ValueError("a period's name or a range, not both")
    if name:
        return parse_period(name, zone)
    if start or end:
        if not start:
            raise ValueError("a range's end needs its start")
        return range_period(start, end or now, zone)
    return to_date(calendar_period(MONTH, now, zone), now)
