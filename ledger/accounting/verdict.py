"""The result of a reconciliation and its one verdict: what `reconcile`, a close, a workbook and the jobs all say.

Each account's windows and cumulative line (`reconcile.reconcile_account`),
with the snapshots that bracket a period when one was reconciled; the
verdict is made here once, from them, for every caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..exactjson import dumps
from .pricing import ROUNDING
from .reconcile import WindowReconciliation
from .snapshots import Bracket

# The verdict of a whole reconciliation, what a close gates on.
RECONCILED_VERDICT = "reconciled"
GAP_VERDICT = "unexplained gap"
NOTHING_VERDICT = "nothing to reconcile"  # an account with fewer than two usable snapshots: nothing was checked
PARTIAL_VERDICT = "partly reconciled"  # a period's reconciliation lacks a snapshot before its start or after its end


@dataclass(frozen=True, slots=True)
class AccountReconciliation:
    account: str
    windows: tuple[WindowReconciliation, ...]
    cumulative: WindowReconciliation | None
    failed_polls: dict[str, int] = field(default_factory=dict)
    bracket: Bracket | None = None  # a period's reconciliation: the snapshots around it

    @property
    def has_unexplained_gap(self) -> bool:
        return any(w.unexplained for w in self.windows) or (self.cumulative is not None and self.cumulative.unexplained)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    accounts: tuple[AccountReconciliation, ...]
    start: datetime | None
    end: datetime | None
    rounding: str
    billing_settle_seconds: float

    @property
    def has_unexplained_gap(self) -> bool:
        return any(a.has_unexplained_gap for a in self.accounts)

    @property
    def unchecked(self) -> tuple[str, ...]:
        """The accounts with fewer than two usable snapshots: nothing of theirs was checked."""
        return tuple(a.account for a in self.accounts if a.cumulative is None)

    @property
    def unbracketed(self) -> tuple[AccountReconciliation, ...]:
        """The accounts of a period's reconciliation that lack a snapshot before its start or after its end."""
        return tuple(a for a in self.accounts if a.bracket is not None and not a.bracket.whole)

    @property
    def verdict(self) -> str:
        """The one verdict every caller gives (`reconcile`, a close, a workbook, the service's jobs).

        A gap anywhere; else nothing to reconcile where any account (or none at
        all) had fewer than two usable snapshots; else partly reconciled where a
        period's snapshots do not bracket it; else reconciled. Only "reconciled"
        lets a close pass.
        """
        if self.has_unexplained_gap:
            return GAP_VERDICT
        if not self.accounts or self.unchecked:
            return NOTHING_VERDICT
        if self.unbracketed:
            return PARTIAL_VERDICT
        return RECONCILED_VERDICT

    @property
    def verdict_text(self) -> str:
        """The verdict in words, naming the accounts it is about."""
        if self.verdict == GAP_VERDICT:
            return f"{GAP_VERDICT} ({', '.join(a.account for a in self.accounts if a.has_unexplained_gap)})"
        if self.verdict == NOTHING_VERDICT:
            if not self.accounts:
                return f"{NOTHING_VERDICT} (no balance snapshots)"
            return f"{NOTHING_VERDICT} ({', '.join(self.unchecked)}: fewer than two usable balance snapshots)"
        if self.verdict == PARTIAL_VERDICT:
            return f"{PARTIAL_VERDICT} ({self.uncovered()})"
        return RECONCILED_VERDICT

    def uncovered(self) -> str:
        """Which accounts' snapshots do not bracket the period, and where."""
        return "; ".join(f"{a.account}: {a.bracket.missing()}" for a in self.unbracketed if a.bracket is not None)

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
            "billing_settle_seconds": self.billing_settle_seconds,
            "verdict": self.verdict,
            "has_unexplained_gap": self.has_unexplained_gap,
            "accounts": [
                {
                    "account": a.account,
                    "has_unexplained_gap": a.has_unexplained_gap,
                    "failed_polls": a.failed_polls,
                    **({"bracket": a.bracket.to_dict()} if a.bracket is not None else {}),
                    "windows": [w.to_dict() for w in a.windows],
                    "cumulative": a.cumulative.to_dict() if a.cumulative else None,
                }
                for a in self.accounts
            ],
        }
        return dumps(data, indent=2)
