"""What a workbook's Summary sheet (and a close) says beside the spend: balances, top-ups, the reconciliation, findings, cards.

The balances are the snapshots that bracket the period (the last before it,
the first after it; else the first and last within it); the platform's
consumption is the rise of total_consumed between them, and the
reconciliation (`store.reconciliation`) compares it with what the ledger's
calls were charged in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from ..accounting.reconcile import WindowReconciliation
from ..accounting.verdict import Reconciliation
from ..accounting.snapshots import SnapshotPoint
from ..accounting.group_keys import GroupKey
from ..money import ZERO
from ..store import balances
from ..store.models import RateCardRow
from ..store.spend import Selection, cards_in_force, spend_rows


@dataclass(frozen=True, slots=True)
class AccountSummary:
    account: str
    opening: SnapshotPoint | None
    closing: SnapshotPoint | None
    top_ups: Decimal
    cumulative: WindowReconciliation | None  # the reconciliation from the first snapshot to the last


@dataclass(frozen=True, slots=True)
class ClassCount:
    pricing_class: str
    calls: int
    credits_charged: Decimal
    credits_expected: Decimal


@dataclass(frozen=True)
class Summary:
    reconciliation: Reconciliation
    verdict: str  # the reconciliation's verdict in words (`Reconciliation.verdict_text`), as `reconcile` gives it
    accounts: tuple[AccountSummary, ...]
    findings: tuple[ClassCount, ...]
    cards: tuple[RateCardRow, ...]  # the cards that priced calls of the period, with their models' rates
    card_calls: dict[str, int]


def build_summary(session: Session, selection: Selection, result: Reconciliation) -> Summary:
    """The Summary's facts for the calls of `selection`, beside the period's reconciliation (`reconcile_as_configured`)."""
    top_ups: dict[str, Decimal] = {}
    for top_up in balances.top_ups_in(session, selection.start, selection.end, selection.account):
        top_ups[top_up.account] = top_ups.get(top_up.account, ZERO) + top_up.credits
    accounts = []
    for account in result.accounts:
        if selection.account is not None and account.account != selection.account:
            continue
        points = balances.ok_snapshots(session, account.account, selection.start, selection.end)
        opening, closing = (points[0], points[-1]) if points else (None, None)
        if account.bracket is not None:  # the balances the period's reconciliation runs between
            opening, closing = account.bracket.opening or opening, account.bracket.closing or closing
        accounts.append(AccountSummary(account.account, opening, closing, top_ups.get(account.account, ZERO),
                                       account.cumulative))
    findings = {}
    for row in spend_rows(session, selection, (GroupKey("pricing_class"),)):
        klass = row.values[0]
        found = findings.get(klass, ClassCount(klass, 0, ZERO, ZERO))
        findings[klass] = ClassCount(klass, found.calls + row.calls, found.credits_charged + row.credits_charged,
                                     found.credits_expected + row.credits_expected)
    card_calls: dict[str, int] = {}
    for row in spend_rows(session, selection, ()):
        card_calls[row.rate_card or "(none)"] = card_calls.get(row.rate_card or "(none)", 0) + row.calls
    cards = tuple(c for c in cards_in_force(session) if c.name in card_calls)
    return Summary(result, result.verdict_text, tuple(accounts), tuple(findings[k] for k in sorted(findings)), cards, card_calls)
