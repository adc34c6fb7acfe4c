"""Closing a period (and reopening one): a balance snapshot, the reconciliation, then the close stored in the ledger.

A close fixes the period's figures at its cutoff, the instant it was asked
for. Before reading them it waits `settle_seconds` (a writer that took its
records' `recorded_at` before the cutoff has inserted them by then) and
then holds the calls table still (`store.reading.calls_held`) while it
computes the totals and the digest as every later report of the period will:
with this close in force. A period that has not ended (its end plus the
billing's settle time) is not closed, nor one outside the calendar of the
closes in force, nor any while two closes in force overlap (a ledger closed
before that rule). A close is refused when the reconciliation has an
unexplained gap, when accounts are configured and one of them has not been
reconciled, or when the snapshots do not bracket the period (the last one
before its start and the first at or after its end reconcile it, so that no
spend hides between two periods' polls), unless a reason is given for
accepting it (stored).
With no accounts configured there is nothing to reconcile against: the close
records the verdict `no_snapshots`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from ..accounting.closes import CLOSE, CloseEvent, calendar_refusal, is_closed, outside_calendar, overlapping_closes
from ..accounting.periods import CALENDAR_KINDS, Period
from ..accounting.verdict import GAP_VERDICT, NOTHING_VERDICT, PARTIAL_VERDICT, RECONCILED_VERDICT, Reconciliation
from ..config import Settings
from ..errors import GapError, ReportError
from ..exactjson import dumps
from ..reports.run import sync_cards
from ..reports.spend import SpendReport, build_report
from ..reports.spend_out import figures_dict, period_dict
from ..store.closes import close_events, insert_close, insert_reopen
from ..store.retention import horizon, retained_ranges
from ..store.engine import Ledger
from ..store.models import PeriodClose
from ..store.reading import calls_held
from ..store.reconciliation import reconcile_as_configured
from .credits import CreditsClient
from .polling import poll_balances
from .runtime import host_name

SETTLE_SECONDS = 2.0
VERDICT_CODES = {RECONCILED_VERDICT: "reconciled", GAP_VERDICT: "gap_accepted", NOTHING_VERDICT: "no_snapshots",
                 PARTIAL_VERDICT: "partial_accepted"}


@dataclass(frozen=True)
class CloseResult:
    row: PeriodClose
    report: SpendReport
    reconciliation: Reconciliation
    verdict: str


def _label(period: Period) -> str:
    return f"{period.label} ({period.zone})"


def close_period(
    settings: Settings,
    ledger: Ledger,
    period: Period,
    *,
    accept_gap: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    settle_seconds: float | None = None,
    client: CreditsClient | None = None,
) -> CloseResult:
    """Close `period`: snapshot the balances (accounts configured), reconcile, store the close. GapError on a gap."""
    if period.kind not in CALENDAR_KINDS:
        raise ReportError("only a calendar period can be closed (2026-11, 2026-W48, 2026-Q4, 2026 or 2026-11-30)")
    if accept_gap is not None and not accept_gap.strip():
        raise ReportError("--accept-gap needs a reason")
    _refuse_if_not_over(period, now(), settings.reconcile.billing_settle_seconds)
    _refuse_if_closed(ledger, period)
    if settings.accounts:
        poll_balances(settings, ledger, client=client)
    sync_cards(settings, ledger)
    result = reconcile_as_configured(settings, ledger, period.start, period.end, bracketed=True)
    found = result.verdict
    if found == GAP_VERDICT and accept_gap is None:
        raise GapError(f"{_label(period)} not closed: the reconciliation has an unexplained gap ({_gaps(result)}); "
                       f"see `credit-ledger reconcile`, or close with --accept-gap \"reason\"")
    if found == NOTHING_VERDICT and settings.accounts and accept_gap is None:
        # Accounts to reconcile, and one of them not reconciled: a close gate never passes on nothing.
        raise GapError(f"{_label(period)} not closed: nothing was reconciled for {', '.join(result.unchecked)} "
                       f"(fewer than two usable balance snapshots cover the period); see `credit-ledger balance`, "
                       f"or close with --accept-gap \"reason\"")
    if found == PARTIAL_VERDICT and accept_gap is None:
        # Spend between a period's edge and the nearest poll inside it would be checked by no close.
        raise GapError(f"{_label(period)} not closed: the reconciliation does not cover the whole period "
                       f"({result.uncovered()}); see `credit-ledger balance`, or close with --accept-gap \"reason\"")
    cutoff = now()
    settle_seconds = SETTLE_SECONDS if settle_seconds is None else settle_seconds
    if settle_seconds > 0:
        time.sleep(settle_seconds)  # writers that stamped calls before the cutoff have inserted them by now
    with calls_held(ledger) as session:
        _refuse_if_closed(ledger, period, session)
        pending = CloseEvent(-1, CLOSE, period, cutoff)
        report = build_report(session, period, (), digest=True, now=cutoff, pending=[pending])
        totals = {
            "period": period_dict(period),
            "figures": figures_dict(report.total),
            "adjustments": [{"closed_period": period_dict(a.closed), **figures_dict(a.figures)} for a in report.adjustments],
            "digest_calls": report.digest_calls,
        }
        row = insert_close(
            session, period, cutoff, now(), calls=report.digest_calls or 0,
            credits_charged=report.total.credits_charged, credits_expected=report.total.credits_expected,
            totals_json=dumps(totals, sort_keys=True), calls_digest=report.digest or "",
            reconciliation=VERDICT_CODES[found], reconciliation_json=result.to_json() if result.accounts else None,
            reason=accept_gap.strip() if accept_gap else None, host=host_name(),
        )
    return CloseResult(row, report, result, result.verdict_text)


def _gaps(result: Reconciliation) -> str:
    parts = []
    for account in result.accounts:
        if account.has_unexplained_gap and account.cumulative is not None:
            parts.append(f"{account.account}: difference {account.cumulative.difference} credits")
        elif account.has_unexplained_gap:
            parts.append(f"{account.account}: a window does not reconcile")
    return "; ".join(parts)


def _refuse_if_not_over(period: Period, now: datetime, billing_settle_seconds: float) -> None:
    # Closing the present would freeze it at what it has so far, its later calls all adjustments.
    if now < period.end + timedelta(seconds=billing_settle_seconds):
        raise ReportError(f"{_label(period)} has not ended: it ends at {period.end:%Y-%m-%dT%H:%M:%SZ}, and its "
                          f"charges settle {billing_settle_seconds:g} s later ([reconcile] billing_settle_seconds)")


def _refuse_if_closed(ledger: Ledger, period: Period, session=None) -> None:
    if session is None:
        with ledger.session() as own:
            events = close_events(own)
    else:
        events = close_events(session)
    overlap = next(iter(overlapping_closes(events)), None)
    if overlap is not None:  # a ledger closed before the one-calendar rule: no close adds to it
        raise ReportError(f"{_label(period)} not closed: {overlap.describe()}")
    close = is_closed(events, period)
    if close is not None:
        raise ReportError(f"{_label(period)} is closed already (cutoff {close.at:%Y-%m-%dT%H:%M:%SZ}); "
                          "`credit-ledger reopen` it first")
    other = outside_calendar(events, period)
    if other is not None:
        raise ReportError(calendar_refusal(period, other))


def reopen_period(ledger: Ledger, period: Period, reason: str,
                  now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> PeriodClose:
    """Reopen a closed period (a new row, with the reason). Refused while a later period of its kind is closed."""
    if not reason or not reason.strip():
        raise ReportError("a reopen needs a reason (--reason)")
    with ledger.session() as session:
        events = close_events(session)
        if is_closed(events, period) is None:
            raise ReportError(f"{_label(period)} is not closed")
        later = [e for e in events if e.period.kind == period.kind and e.period.zone == period.zone
                 and e.period.start >= period.end and is_closed(events, e.period) is not None]
        if later:
            first = min(later, key=lambda e: e.period.start).period
            raise ReportError(f"{_label(first)} is closed and may carry {period.label}'s prior-period adjustments: "
                              f"reopen it first")
        gone = horizon(session)
        if gone is not None and any(low < period.end and high > period.start
                                    for low, high in retained_ranges(events, gone.before)):
            raise ReportError(f"{_label(period)} stays closed: {gone.note()}, and its close holds the only digest "
                              "of them (a period closed again could not make it)")
        return insert_reopen(session, period, now(), reason.strip(), host_name())
