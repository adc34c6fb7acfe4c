"""The result of a reconciliation and its one verdict: what `reconcile`, a close, a workbook and the jobs all say.

Each account's windows and cumulative line (`reconcile.reconcile_account`),
with the snapshots that bracket a period when one was reconciled; the
verdict is made here once, from them, for every caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from ..exactjson import dumps, loads
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


# ---------------------------------------------------------------- a verdict kept (the service's hourly run)


@dataclass(frozen=True, slots=True)
class AccountVerdict:
    """An account's cumulative line as a run found it (all None: fewer than two usable snapshots)."""

    account: str
    since: datetime | None  # the cumulative line's first snapshot
    until: datetime | None  # and its last
    status: str | None
    difference: Decimal | None
    unrecorded_spend: Decimal | None  # None: none found


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    """What the service's reconciliation run keeps in its job_runs row (its detail, as JSON): the verdict, the window
    it covered and each account's cumulative line, so a page shows the last verdict without reconciling again."""

    verdict: str
    verdict_text: str
    start: datetime | None
    end: datetime | None
    accounts: tuple[AccountVerdict, ...]

    @classmethod
    def of(cls, result: Reconciliation) -> StoredVerdict:
        accounts = []
        for a in result.accounts:
            c = a.cumulative
            if c is None:
                accounts.append(AccountVerdict(a.account, None, None, None, None, None))
                continue
            unrecorded = c.explanation("unrecorded_spend")
            accounts.append(AccountVerdict(a.account, c.start, c.end, c.status, c.difference,
                                           None if unrecorded is None else unrecorded.credits))
        return cls(result.verdict, result.verdict_text, result.start, result.end, tuple(accounts))

    def to_detail(self) -> str:
        return dumps({"verdict": self.verdict, "verdict_text": self.verdict_text, "start": self.start,
                      "end": self.end, "accounts": [
                          {"account": a.account, "since": a.since, "until": a.until, "status": a.status,
                           "difference": a.difference, "unrecorded_spend": a.unrecorded_spend}
                          for a in self.accounts]})

    @classmethod
    def from_detail(cls, detail: str | None) -> StoredVerdict | None:
        """The verdict a run kept; None for a detail not of this form (a run of an earlier version: its words)."""
        try:
            data = loads(detail or "")
            return cls(data["verdict"], data["verdict_text"], _instant(data["start"]), _instant(data["end"]), tuple(
                AccountVerdict(a["account"], _instant(a["since"]), _instant(a["until"]), a["status"],
                               _amount(a["difference"]), _amount(a["unrecorded_spend"]))
                for a in data["accounts"]))
        except (ValueError, KeyError, TypeError):
            return None


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _amount(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
