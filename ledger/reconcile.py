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

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Sequence

from .money import ZERO, fmt
from .pricing import CLEAN_CLASSES, MISSING_CHARGE, MISSING_USAGE, ROUNDING, UNPRICED_MODEL

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
class SnapshotPoint:
    id: int
    taken_at: datetime
    balance: Decimal
    total_purchased: Decimal
    total_consumed: Decimal

    @property
    def invariant_error(self) -> Decimal:
        """balance - (total_purchased - total_consumed): zero on a sound snapshot."""
        return self.balance - (self.total_purchased - self.total_consumed)


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
        return json.dumps(data, default=_json_default, indent=2)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


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


# ---------------------------------------------------------------- the shell


def reconcile(
    ledger,
    settings=None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    rounding: str = DEFAULT_ROUNDING,
    edge_seconds: float = DEFAULT_EDGE_SECONDS,
    settle_seconds: float = 0.0,
    accounts: Sequence[str] | None = None,
    cumulative_from_first: bool = False,
) -> Reconciliation:
    """Reconcile every account that has snapshots (or `accounts`) over [start, end].

    Snapshots taken less than `settle_seconds` ago are left out: calls that
    ended before them may not have reached the ledger yet (journal, writer).
    With `cumulative_from_first`, the cumulative line starts at the account's
    first snapshot ever, whatever `start` (one more query, not one per window).
    Top-ups found are recorded (idempotent).
    """
    from . import balances

    if rounding not in ROUNDING_RULES:
        raise ValueError(f"unknown rounding rule {rounding!r}: one of {', '.join(ROUNDING_RULES)}")
    if settle_seconds > 0:
        settled = datetime.now(timezone.utc) - timedelta(seconds=settle_seconds)
        end = settled if end is None else min(end, settled)
    edge = timedelta(seconds=edge_seconds)
    results = []
    with ledger.session() as session:
        by_account = balances.account_fingerprints(session)
        every_key = frozenset().union(*by_account.values()) if by_account else frozenset()
        names = list(accounts) if accounts is not None else balances.snapshot_accounts(session)
        for name in names:
            fps = by_account.get(name, frozenset())
            points = balances.ok_snapshots(session, name, start, end)
            balances.record_top_ups(session, name, points)
            sums = [balances.ledger_sums(session, fps, every_key, a.taken_at, b.taken_at) for a, b in zip(points, points[1:])]
            edges = [balances.edge_charges(session, fps, p.taken_at, edge) for p in points]
            since = None
            if cumulative_from_first and points:
                first = balances.first_ok_snapshot(session, name)
                if first is not None and first.id != points[0].id:
                    since = (
                        first,
                        balances.ledger_sums(session, fps, every_key, first.taken_at, points[-1].taken_at),
                        balances.edge_charges(session, fps, first.taken_at, edge),
                    )
            windows, cumulative = reconcile_account(name, points, sums, edges, rounding, since)
            results.append(
                AccountReconciliation(name, tuple(windows), cumulative, balances.failed_polls(session, name, start, end))
            )
    return Reconciliation(tuple(results), start, end, rounding, edge_seconds)


# ---------------------------------------------------------------- printing

_COLUMNS = ("account", "from", "to", "top-up", "consumed", "ledger", "difference", "tolerance", "status", "explained by")


def _short(parts: Sequence[Explanation], limit: int = 4) -> str:
    named = [p for p in parts if p.name != "top_up"]
    text = ", ".join(
        f"{p.name} {'?' if p.credits is None else fmt(p.credits, 2)}" + (f" ({p.calls} calls)" if p.calls else "")
        for p in named[:limit]
    )
    return text + (f", +{len(named) - limit} more" if len(named) > limit else "")


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_reconciliation(rec: Reconciliation) -> str:
    """A plain table: one row per window, a cumulative line per account, a verdict."""
    table = [_COLUMNS]
    for w in rec.rows():
        table.append(
            (
                w.account,
                "cumulative" if w.cumulative else _time(w.start),
                _time(w.end),
                fmt(w.purchased) if w.purchased else "",
                fmt(w.consumed),
                fmt(w.ledger_charged, 2),
                fmt(w.difference, 2),
                "±" + fmt(w.tolerance, 2),
                w.status,
                _short(w.explanations),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    numeric = {3, 4, 5, 6, 7}
    lines = [
        "  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in table
    ]
    for account in rec.accounts:
        if account.failed_polls:
            failed = ", ".join(f"{n} {s}" for s, n in sorted(account.failed_polls.items()))
            lines.append(f"{account.account}: polls without figures (skipped): {failed}")
        if account.cumulative is None:
            lines.append(f"{account.account}: fewer than two usable snapshots, nothing to reconcile")
        elif account.cumulative.expected:
            c = account.cumulative
            share = c.above_rate_card / c.expected * 100
            lines.append(
                f"{account.account}: charged {fmt(c.above_rate_card, 2)} credits above the rate card "
                f"({fmt(share, 2)}% of {fmt(c.expected, 2)} expected)"
            )
    if not rec.accounts:
        lines.append("no balance snapshots: run `credit-ledger balance` (or the service) first")
    rule = ROUNDING_RULES[rec.rounding]
    lines.append(
        f"tolerance: snapshot rounding '{rec.rounding}' (exact figure within -{fmt(rule[0])}/+{fmt(rule[1])} of the integer) "
        f"plus charges of calls ending within {rec.edge_seconds:g}s of a snapshot"
    )
    lines.append("verdict: UNEXPLAINED GAP" if rec.has_unexplained_gap else "verdict: reconciled")
    return "\n".join(lines) + "\n"
