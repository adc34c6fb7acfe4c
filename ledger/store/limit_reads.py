"""What a hard limit's refresh reads of its scope and period: the spend and the largest charge, at a cost that does
not grow with the period's calls.

Whole UTC days come from the narrowest daily rollup table holding the
scope's dimensions (a row a day and dimension values: the day's charges and
its count of calls), the edges of the period off the UTC day from the raw
calls (a project's or a key's from its index). A whole day's largest charge
is read from the raw calls once and kept (`DayCharges`) with the count of
calls the rollup gave for the day just before: the ledger only appends
calls, so while a day's count is the same no call has been added to it, and
its kept maximum holds. The count is read before the charges, so a call that
commits between the two reads is in the maximum or makes the next count
differ: never missed, whatever order writers commit in (on PostgreSQL a call
can commit after calls with later ids or recording times, so neither is a
watermark here).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, func, literal_column, select, union_all
from sqlalchemy.orm import Session

from ..accounting.budgets import Scope
from ..money import ZERO
from .budgets import (Spend, _before_horizon, _credits, _day_ceil, _day_floor, largest_charge, scope_conditions,
                      scope_dims, spend)
from .models import Call, as_utc
from .rollup_levels import table_for
from .rollup_tables import DAY


_SELECTS = 400


class DayCharges:
    """One process's memory of a hard limit's whole UTC days: {day: (calls, largest charge)} as last read, for one
    set of scope conditions (a scope and the fingerprints its key or account stood for then)."""

    __slots__ = ("conditions", "days")

    def __init__(self) -> None:
        self.conditions: tuple | None = None
        self.days: dict[datetime, tuple[int, Decimal | None]] = {}

    def of(self, scope: Scope, fingerprints: frozenset[str] | None) -> dict[datetime, tuple[int, Decimal | None]]:
        """The days kept for these conditions (other conditions' days are forgotten)."""
        conditions = (scope, fingerprints)
        if conditions != self.conditions:
            self.conditions, self.days = conditions, {}
        return self.days


def limit_reads(session: Session, scope: Scope, start: datetime, end: datetime,
                fingerprints: frozenset[str] | None = None, seen: DayCharges | None = None) -> tuple[Spend, Decimal | None]:
    """The spend of the scope's calls that started in [start, end) and their largest charge (None: none was
    charged), as `spend` and `largest_charge` give them; `seen` keeps each whole day's largest charge for the next
    read. A scope no daily table holds (models, tags), a period of no whole UTC day, or one reaching where
    retention deleted calls: `spend` and `largest_charge` themselves."""
    table = table_for(DAY, scope_dims([scope]))
    first, last = _day_ceil(start), _day_floor(end)
    if table is None or last <= first or _before_horizon(session, start):
        return (spend(session, scope, start, end, fingerprints),
                largest_charge(session, scope, start, end, fingerprints))
    model = table.model
    # The days' counts first: every call they count is in the charges read after them.
    days_query = (select(model.bucket_start, func.sum(model.credits_charged), func.sum(model.calls))
                  .where(model.bucket_start >= first, model.bucket_start < last,
                         *scope_conditions(session, scope, fingerprints, model))
                  .group_by(model.bucket_start))
    days = {as_utc(day): (_credits(credits), int(calls)) for day, credits, calls in session.execute(days_query)}
    kept = (seen or DayCharges()).of(scope, fingerprints)
    changed = sorted(day for day, (_, calls) in days.items() if kept.get(day, (None,))[0] != calls)
    edges = [(low, high) for low, high in ((start, first), (last, end)) if low < high]
    credits, calls = sum((c for c, _ in days.values()), ZERO), sum(n for _, n in days.values())
    maxima = [kept[day][1] for day in days if day not in changed]
    ranges = edges + [(day, day + DAY) for day in changed]
    if ranges:
        # A SELECT a range (a project's or key's: a range of its index alone), the edges' first.
        conditions = scope_conditions(session, scope, fingerprints)
        charge = Call.credits_charged
        selects = [select(literal_column(str(at), Integer).label("at"), func.sum(charge).label("credits"),
                          func.count().label("calls"), func.max(charge).label("largest"))
                   .where(Call.started_at >= low, Call.started_at < high, *conditions)
                   for at, (low, high) in enumerate(ranges)]
        rows = {}
        for chunk in range(0, len(selects), _SELECTS):  # (SQLite: at most 500 SELECTs in a compound one)
            part = selects[chunk:chunk + _SELECTS]
            rows.update((at, row) for at, *row in session.execute(part[0] if len(part) == 1 else union_all(*part)))
        for at, (low, _) in enumerate(ranges):
            range_credits, range_calls, range_largest = rows[at]
            range_largest = None if range_largest is None else _credits(range_largest)
            maxima.append(range_largest)
            if at < len(edges):
                credits, calls = credits + _credits(range_credits), calls + int(range_calls)
            else:
                kept[low] = (days[low][1], range_largest)
    for day in [day for day in kept if day not in days]:  # days of other periods, or that had no call
        del kept[day]
    largest = max((m for m in maxima if m is not None), default=None)
    return Spend(credits, calls), (largest if largest else None)  # as `largest_charge`: none charged, None
