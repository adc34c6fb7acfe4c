"""Balance assertions on the platform's numbers, checked against the ledger (no I/O).

Between two snapshots of an account, the rise of total_consumed (integers)
should equal what the ledger says that account's keys were charged (exact
fractions) for the calls between them. A call is in the ledger's window in
which it started; the platform booked it at some instant between its start
and its end plus the billing's settle time, and a snapshot's figures hold at
some instant between the poll's request and its answer. So:

* rounding: each snapshot figure is the platform's exact consumption rounded
  to an integer; with the rule `floor` the exact figure X lies in [C, C+1),
  so a window's difference is within (-1, +1) credit; `half`: [-1, +1];
  `any` (rule unknown): (-2, +2);
* calls at a poll: only a call that overlaps it (started before its answer
  came back, booked after its request may have been sent) is ambiguous, and
  only between the two windows that meet there. One that the ledger puts
  before the snapshot may have been booked after it (`Overlap.booked_late`),
  one it puts after may have been booked before (`booked_early`). Each moves
  a window's difference one way only, so the tolerance is one-sided: below,
  what may have left the window; above, what may have come into it.

The cumulative line compares first and last snapshot directly, so rounding
never accumulates. Beyond each window's own check, every snapshot bounds the
platform's exact consumption at the first snapshot; when those bounds stop
overlapping, spend appeared that the ledger does not know ("drift"): this
finds a gap of one credit within a few polls, where a single window
(tolerance one credit) might not.

Only a refund lowers total_consumed: a window where it fell names the
refund, which explains the ledger counting more than the platform took
there (and in the cumulative line), and a rise no call explains that the
next window gives back is a charge refunded across a poll.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

from ..money import ZERO
from .pricing import CLEAN_CLASSES, MISSING_CHARGE, MISSING_USAGE, ROUNDING, UNPRICED_MODEL
from .snapshots import SnapshotPoint

# Where the exact figure X may lie around a reported integer C: from C - below to
# C + above, with at least one end open (strict) except for `half` (ties either way).
ROUNDING_RULES: dict[str, tuple[Decimal, Decimal]] = {
    "floor": (ZERO, Decimal(1)),  # [C, C+1)
    "ceil": (Decimal(1), ZERO),  # (C-1, C]
    "half": (Decimal("0.5"), Decimal("0.5")),  # [C-0.5, C+0.5]
    "any": (Decimal(1), Decimal(1)),  # (C-1, C+1)
}
STRICT_RULES = frozenset({"floor", "ceil", "any"})
DEFAULT_ROUNDING = "floor"
DEFAULT_BILLING_SETTLE_SECONDS = 2.0  # how long after a call's end the platform may book its charge

# Window statuses, worst first.
INVARIANT = "invariant"  # the platform's own figures do not add up
GAP = "gap"  # the platform took more (or less) than the ledger knows, beyond tolerance
DRIFT = "drift"  # within this window's tolerance, but inconsistent with the snapshots before
EXPLAINED = "explained"  # beyond tolerance, but within what calls of unknown charge could cost
OK = "ok"
UNEXPLAINED = frozenset({INVARIANT, GAP, DRIFT})
_SEVERITY = (INVARIANT, GAP, DRIFT, EXPLAINED, OK)


@dataclass(frozen=True, slots=True)
class Overlap:
    """The charges of an account's calls that overlap one poll: they may be booked on the other side of it."""

    booked_late: Decimal = ZERO  # the ledger puts them before the snapshot; the platform may have booked them after
    booked_early: Decimal = ZERO  # the ledger puts them after; the platform may have booked them before


NO_OVERLAP = Overlap()


@dataclass(frozen=True, slots=True)
class ClassSum:
    pricing_class: str
    calls: int
    charged: Decimal  # all charges of the class
    priced_charged: Decimal  # charges of its calls that have an expected cost
    expected: Decimal

    def __add__(self, other: "ClassSum") -> "ClassSum":
        return ClassSum(
            self.pricing_class,
            self.calls + other.calls,
            self.charged + other.charged,
            self.priced_charged + other.priced_charged,
            self.expected + other.expected,
        )


def _class_total(parts: list[ClassSum]) -> ClassSum:
    return ClassSum(parts[0].pricing_class, sum(c.calls for c in parts), sum((c.charged for c in parts), ZERO),
                    sum((c.priced_charged for c in parts), ZERO), sum((c.expected for c in parts), ZERO))


@dataclass(frozen=True, slots=True)
class LedgerSums:
    """What the ledger knows of one account's calls that started in a window."""

    calls: int = 0
    charged: Decimal = ZERO
    priced_charged: Decimal = ZERO  # charges of calls that have an expected cost
    expected: Decimal = ZERO
    by_class: tuple[ClassSum, ...] = ()
    aborted: int = 0  # streams closed early or cut
    aborted_charged: Decimal = ZERO
    unknown_charge: int = 0  # not errors, yet no charge known: the platform may have charged them
    max_charge: Decimal = ZERO
    unattributed_calls: int = 0  # calls by keys of no configured account
    unattributed_charged: Decimal = ZERO

    @classmethod
    def of(cls, parts: Sequence["LedgerSums"]) -> "LedgerSums":
        """The sum of `parts` in one pass (a week of hourly windows: `+` would build a value for each)."""
        if not parts:
            return cls()
        classes: dict[str, list[ClassSum]] = {}
        for part in parts:
            for c in part.by_class:
                classes.setdefault(c.pricing_class, []).append(c)
        return cls(
            sum(p.calls for p in parts),
            sum((p.charged for p in parts), ZERO),
            sum((p.priced_charged for p in parts), ZERO),
            sum((p.expected for p in parts), ZERO),
            tuple(_class_total(classes[k]) for k in sorted(classes)),
            sum(p.aborted for p in parts),
            sum((p.aborted_charged for p in parts), ZERO),
            sum(p.unknown_charge for p in parts),
            max(p.max_charge for p in parts),
            sum(p.unattributed_calls for p in parts),
            sum((p.unattributed_charged for p in parts), ZERO),
        )

    def __add__(self, other: "LedgerSums") -> "LedgerSums":
        classes = {c.pricing_class: c for c in self.by_class}
        for c in other.by_class:
            classes[c.pricing_class] = classes[c.pricing_class] + c if c.pricing_class in classes else c
        return LedgerSums(
            self.calls + other.calls,
            self.charged + other.charged,
            self.priced_charged + other.priced_charged,
            self.expected + other.expected,
            tuple(classes[k] for k in sorted(classes)),
            self.aborted + other.aborted,
            self.aborted_charged + other.aborted_charged,
            self.unknown_charge + other.unknown_charge,
            max(self.max_charge, other.max_charge),
            self.unattributed_calls + other.unattributed_calls,
            self.unattributed_charged + other.unattributed_charged,
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    """One named part of a difference: a pricing class, aborted streams, unrecorded spend, a top-up."""

    name: str
    credits: Decimal | None
    calls: int = 0
    note: str = ""


@dataclass(frozen=True, slots=True)
class WindowReconciliation:
    """One window between two snapshots of an account (or the cumulative line)."""

    account: str
    start: datetime
    end: datetime
    start_snapshot: int
    end_snapshot: int
    purchased: Decimal  # rise of total_purchased: top-ups
    consumed: Decimal  # rise of total_consumed: what the platform took
    balance_change: Decimal
    ledger_calls: int
    ledger_charged: Decimal  # what the ledger's calls were charged
    difference: Decimal  # consumed - ledger_charged
    tolerance_below: Decimal  # the difference may be this far below zero: rounding and calls booked outside
    tolerance_above: Decimal  # and this far above: rounding and calls booked inside
    above_rate_card: Decimal  # charged - expected over calls that have both
    expected: Decimal
    status: str
    explanations: tuple[Explanation, ...] = ()
    cumulative: bool = False

    @property
    def unexplained(self) -> bool:
        return self.status in UNEXPLAINED

    def explanation(self, name: str) -> Explanation | None:
        return next((e for e in self.explanations if e.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "explanations"}
        data["explanations"] = [
            {"name": e.name, "credits": e.credits, "calls": e.calls, "note": e.note} for e in self.explanations
        ]
        return data


# ---------------------------------------------------------------- the checks


def beyond(difference: Decimal, below: Decimal, above: Decimal, strict: bool) -> bool:
    """Whether the difference is outside [-below, +above] (strict: the bounds are open)."""
    if strict:
        return difference >= above or difference <= -below
    return difference > above or difference < -below


def explain(
    sums: LedgerSums, purchased: Decimal, difference: Decimal, below: Decimal, above: Decimal, strict: bool = True,
    refund: Explanation | None = None,
) -> tuple[list[Explanation], str]:
    """The named parts of a window's difference, and its status (before drift and invariant).

    `refund`: what the platform gave back (credits < 0), which explains as much of a negative difference.
    """
    parts: list[Explanation] = [refund] if refund is not None else []
    refunded = -refund.credits if refund is not None and refund.credits is not None else ZERO
    if purchased > 0:
        parts.append(Explanation("top_up", purchased, 0, "total_purchased rose"))
    elif purchased < 0:
        parts.append(Explanation("purchased_decreased", purchased, 0, "total_purchased fell"))
    for c in sums.by_class:
        if c.pricing_class in (MISSING_USAGE, UNPRICED_MODEL):
            parts.append(Explanation(c.pricing_class, c.charged, c.calls, "charged, cannot be checked against the rate card"))
        elif c.pricing_class == MISSING_CHARGE:
            parts.append(Explanation(c.pricing_class, None, c.calls, "no charge reported"))
        elif c.pricing_class not in CLEAN_CLASSES or (c.pricing_class == ROUNDING and c.priced_charged != c.expected):
            parts.append(Explanation(c.pricing_class, c.priced_charged - c.expected, c.calls, "charged minus rate card"))
    if sums.aborted:
        parts.append(
            Explanation("aborted_streams", sums.aborted_charged, sums.aborted, f"{sums.unknown_charge} calls of unknown charge")
        )
    elif sums.unknown_charge:
        parts.append(Explanation("unknown_charge", None, sums.unknown_charge, "calls the platform may have charged"))
    if sums.unattributed_calls:
        parts.append(
            Explanation(
                "unattributed_calls", sums.unattributed_charged, sums.unattributed_calls, "keys of no configured account"
            )
        )
    status = OK
    if difference > 0 and beyond(difference, below, above, strict):
        # Calls of unknown charge may explain a rise up to what that many calls have cost at most.
        allowance = sums.unknown_charge * sums.max_charge
        if sums.unknown_charge and difference <= above + allowance:
            status = EXPLAINED
            parts.append(Explanation("unknown_charge_spend", difference, sums.unknown_charge, "likely aborted streams"))
        else:
            status = GAP
            parts.append(Explanation("unrecorded_spend", difference, 0, "the balance fell by more than the ledger knows"))
    elif difference < 0 and beyond(difference, below + refunded, above, strict):
        status = GAP
        parts.append(Explanation("ledger_above_platform", difference + refunded, 0,
                                 "the ledger counts more than the platform took"))
    elif difference < 0 and beyond(difference, below, above, strict):
        status = EXPLAINED  # the refund
    return parts, status


def window_refund(consumed: Decimal, difference: Decimal) -> Explanation | None:
    """A fall of total_consumed: the platform gave credits back (only a refund lowers it).

    How much it gave back is at least the fall; with the window's own charges,
    what the ledger knows puts it at the whole negative difference.
    """
    if consumed >= 0:
        return None
    return Explanation("refund", min(difference, consumed), 0,
                       f"total_consumed fell by {-consumed}: the platform refunded credits")


def _refunded_later(windows: list[WindowReconciliation], strict: bool) -> None:
    """A rise no call explains, given back by the next window's refund: a charge refunded across a poll."""
    for i, (charged, refunded) in enumerate(zip(windows, windows[1:])):
        spend, refund = charged.explanation("unrecorded_spend"), refunded.explanation("refund")
        if charged.status != GAP or spend is None or refund is None or spend.credits is None:
            continue
        rest = spend.credits + (refund.credits or ZERO)
        if beyond(rest, charged.tolerance_below, charged.tolerance_above, strict):
            continue
        parts = tuple(e for e in charged.explanations if e is not spend) + (
            Explanation("refunded_later", spend.credits, 0, "charged, then refunded in the next window"),)
        windows[i] = replace(charged, status=EXPLAINED, explanations=parts)


def _worst(*statuses: str) -> str:
    return min(statuses, key=_SEVERITY.index)


def reconcile_account(
    account: str,
    points: Sequence[SnapshotPoint],
    window_sums: Sequence[LedgerSums],
    overlaps: Sequence[Overlap],
    rounding: str = DEFAULT_ROUNDING,
    since: tuple[SnapshotPoint, LedgerSums, Overlap] | None = None,
    refunded_before: Decimal = ZERO,
) -> tuple[list[WindowReconciliation], WindowReconciliation | None]:
    """Check consecutive snapshots and the whole run.

    `window_sums[i]` is the ledger between points[i] and points[i+1];
    `overlaps[i]` the calls that overlap the poll of points[i]. The cumulative
    line runs from points[0], or from `since` = (an earlier snapshot, the
    ledger from it to points[-1], its overlap) when only recent windows are listed;
    `refunded_before` is then what the platform refunded before points[0]
    (the falls of total_consumed there, 0 or less).
    """
    if len(window_sums) != max(0, len(points) - 1) or len(overlaps) != len(points):
        raise ValueError("one LedgerSums per window and one Overlap per snapshot")
    below, above = ROUNDING_RULES[rounding]
    strict = rounding in STRICT_RULES
    windows: list[WindowReconciliation] = []
    # The running bound on the platform's consumption at the first snapshot: each snapshot k says
    # it lies in [C_k - L_k - below - early_k, C_k - L_k + above + late_k] (L_k: the ledger up to k).
    lo = hi = None
    cumulative_ledger = ZERO
    for i, (a, b) in enumerate(zip(points, points[1:])):
        sums, start_overlap, end_overlap = window_sums[i], overlaps[i], overlaps[i + 1]
        if lo is None:
            lo = a.total_consumed - below - start_overlap.booked_early
            hi = a.total_consumed + above + start_overlap.booked_late
            segment_start = a
            segment_ledger = cumulative_ledger
        cumulative_ledger += sums.charged
        consumed = b.total_consumed - a.total_consumed
        difference = consumed - sums.charged
        # Out of the window: its own calls booked before its start or after its end; into it: the others.
        tol_below = below + above + start_overlap.booked_early + end_overlap.booked_late
        tol_above = below + above + start_overlap.booked_late + end_overlap.booked_early
        refund = window_refund(consumed, difference)
        parts, status = explain(sums, b.total_purchased - a.total_purchased, difference, tol_below, tol_above, strict,
                                refund)
        if b.invariant_error:
            status = INVARIANT
            parts.append(Explanation("invariant_broken", b.invariant_error, 0, "balance != total_purchased - total_consumed"))
        u = b.total_consumed - cumulative_ledger
        b_lo, b_hi = u - below - end_overlap.booked_early, u + above + end_overlap.booked_late
        if sums.unknown_charge or refund is not None:
            # Calls of unknown charge, or a refund: what came before no longer bounds what follows.
            lo, hi = b_lo, b_hi
            segment_start, segment_ledger = b, cumulative_ledger
        elif _disjoint(max(lo, b_lo), min(hi, b_hi), strict):
            # The snapshots since segment_start cannot all hold with the ledger: spend moved.
            drift = (b.total_consumed - segment_start.total_consumed) - (cumulative_ledger - segment_ledger)
            if status in (OK, EXPLAINED):
                status = _worst(status, DRIFT)
                parts.append(
                    Explanation(
                        "unrecorded_spend" if drift > 0 else "ledger_above_platform",
                        drift,
                        0,
                        f"since {segment_start.taken_at.isoformat()}: inconsistent with the earlier snapshots",
                    )
                )
            lo, hi = b_lo, b_hi
            segment_start, segment_ledger = b, cumulative_ledger
        else:
            lo, hi = max(lo, b_lo), min(hi, b_hi)
        windows.append(_window(account, a, b, sums, difference, tol_below, tol_above, status, parts))
    if not windows:
        return [], None
    first, last, first_overlap = points[0], points[-1], overlaps[0]
    if since is not None:
        first, total, first_overlap = since
    else:
        total = LedgerSums.of(window_sums)
    difference = (last.total_consumed - first.total_consumed) - total.charged
    tol_below = below + above + first_overlap.booked_early + overlaps[-1].booked_late
    tol_above = below + above + first_overlap.booked_late + overlaps[-1].booked_early
    _refunded_later(windows, strict)
    refunds = [w.explanation("refund") for w in windows if w.explanation("refund") is not None]
    refund = None
    if refunds or refunded_before:
        credits = refunded_before + sum((r.credits for r in refunds if r.credits is not None), ZERO)
        refund = Explanation("refund", credits, 0, "total_consumed fell: the platform refunded credits")
    parts, status = explain(total, last.total_purchased - first.total_purchased, difference, tol_below, tol_above, strict,
                            refund)
    broken = [w for w in windows if w.status == INVARIANT]
    if broken:
        status = INVARIANT
        parts.append(Explanation("invariant_broken", None, 0, f"in {len(broken)} windows"))
    moved = [w for w in windows if w.status in (GAP, DRIFT)]
    if moved and status in (OK, EXPLAINED):
        # Within the whole run's rounding, but some snapshots cannot hold with the ledger: what those windows
        # found, summed by name (the run's own difference, within rounding, would say 0).
        status = DRIFT
        for name in ("unrecorded_spend", "ledger_above_platform"):
            found = [e for w in moved for e in w.explanations if e.name == name and e.credits is not None]
            if found:
                parts.append(Explanation(name, sum((e.credits for e in found), ZERO), 0,
                                         f"in {len(found)} windows; the run as a whole is within rounding"))
    cumulative = _window(account, first, last, total, difference, tol_below, tol_above, status, parts, cumulative=True)
    return windows, cumulative


def _disjoint(low: Decimal, high: Decimal, strict: bool) -> bool:
    return low >= high if strict else low > high


def _window(account, a, b, sums, difference, tol_below, tol_above, status, parts, cumulative=False) -> WindowReconciliation:
    return WindowReconciliation(
        account=account,
        start=a.taken_at,
        end=b.taken_at,
        start_snapshot=a.id,
        end_snapshot=b.id,
        purchased=b.total_purchased - a.total_purchased,
        consumed=b.total_consumed - a.total_consumed,
        balance_change=b.balance - a.balance,
        ledger_calls=sums.calls,
        ledger_charged=sums.charged,
        difference=difference,
        tolerance_below=tol_below,
        tolerance_above=tol_above,
        above_rate_card=sums.priced_charged - sums.expected,
        expected=sums.expected,
        status=status,
        explanations=tuple(parts),
        cumulative=cumulative,
    )
