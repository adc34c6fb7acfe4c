"""What a scheduled report is asked for, checked when the config is read: formats, cron schedules, `[[reports]]` (no I/O).

A `[[reports]]` entry's `by` takes the keys `--by` takes (ledger.accounting.group_keys); a `[[reports]]`
entry becomes a scheduled job of `credit-ledger run`, at a cron schedule in
its own zone (checked here, so that a typo is a ConfigError when the config
is read, not a failed job at 06:00 on the 1st).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from ..accounting.group_keys import GroupKey, parse_group_keys
from ..accounting.periods import CALENDAR_KINDS, DAY, MONTH, QUARTER, WEEK, YEAR
from ..errors import ConfigError
from .alerts import channel_names
from .checks import check_keys, choice, file_path, flag, name, refuse, shown, tables, text, unique, zone

FORMATS = ("table", "csv", "json", "xlsx", "focus")
FILE_FORMATS = ("csv", "json", "xlsx", "focus")

# ---------------------------------------------------------------- cron schedules

_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("day_of_week", 0, 7))
_NAMES = {
    3: {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)},
    4: {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))} | {"sun": 0},
}
_CRON_ITEM = re.compile(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/([0-9]+))?", re.ASCII)
# The first day of the next period at 06:00: when a period's report is complete and a finance day begins.
DEFAULT_SCHEDULES = {
    DAY: "0 6 * * *",
    WEEK: "0 6 * * mon",
    MONTH: "0 6 1 * *",
    QUARTER: "0 6 1 jan,apr,jul,oct *",
    YEAR: "0 6 1 jan *",
}


def check_cron(expression: str, where: str) -> str:
    """A five-field crontab line (minute hour day month day-of-week), normalised for APScheduler 3.x.

    Day-of-week numbers are crontab's (0 and 7 Sunday, 1 Monday); APScheduler
    3.x counts from Monday, so that field is given back as day names.
    """
    if not isinstance(expression, str):
        raise ConfigError(f"{where}: a schedule is a crontab line such as \"0 6 1 * *\", got {shown(expression)}")
    fields = expression.lower().split()
    if len(fields) != 5:
        raise ConfigError(f"{where}: a schedule has five fields (minute hour day month day-of-week), got {shown(expression)}")
    weekdays: set[int] = set()
    for index, (field, (name, low, high)) in enumerate(zip(fields, _CRON_FIELDS)):
        for item in field.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if match is None:
                raise ConfigError(f"{where}: schedule {name} {shown(item)} is not a number, range, list or */step")
            step = int(match[2]) if match[2] is not None else 1
            if step == 0:
                raise ConfigError(f"{where}: schedule {name} step must be above 0")
            bounds = [low, high] if match[1] == "*" else []
            for bound in [] if match[1] == "*" else match[1].split("-"):
                value = int(bound) if bound.isdecimal() else _NAMES.get(index, {}).get(bound)  # ASCII: _CRON_ITEM
                if value is None or not low <= value <= high:
                    raise ConfigError(f"{where}: schedule {name} {bound!r} is outside {low}-{high}")
                bounds.append(value)
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                raise ConfigError(f"{where}: schedule {name} range {item!r} runs backwards")
            if index == 4:  # crontab's numbers to a set of days, Sunday 0
                first = bounds[0]
                last = bounds[1] if len(bounds) == 2 else (high if match[2] else first)
                weekdays.update(day % 7 for day in range(first, last + 1, step))
    if fields[4] != "*":
        fields[4] = ",".join(_WEEKDAY_NAMES[day] for day in sorted(weekdays))
    return " ".join(fields)


_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


# ---------------------------------------------------------------- [[reports]]


@dataclass(frozen=True, slots=True)
class ReportEntry:
    """A scheduled report: the previous complete `period` when it runs, in `timezone`."""

    name: str
    period: str  # day, week, month, quarter or year
    timezone: str
    schedule: str  # crontab line in `timezone`
    formats: tuple[str, ...] = ("xlsx",)
    by: tuple[GroupKey, ...] = ()
    close: bool = False
    calls: bool = False  # the workbook's Calls sheet
    output_dir: str | None = None  # None: the settings' reports_dir
    account: str | None = None
    channels: tuple[str, ...] = ()  # [[channels]] that get the report: email attaches the files, the others the summary and paths

    @property
    def job_name(self) -> str:
        return f"report:{self.name}"


REPORT_SETTINGS = frozenset({"name", "period", "timezone", "schedule", "formats", "by", "close", "calls", "output_dir",
                             "account", "channels"})
REPORT_NAME_WIDTH = 80  # it names files, and the job ("report:NAME", job_runs.job is 100 wide)


def parse_report_entries(raw: Any, source: str, default_zone: str, channels: Iterable[str] = ()) -> tuple[ReportEntry, ...]:
    """The `[[reports]]` tables of a config, every value checked; `channels`: the names [[channels]] defines."""
    defined = set(channels)
    entries = []
    for i, item in enumerate(tables(raw, f"{source}: reports", "[[reports]] tables"), 1):
        where = f"{source}: reports #{i}"
        check_keys(item, REPORT_SETTINGS, where)
        report = name(item.get("name"), f"{where} name", width=REPORT_NAME_WIDTH)
        where = f"{source}: report {report!r}"
        period = choice(item.get("period", MONTH), f"{where} period", CALENDAR_KINDS)
        report_zone = zone(item.get("timezone", default_zone), f"{where} timezone")
        schedule = check_cron(item.get("schedule", DEFAULT_SCHEDULES[period]), f"{where}")
        formats = item.get("formats", ["xlsx"])
        if not isinstance(formats, list) or not formats or any(f not in FILE_FORMATS for f in formats):
            refuse(f"{where} formats", f"a list of one or more of {', '.join(FILE_FORMATS)}", formats)
        unique(formats, f"{where} formats", "the format")
        try:
            by = parse_group_keys(item.get("by", []))
        except ValueError as error:
            raise ConfigError(f"{where}: by: {error}") from None
        flags = {setting: flag(item.get(setting, False), f"{where} {setting}") for setting in ("close", "calls")}
        output_dir = file_path(item["output_dir"], f"{where} output_dir") if "output_dir" in item else None
        account = text(item["account"], f"{where} account") if "account" in item else None  # balance_snapshots.account
        sent_to = channel_names(item.get("channels", []), where, defined)
        entries.append(ReportEntry(report, period, report_zone, schedule, tuple(formats), by, **flags,
                                   output_dir=output_dir, account=account, channels=sent_to))
    unique((e.name for e in entries), f"{source}: [[reports]]", "the report")
    _check_one_calendar(entries, source)
    return tuple(entries)


def _check_one_calendar(entries: list[ReportEntry], source: str) -> None:
    # The closes in force are one kind of period in one zone: a second calendar's closes would all be refused.
    closing = [(i, e) for i, e in enumerate(entries, 1) if e.close]
    for i, entry in closing[1:]:
        first_i, first = closing[0]
        if (entry.period, entry.timezone) != (first.period, first.timezone):
            raise ConfigError(f"{source}: reports #{i} ({entry.name}) closes {entry.period}s in {entry.timezone}, "
                              f"#{first_i} ({first.name}) {first.period}s in {first.timezone}: the ledger's closes are "
                              f"one kind of period in one zone (set close = false on one of them)")
