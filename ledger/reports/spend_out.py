"""The spend report as JSON (one document), CSV (a versioned column schema) and a terminal table.

CSV schema 1 (README "CSV columns"): the columns below, in this order, then
one column per group key named by the key (`project`, `tag:feature`, ...).
A later schema adds columns after these and before the key columns; none of
these ever moves. Amounts are exact decimals (nano-credit precision), USD
exact at each call's rate card, share a fraction of the total's credits to
six places. Rows: one per group, then `total`, then one `adjustment` per
closed period whose late calls this report lists (not in the total).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TextIO

from ..exactjson import dumps
from ..money import fmt
from ..terminal import table
from .cells import csv_row
from .spend import Figures, SpendReport

CSV_SCHEMA = 1
CSV_COLUMNS = (
    "schema", "row", "period", "period_start", "period_end", "zone", "group_by", "group",
    "calls", "failed_calls", "prompt_tokens", "completion_tokens", "reasoning_tokens",
    "credits_charged", "credits_expected", "credits_difference", "findings", "usd", "share",
)
JSON_SCHEMA = "credit-ledger/spend-report/1"


def utc_text(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def figures_dict(figures: Figures) -> dict[str, Any]:
    return {
        "calls": figures.calls,
        "failed_calls": figures.failed_calls,
        "prompt_tokens": figures.prompt_tokens,
        "completion_tokens": figures.completion_tokens,
        "reasoning_tokens": figures.reasoning_tokens,
        "credits_charged": figures.credits_charged,
        "credits_expected": figures.credits_expected,
        "credits_difference": figures.difference,
        "findings": figures.findings,
        "usd": figures.usd,
    }


def period_dict(period) -> dict[str, Any]:
    return {"label": period.label, "kind": period.kind, "start": utc_text(period.start), "end": utc_text(period.end),
            "zone": period.zone}


def close_dict(report: SpendReport) -> dict[str, Any] | None:
    close = report.close
    if close is None:
        return None
    return {
        "closed_at": utc_text(close.cutoff_at),
        "calls": close.calls,
        "credits_charged": close.credits_charged,
        "digest": close.calls_digest,
        "digest_matches": report.digest_matches_close,
        "reconciliation": close.reconciliation,
        "reason": close.reason,
    }


def report_dict(report: SpendReport, adjustment_calls: list[dict] | None = None) -> dict[str, Any]:
    """The JSON document: period, keys, totals, groups (amounts as exact decimal strings)."""
    labels = [k.label for k in report.keys]
    return {
        "schema": JSON_SCHEMA,
        "period": period_dict(report.period),
        "group_by": labels,
        "account": report.account,
        "generated_at": utc_text(report.generated_at),
        "empty": report.empty,
        "totals": figures_dict(report.total),
        "groups": [
            {"key": dict(zip(labels, group.values)), **figures_dict(group.figures), "share": group.share}
            for group in report.groups
        ],
        "adjustments": [
            {"closed_period": period_dict(a.closed), **figures_dict(a.figures)} for a in report.adjustments
        ],
        "adjustment_calls": adjustment_calls or [],
        "close": close_dict(report),
        "digest": report.digest,
        "digest_calls": report.digest_calls,
        "unknown_rate_cards": list(report.unknown_cards),
        **({"calls_deleted": report.calls_gone.note()} if report.calls_gone is not None else {}),
        **({"overlapping_closes": [o.as_dict() for o in report.overlaps]} if report.overlaps else {}),
    }


def write_json(report: SpendReport, out: TextIO, adjustment_calls: list[dict] | None = None) -> None:
    out.write(dumps(report_dict(report, adjustment_calls), indent=2, ensure_ascii=False) + "\n")


def _figure_cells(figures: Figures, share) -> list:
    return [
        figures.calls, figures.failed_calls, figures.prompt_tokens, figures.completion_tokens, figures.reasoning_tokens,
        figures.credits_charged, figures.credits_expected, figures.difference, figures.findings, figures.usd, share,
    ]


def write_csv(report: SpendReport, out: TextIO) -> int:
    """One row per group, the total, the adjustments; returns the rows written (header aside)."""
    labels = [k.label for k in report.keys]
    period = report.period

    def record(kind: str, group: str, figures: Figures, share, values) -> None:
        out.write(csv_row([CSV_SCHEMA, kind, period.label, utc_text(period.start), utc_text(period.end), period.zone,
                           ",".join(labels), group, *_figure_cells(figures, share), *values]))

    out.write(csv_row([*CSV_COLUMNS, *labels]))
    blank = [""] * len(labels)
    for group in report.groups:
        record("group", " / ".join(group.values), group.figures, group.share, group.values)
    record("total", "(total)", report.total, 1 if report.total.calls else None, blank)
    for adjustment in report.adjustments:
        record("adjustment", f"prior period {adjustment.closed.label}", adjustment.figures, None, blank)
    return len(report.groups) + 1 + len(report.adjustments)


_TABLE = ("calls", "failed", "prompt", "completion", "reasoning", "charged", "expected", "difference", "findings", "usd",
          "share")


def _table_cells(figures: Figures, share) -> list[str]:
    return [
        str(figures.calls), str(figures.failed_calls), f"{figures.prompt_tokens:,}", f"{figures.completion_tokens:,}",
        f"{figures.reasoning_tokens:,}", fmt(figures.credits_charged), fmt(figures.credits_expected), fmt(figures.difference),
        str(figures.findings), "?" if figures.usd is None else fmt(figures.usd, 2),
        "" if share is None else f"{fmt(share * 100, 1)}%",
    ]


def write_table(report: SpendReport, out: TextIO) -> None:
    period = report.period
    print(f"spend {period.label} ({period.zone}): {utc_text(period.start)} to {utc_text(period.end)}"
          + (f", account {report.account}" if report.account else ""), file=out)
    if report.close is not None:
        c = report.close
        match = {True: "digest matches", False: "DIGEST DIFFERS", None: ""}[report.digest_matches_close]
        if report.calls_gone is not None:
            match = "(the close's digest: not recomputed)"
        print(f"closed {utc_text(c.cutoff_at)} ({c.reconciliation}); {c.calls} calls, digest {c.calls_digest[:16]}… {match}",
              file=out)
    if report.calls_gone is not None:
        print(report.calls_gone.note(), file=out)
    for overlap in report.overlaps:
        print(f"CLOSES OVERLAP: {overlap.describe()}", file=out)
    if report.empty:
        print("no calls in this period", file=out)
        return
    labels = [k.label for k in report.keys]
    body = [[*g.values, *_table_cells(g.figures, g.share)] for g in report.groups]
    if report.groups and report.keys:
        body.append(["(total)", *[""] * (len(labels) - 1), *_table_cells(report.total, None)])
    elif not report.keys:
        body = [[*_table_cells(report.total, None)]]
    print(table([*labels, *_TABLE], body, right=_TABLE), file=out)
    for adjustment in report.adjustments:
        f = adjustment.figures
        print(f"prior-period adjustment {adjustment.closed.label}: {f.calls} calls recorded after its close, "
              f"{fmt(f.credits_charged)} credits charged (not in the total above)", file=out)
    if report.unknown_cards:
        print(f"USD unknown for rate cards {', '.join(report.unknown_cards)} (not in the ledger's rate_cards)", file=out)
