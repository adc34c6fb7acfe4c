"""Budgets and balance alerts as values, and the math that decides what they say (no I/O).

A budget is a limit on the credits a scope (project, user, key, account,
model, tags) spends in a calendar period in a zone or a rolling window. The
ledger's sums come in (`ledger.store.budgets`); out come the budget's state,
its projection to the period's end, the thresholds it has crossed, and the
conditions that alerts are raised and resolved on (`ledger.accounting.alerts`).
A balance's runway comes from the snapshots' consumption, weighted to the
recent days.
"""

from __future__ import annotations

import json
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from ..money import NANO, ZERO, quantize
from .parsing import UNREADABLE_MODEL
from .periods import CALENDAR_KINDS, Period, calendar_period, parse_duration, rolling_period
from .snapshots import SnapshotPoint

SCOPE_KEYS = ("account", "project", "user", "key", "model", "tag")
HUNDRED = Decimal(100)
# A projection from less of the period than this is noise: no forecast alert before it.
FORECAST_MIN_ELAPSED = Decimal("0.1")
RUNWAY_WINDOW_DAYS = 7
DAYS = Decimal("0.001")  # a runway's precision (under two minutes)

# Budget states, mildest first.
OK, FORECAST_OVER, WARNING, OVER = "ok", "forecast_over", "warning", "over"


# ---------------------------------------------------------------- scopes


@dataclass(frozen=True, slots=True)
class Scope:
    """Which calls a budget counts: every given field must match (none given: every call)."""

    account: str | None = None
    project: str | None = None
    user: str | None = None
    key: str | None = None  # a key's label, as the config's accounts name it
    model: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in (
            ("account", self.account), ("project", self.project), ("user", self.user), ("key", self.key),
            ("model", self.model)) if value is not None]
        parts += [f"tag {k}={v}" for k, v in self.tags]
        return ", ".join(parts) or "all calls"

    @property
    def by_key(self) -> bool:
        """Whether the scope names keys (by account or label): the call's key decides."""
        return self.account is not None or self.key is not None

    def matches(self, project: str | None, user: str | None, model: str | None,
                tags: Mapping[str, str] | None, fingerprint: str | None = None,
                fingerprints: frozenset[str] | None = None) -> bool:
        """Whether a call with these facts is in the scope; `fingerprints` are the keys its account/label stand for.

        `model` is as requested: a body whose model cannot be read (UNREADABLE_MODEL) may be of any model, and is
        in every model's scope."""
        return all(test(project, user, model, tags, fingerprint, fingerprints) for test in self.tests())

    def tests(self, *, project: bool = True) -> tuple[ScopeTest, ...]:
        """The scope's rule as one test a field it names (all must pass); without the project's when `project` is
        false (for a caller that found the call's budgets by its project)."""
        found = [_project_is(self.project)] if project and self.project is not None else []
        if self.user is not None:
            found.append(_user_is(self.user))
        if self.model is not None:
            found.append(_model_is(self.model))
        if self.tags:
            found.append(_tags_hold(self.tags))
        if self.by_key:
            found.append(_key_among)
        return tuple(found)


# A test of one field of a scope: (project, user, model, tags, fingerprint, fingerprints) -> in the scope.
ScopeTest = Callable[[str | None, str | None, str | None, Mapping[str, str] | None, str | None, frozenset[str] | None],
                     bool]


def _project_is(wanted: str) -> ScopeTest:
    return lambda project, user, model, tags, fingerprint, fingerprints: project == wanted


def _user_is(wanted: str) -> ScopeTest:
    return lambda project, user, model, tags, fingerprint, fingerprints: user == wanted


def _model_is(wanted: str) -> ScopeTest:
    return lambda project, user, model, tags, fingerprint, fingerprints: model == wanted or model is UNREADABLE_MODEL


def _tags_hold(wanted: tuple[tuple[str, str], ...]) -> ScopeTest:
    return lambda project, user, model, tags, fingerprint, fingerprints: (
        tags is not None and all(tags.get(k) == v for k, v in wanted))


def _key_among(project: str | None, user: str | None, model: str | None, tags: Mapping[str, str] | None,
               fingerprint: str | None, fingerprints: frozenset[str] | None) -> bool:
    return fingerprint is not None and fingerprints is not None and fingerprint in fingerprints


def tag_fragments(name: str, value: str) -> tuple[str, str]:
    """The two texts one of which a call's stored tags hold when they include name=value.

    Tags are stored as `json.dumps` of a dict with sorted keys, so a pair is
    `"name": "value"` right after `{` or `, `; inside a string every quote is
    escaped, so neither text can match there.
    """
    pair = f"{json.dumps(name)}: {json.dumps(value)}"
    return "{" + pair, ", " + pair


# ---------------------------------------------------------------- budgets


@dataclass(frozen=True, slots=True)
class Budget:
    """One [[budgets]] entry, checked (ledger.config.alerts)."""

    name: str
    scope: Scope
    period: str  # a calendar kind (day, week, month, quarter, year) or a rolling length such as 24h
    timezone: str = "UTC"
    limit: Decimal | None = None  # credits
    _: KW_ONLY
    limit_usd: Decimal | None = None  # or dollars, at the rate card's usd_per_credit
    thresholds: tuple[int, ...] = (50, 80, 100)
    forecast: bool = False
    enforce: bool = False
    channels: tuple[str, ...] = ()

    @property
    def rolling(self) -> bool:
        return self.period not in CALENDAR_KINDS

    def period_at(self, now: datetime) -> Period:
        """The period the budget counts at `now`: the calendar one holding it, or the window ending at it."""
        if self.rolling:
            return rolling_period(parse_duration(self.period), now, f"last {self.period}")
        return calendar_period(self.period, now, self.timezone)

    def limit_credits(self, usd_per_credit: Decimal | None) -> Decimal:
        """The limit in credits (a dollar limit at the rate card's usd_per_credit)."""
        if self.limit is not None:
            return self.limit
        if not usd_per_credit:
            raise ValueError(f"budget {self.name!r}: no usd_per_credit to turn limit_usd into credits")
        return self.limit_usd / usd_per_credit


class BudgetStatus(NamedTuple):
    """Where a budget stands at `at`."""

    budget: Budget
    period: Period
    at: datetime
    spent: Decimal
    calls: int
    limit: Decimal
    percent: Decimal  # of the limit spent
    projection: Decimal | None  # at the period's end at the run rate so far; None for a rolling window
    crossed: tuple[int, ...]  # the thresholds spent has reached
    forecast_over: bool  # the projection passes the limit (after FORECAST_MIN_ELAPSED of the period)
    state: str

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.spent


def percent_of(amount: Decimal, limit: Decimal) -> Decimal:
    return amount * HUNDRED / limit if limit > 0 else (HUNDRED if amount > 0 else ZERO)


def _microseconds(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1))


def _fraction(part: timedelta, whole: timedelta) -> Decimal:
    return _microseconds(part) / _microseconds(whole)


def projection(spent: Decimal, period: Period, now: datetime) -> Decimal | None:
    """The spend at the period's end at the period's run rate so far: spent / elapsed x length."""
    elapsed = period.elapsed(now)
    if period.kind == "rolling" or elapsed <= timedelta(0):
        return None
    return quantize(spent * _microseconds(period.length) / _microseconds(elapsed), NANO)


def budget_status(budget: Budget, period: Period, now: datetime, spent: Decimal, calls: int,
                  limit: Decimal) -> BudgetStatus:
    """The state of a budget whose scope spent `spent` in `period`, at `now`."""
    percent = percent_of(spent, limit)
    crossed = tuple(t for t in budget.thresholds if percent >= t)
    projected = projection(spent, period, now)
    forecast = (budget.forecast and projected is not None and spent < limit and projected > limit
                and _fraction(period.elapsed(now), period.length) >= FORECAST_MIN_ELAPSED)
    if spent >= limit:
        state = OVER
    elif crossed:
        state = WARNING
    elif forecast:
        state = FORECAST_OVER
    else:
        state = OK
    return BudgetStatus(budget, period, now, spent, calls, limit, percent, projected, crossed, forecast, state)


# ---------------------------------------------------------------- balance runway


@dataclass(frozen=True, slots=True)
class BalanceAlert:
    """One [[balance_alerts]] entry, checked (ledger.config.alerts)."""

    account: str
    below: Decimal | None = None
    runway_days: int | None = None
    channels: tuple[str, ...] = ()


class Runway(NamedTuple):
    """A balance and how long it lasts at the recent burn rate."""

    account: str
    at: datetime | None  # the newest snapshot's time
    balance: Decimal | None  # the newest snapshot's balance; None: no snapshot
    burn_per_day: Decimal | None  # weighted daily consumption; None: no two snapshots a day apart
    days_left: Decimal | None  # balance / burn; None: no burn (it lasts)
    daily: tuple[Decimal | None, ...]  # consumption per day of the window, oldest first (None: no data)

    def top_up_for(self, days: int) -> Decimal | None:
        """The credits that would make the balance last `days` at this burn (0 when it does)."""
        if self.balance is None or self.burn_per_day is None:
            return None
        return max(ZERO, self.burn_per_day * days - self.balance)


def _consumed_at(points: Sequence[SnapshotPoint], when: datetime) -> Decimal:
    """total_consumed at `when`, linear between the snapshots around it (within their span)."""
    before = points[0]
    for point in points[1:]:
        if point.taken_at >= when:
            if point.taken_at == before.taken_at:
                return point.total_consumed
            share = _fraction(when - before.taken_at, point.taken_at - before.taken_at)
            return before.total_consumed + (point.total_consumed - before.total_consumed) * share
        before = point
    return before.total_consumed


def runway(account: str, points: Sequence[SnapshotPoint], now: datetime, days: int = RUNWAY_WINDOW_DAYS) -> Runway:
    """The runway of a balance from its OK snapshots (oldest first).

    Each of the last `days` days (24 h slices ending now) burns what
    total_consumed rose by within it, read between the snapshots (linear in
    between; a slice only partly covered by snapshots counts at its rate over
    the part covered, one under an hour not at all). The burn rate is their
    average weighted days, days-1, ..., 1 from the newest, so that a change in
    the spending shows within a day or two.
    """
    if not points:
        return Runway(account, None, None, None, None, (None,) * days)
    last = points[-1]
    first = points[0]
    daily: list[Decimal | None] = []
    for back in range(days, 0, -1):
        start, end = now - timedelta(days=back), now - timedelta(days=back - 1)
        start, end = max(start, first.taken_at), min(end, last.taken_at)
        if end - start < timedelta(hours=1):
            daily.append(None)
            continue
        risen = _consumed_at(points, end) - _consumed_at(points, start)
        daily.append(quantize(risen / _fraction(end - start, timedelta(days=1)), NANO))
    weighted = [(weight, rate) for weight, rate in enumerate(daily, 1) if rate is not None]
    burn = None
    if weighted:
        burn = quantize(sum((w * r for w, r in weighted), ZERO) / sum(w for w, _ in weighted), NANO)
    days_left = quantize(last.balance / burn, DAYS) if burn is not None and burn > 0 else None
    return Runway(account, last.taken_at, last.balance, burn, days_left, tuple(daily))


def runway_short(alert: BalanceAlert, found: Runway) -> bool:
    """The balance runs out within the alert's runway_days at the recent burn."""
    return alert.runway_days is not None and found.days_left is not None and found.days_left < alert.runway_days


def balance_low(alert: BalanceAlert, found: Runway) -> bool:
    return alert.below is not None and found.balance is not None and found.balance < alert.below


def series_bar(values: Iterable[Decimal | None]) -> str:
    """A sparkline of a few values (None: a gap) for the terminal."""
    marks = "▁▂▃▄▅▆▇█"
    values = list(values)
    known = [v for v in values if v is not None]
    top = max(known, default=ZERO)
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        elif top <= 0:
            out.append(marks[0])
        else:
            out.append(marks[min(len(marks) - 1, int(value * (len(marks) - 1) / top))])
    return "".join(out)
