"""Query parameters, read and checked: each failure is a BadQuery naming the parameter (a 400, never a traceback).

Every view is a URL: its filters are its query string, so a view can be
bookmarked and shared; the names are the CLI's (`period`, `from`, `to`,
`tz`, `by`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from ..accounting.group_keys import GroupKey, parse_group_keys
from ..accounting.periods import Period, requested_period, zone_named

MAX_TEXT = 1000  # a filter's value; longer is refused, not cut
MAX_PAGE_KEYS = 2  # a page groups by at most two keys (the CLI by six)
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)


class BadQuery(ValueError):
    """A query parameter the page cannot use: `parameter` names it, the message says why."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def only(request, names: Sequence[str]) -> None:
    """Refuse a parameter the view does not know (a typo would otherwise show an unfiltered view)."""
    for name in request.query_params.keys():
        if name not in names:
            raise BadQuery(name, f"not a parameter of this view (it takes {', '.join(names) or 'none'})")


def single(request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadQuery(name, "given more than once")
    if not values:
        return None
    value = values[0]
    if len(value) > MAX_TEXT:
        raise BadQuery(name, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise BadQuery(name, "holds a NUL character")
    return value


def text(request, name: str) -> str | None:
    """A text filter; an empty value is no filter."""
    value = single(request, name)
    return value or None


def zone(request, default: str) -> str:
    value = single(request, "tz")
    if not value:
        return default
    try:
        return zone_named(value).key
    except (ValueError, KeyError) as error:
        raise BadQuery("tz", str(error) or f"not a time zone: {value!r}") from None


def instant(request, name: str) -> datetime | None:
    value = single(request, name)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(name, f"not a time: {value!r} (use 2026-11-24 or 2026-11-24T10:00Z)") from None
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    if not _EARLIEST <= when < _LATEST:
        raise BadQuery(name, f"out of range: {value!r}")
    return when


def period(request, zone_name: str, now: datetime) -> Period:
    """`period=2026-11` (the CLI's names), or `from=…&to=…`, or this month so far, in `zone_name`."""
    name = single(request, "period") or None
    start, end = instant(request, "from"), instant(request, "to")
    try:
        return requested_period(zone_name, now, name, start, end)
    except ValueError as error:
        raise BadQuery("period" if name else "from", str(error)) from None


def group_keys(request, limit: int = MAX_PAGE_KEYS) -> tuple[GroupKey, ...]:
    value = single(request, "by")
    try:
        keys = parse_group_keys(value) if value else ()
    except ValueError as error:
        raise BadQuery("by", str(error)) from None
    if len(keys) > limit:
        raise BadQuery("by", f"at most {limit} group keys")
    return keys


def whole(request, name: str, default: int, low: int, high: int) -> int:
    value = single(request, name)
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise BadQuery(name, f"must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def one_of(request, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
    value = single(request, name)
    if not value:
        return default
    if value not in choices:
        raise BadQuery(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value
