"""Balance assertions on the platform's numbers, checked against the ledger.

Between two snapshots of an account, the rise of total_consumed (integers)
should equal what the ledger says that account's keys were charged (exact
fractions) for calls that ended in between. The tolerance this implies:

* rounding: each snapshot figure is the platform's exact consumption rounded
  to an integer; with the rule `floor` the exact figure X lies in [C, C+1),
  so a window's difference is within (-1, +1) credit; `half`: [-1, +1];
  `any` (rule unknown): (-2, +2);
* calls in flight: a call that ended within `edge_seconds` of a snapshot may
  be on either side of it, so the charges of those calls widen the tolerance
  of both windows that meet at that snapshot.

The cumulative line compares first and last snapshot directly, so rounding
never accumulates. Beyond each window's own check, every snapshot bounds the
platform's exact consumption at the first snapshot (C_i - L_i within the
rounding and edge widths); when those bounds stop overlapping, spend appeared
that the ledger does not know ("drift"): this finds a gap of one credit
within a few polls, where a single window (tolerance one credit) might not.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

from ..exactjson import dumps
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
DEFAULT_EDGE_SECONDS = 2.0

# Window statuses, worst first.
INVARIANT = "invariant"  # the platform's own figures do not add up
GAP = "gap"  # the platform took more (or less) than the ledger knows, beyond tolerance
DRIFT = "drift"  # within this window's tolerance, but inconsistent with the snapshots before
EXPLAINED = "explained"  # beyond tolerance, but within what calls of unknown charge could cost
OK = "ok"
UNEXPLAINED = frozenset({INVARIANT, GAP, DRIFT})
_SEVERITY = (INVARIANT, GAP, DRIFT, EXPLAINED, OK)


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


@dataclass(frozen=True, slots=True)
class LedgerSums:
    """What the ledger knows of one account's calls that ended in a window."""

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
    tolerance: Decimal
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


@dataclass(frozen=True, slots=True)
class AccountReconciliation:
    account: str
    windows: tuple[WindowReconciliation, ...]
    cumulative: WindowReconciliation | None
    failed_polls: dict[str, int] = field(default_factory=dict)

    @property
    def has_unexplained_gap(self) -> bool:
        return any(w.unexplained for w in self.windows) or (self.cumulative is not None and self.cumulative.unexplained)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    accounts: tuple[AccountReconciliation, ...]
    start: datetime | None
    end: datetime | None
    rounding: str
    edge_seconds: float

    @property
    def has_unexplained_gap(self) -> bool:
        return any(a.has_unexplained_gap for a in self.accounts)

    @property
    def has_findings(self) -> bool:
        """Any pricing finding (not just a gap): worth reading, not a failed close."""
        return any(
            e.name not in (ROUNDING, "top_up") for a in self.accounts if a.cumulative for e in a.cumulative.explanations
        )

    def rows(self) -> list[WindowReconciliation]:
        """Every window, each account's cumulative line after its windows."""
        out: list[WindowReconciliation] = []
        for account in self.accounts:
            out.extend(account.windows)
            if account.cumulative is not None:
                out.append(account.cumulative)
        return out

    def to_json(self) -> str:
        data = {
            "start": self.start,
            "end": self.end,
            "rounding": self.rounding,
            "edge_seconds": self.edge_seconds,
            "has_unexplained_gap": self.has_unexplained_gap,
            "accounts": [
                {
                    "account": a.account,
                    "has_unexplained_gap": a.has_unexplained_gap,
                    "failed_polls": a.failed_polls,
                    "windows": [w.to_dict() for w in a.windows],
                    "cumulative": a.cumulative.to_dict() if a.cumulative else None,
                }
                for a in self.accounts
            ],
        }
        return dumps(data, indent=2)


# ---------------------------------------------------------------- the checks


def beyond(difference: Decimal, tolerance: Decimal, strict: bool) -> bool:
    """Whether |difference| is outside what rounding and edges allow (strict: the bound is open)."""
    return abs(difference) >= tolerance if strict else abs(difference) > tolerance


def explain(
    sums: LedgerSums, purchased: Decimal, difference: Decimal, tolerance: Decimal, strict: bool = True
) -> tuple[list[Explanation], str]:
    """The named parts of a window's difference, and its status (before drift and invariant)."""
    parts: list[Explanation] = []
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
    if difference > 0 and beyond(difference, tolerance, strict):
        # Calls of unknown charge may explain a rise up to what that many calls have cost at most.
        allowance = sums.unknown_charge * sums.max_charge
        if sums.unknown_charge and difference <= tolerance + allowance:
            status = EXPLAINED
            parts.append(Explanation("unknown_charge_spend", difference, sums.unknown_charge, "likely aborted streams"))
        else:
            status = GAP
            parts.append(Explanation("unrecorded_spend", difference, 0, "the balance fell by more than the ledger knows"))
    elif difference < 0 and beyond(difference, tolerance, strict):
        status = GAP
        parts.append(Explanation("ledger_above_platform", difference, 0, "the ledger counts more than the platform took"))
    return parts, status


def _worst(*statuses: str) -> str:
    return min(statuses, key=_SEVERITY.index)


def reconcile_account(
    account: str,
    points: Sequence[SnapshotPoint],
    window_sums: Sequence[LedgerSums],
    edges: Sequence[Decimal],
    rounding: str = DEFAULT_ROUNDING,
    since: tuple[SnapshotPoint, LedgerSums, Decimal] | None = None,
) -> tuple[list[WindowReconciliation], WindowReconciliation | None]:
    """Check consecutive snapshots and the whole run (pure).

    `window_sums[i]` is the ledger between points[i] and points[i+1];
    `edges[i]` the charges of calls that ended near points[i]. The cumulative
    line runs from points[0], or from `since` = (an earlier snapshot, the
    ledger from it to points[-1], its edge) when only recent windows are listed.
    """
    if len(window_sums) != max(0, len(points) - 1) or len(edges) != len(points):
        raise ValueError("one LedgerSums per window and one edge per snapshot")
    below, above = ROUNDING_RULES[rounding]
    width = below + above
    strict = rounding in STRICT_RULES
    windows: list[WindowReconciliation] = []
    # The running bound on u = X_i - L_i (platform exact consumption minus ledger cumulative).
    lo = hi = None
    cumulative_ledger = ZERO
    for i, (a, b) in enumerate(zip(points, points[1:])):
        sums = window_sums[i]
        if lo is None:
            lo, hi = a.total_consumed - below - edges[i], a.total_consumed + above + edges[i]
            segment_start = a
            segment_ledger = cumulative_ledger
        cumulative_ledger += sums.charged
        consumed = b.total_consumed - a.total_consumed
        difference = consumed - sums.charged
        tolerance = width + edges[i] + edges[i + 1]
        parts, status = explain(sums, b.total_purchased - a.total_purchased, difference, tolerance, strict)
        if b.invariant_error:
            status = INVARIANT
            parts.append(Explanation("invariant_broken", b.invariant_error, 0, "balance != total_purchased - total_consumed"))
        u = b.total_consumed - cumulative_ledger
        b_lo, b_hi = u - below - edges[i + 1], u + above + edges[i + 1]
        if sums.unknown_charge:
            # Calls of unknown charge: what came before no longer bounds what follows.
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
        windows.append(_window(account, a, b, sums, difference, tolerance, status, parts))
    if not windows:
        return [], None
    first, last, first_edge = points[0], points[-1], edges[0]
    if since is not None:
        first, total, first_edge = since
    else:
        total = LedgerSums()
        for sums in window_sums:
            total = total + sums
    difference = (last.total_consumed - first.total_consumed) - total.charged
    tolerance = width + first_edge + edges[-1]
    parts, status = explain(total, last.total_purchased - first.total_purchased, difference, tolerance, strict)
    broken = [w for w in windows if w.status == INVARIANT]
    if broken:
        status = INVARIANT
        parts.append(Explanation("invariant_broken", None, 0, f"in {len(broken)} windows"))
    moved = [w for w in windows if w.status in (GAP, DRIFT)]
    if moved and status in (OK, EXPLAINED):
        # Within the whole run's rounding, but some snapshots cannot hold with the ledger.
        status = DRIFT
        parts.append(
            Explanation(
                "unrecorded_spend" if difference >= 0 else "ledger_above_platform",
                difference,
                0,
                f"gaps in {len(moved)} windows; the run as a whole is within rounding",
            )
        )
    cumulative = _window(account, first, last, total, difference, tolerance, status, parts, cumulative=True)
    return windows, cumulative


def _disjoint(low: Decimal, high: Decimal, strict: bool) -> bool:
    return low >= high if strict else low > high


def _window(account, a, b, sums, difference, tolerance, status, parts, cumulative=False) -> WindowReconciliation:
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
        tolerance=tolerance,
        above_rate_card=sums.priced_charged - sums.expected,
        expected=sums.expected,
        status=status,
        explanations=tuple(parts),
        cumulative=cumulative,
    )
