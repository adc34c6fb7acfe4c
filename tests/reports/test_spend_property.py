"""A report's groups add up to its total, and its total to the ledger's own sum, to the nano-credit.

Hypothesis makes ledgers (projects, users, keys, tags, models, amounts with
nine decimals, nulls, hostile text) whose calls crowd the local midnights
and daylight-saving changes of zones that shift by an hour, by half an hour
(Lord Howe) or not at all, and a report over a period around those changes
grouped by random keys. Each group is checked against the same grouping
done in Python, call by call, with zoneinfo: every call in exactly one group.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_rows import call_values, insert, register
from sqlalchemy import delete, func, select

from ledger.accounting.periods import calendar_period, parse_period
from ledger.accounting.group_keys import parse_group_keys
from ledger.reports.cells import group_label
from ledger.reports.spend import build_report
from ledger.store.models import Call
from ledger.store.rollup_tables import TABLES
from ledger.store.rate_cards import sync_rate_cards
from ledger.accounting.pricing import default_rate_book

PERIODS = {  # periods holding a daylight-saving change in their zone
    "Europe/Berlin": ["2026-03", "2026-W13", "2026-03-29", "2026-10", "2026-10-25", "2026-Q4"],
    "America/New_York": ["2026-03-08", "2026-11", "2026-W45"],
    "Australia/Lord_Howe": ["2026-04-05", "2026-10", "2026-W40"],
    "Asia/Kolkata": ["2026-11"],
    "UTC": ["2026-10-25", "2026-W44"],
}
KEYS = ["project", "user", "key", "model", "account", "day", "week", "month", "tag:feature", "tag:team"]
PROJECTS = [None, "search", "support", "=HYPERLINK(\"http://x\",\"y\")", "projet-é", "(none)x", "", "(none)", "(empty)",
            '"(none)"', "multi\nline"]  # no project, an empty one and ones that read like either: each its own group
FINGERPRINTS = [None, "a" * 64, "b" * 64]
LABELS = {"a" * 64: ("backend", "prod")}  # "b"*64 is a key no account claims: shown as …last4
MODELS = [(None, None), ("gemini-3.1-pro", "gemini-3.1-pro-preview"), ("gemini-2.5-pro", "gemini-2.5-pro"),
          (None, "gemini-3-pro")]


def nano(n: int) -> Decimal:
    return Decimal(n).scaleb(-9)


@st.composite
def ledgers(draw):
    zone = draw(st.sampled_from(sorted(PERIODS)))
    period = parse_period(draw(st.sampled_from(PERIODS[zone])), zone)
    day = timedelta(days=1)
    edges = [period.start, period.end]
    t = period.start
    while t < period.end:  # every local midnight, and the hours around a change
        following = calendar_period("day", t, zone).end
        edges.append(following)
        if following - t != day:
            edges += [t + timedelta(hours=h) for h in range(0, 27)]
        t = following
    calls = []
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.booleans()):
            at = draw(st.sampled_from(edges)) + draw(st.sampled_from([timedelta(0), timedelta(microseconds=1),
                                                                      -timedelta(microseconds=1), timedelta(minutes=30)]))
        else:
            at = period.start - day + timedelta(seconds=draw(st.integers(0, int((period.end - period.start + 2 * day).total_seconds()))))
        requested, reported = draw(st.sampled_from(MODELS))
        fingerprint = draw(st.sampled_from(FINGERPRINTS))
        tags = draw(st.dictionaries(st.sampled_from(["feature", "team", "other"]), st.sampled_from(["a", "b", "=1+1", "ü", "", "(none)"]), max_size=3))
        calls.append(dict(
            started_at=at, project=draw(st.sampled_from(PROJECTS)), end_user=draw(st.sampled_from([None, "u-1", "u-2", "", "(none)"])),
            tags=tags or None, key_fingerprint=fingerprint, key_last4=None if fingerprint is None else "Zq9x",
            charged=draw(st.one_of(st.none(), st.integers(0, 10**12).map(nano))),
            expected=draw(st.one_of(st.none(), st.integers(0, 10**12).map(nano))),
            pricing_class=draw(st.sampled_from(["ok", "rounding", "overcharge", "missing_usage"])),
            status=draw(st.sampled_from(["completed", "error", "aborted", "failed"])),
            model_requested=requested, model_reported=reported,
        ))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=0, max_size=3, unique=True))
    return zone, period, calls, ",".join(keys)


def expected_key(key: str, call: dict, zone: str) -> str:
    """What the report should call this call's group for `key`, worked out without SQL."""
    if key == "project":
        return group_label(call["project"])
    if key == "user":
        return group_label(call["end_user"])
    if key == "key":
        fp = call["key_fingerprint"]
        return "(none)" if fp is None else LABELS[fp][0] if fp in LABELS else "…Zq9x"
    if key == "account":
        fp = call["key_fingerprint"]
        return LABELS[fp][1] if fp in LABELS else "(none)"
    if key == "model":
        requested, reported = call["model_requested"], call["model_reported"]
        if reported is None:
            return group_label(requested)
        return reported if requested in (None, reported) else f"{reported} (requested {requested})"
    if key in ("day", "week", "month"):
        return calendar_period(key, call["started_at"], zone).label
    return group_label((call["tags"] or {}).get(key[4:]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=ledgers())
def test_groups_add_up_to_the_total_and_the_total_to_the_ledgers_sum(ledger, case):
    zone, period, calls, by = case
    with ledger.session() as session:
        session.execute(delete(Call))
        for table in TABLES:  # the calls' sums go with them
            session.execute(delete(table.model))
        sync_rate_cards(session, default_rate_book())
    register(ledger, "a" * 64, "Zq9x", "backend", "prod")
    insert(ledger, [call_values(**c) for c in calls])
    keys = parse_group_keys(by)
    with ledger.session() as session:
        report = build_report(session, period, keys)
        plain_sum = session.scalar(select(func.coalesce(func.sum(Call.credits_charged), 0))
                                   .where(Call.started_at >= period.start, Call.started_at < period.end))
        plain_count = session.scalar(select(func.count()).select_from(Call)
                                     .where(Call.started_at >= period.start, Call.started_at < period.end))

    inside = [c for c in calls if period.start <= c["started_at"] < period.end]
    charged = sum((c["charged"] or Decimal(0) for c in inside), Decimal(0))
    assert report.total.calls == plain_count == len(inside)
    assert report.total.credits_charged == plain_sum == charged
    assert report.total.credits_expected == sum((c["expected"] or Decimal(0) for c in inside), Decimal(0))
    assert report.total.usd == charged * Decimal("0.005")

    summed = [sum(getattr(g.figures, f) for g in report.groups) for f in ("calls", "failed_calls", "prompt_tokens", "findings")]
    assert summed == [report.total.calls, report.total.failed_calls, report.total.prompt_tokens, report.total.findings]
    assert sum((g.figures.credits_charged for g in report.groups), Decimal(0)) == report.total.credits_charged
    assert sum((g.figures.usd for g in report.groups), Decimal(0)) == report.total.usd

    # Every call in exactly one group, the group Python finds for it.
    labels = [k.label for k in keys]
    wanted: dict[tuple, list] = {}
    for c in inside:
        entry = wanted.setdefault(tuple(expected_key(k, c, zone) for k in labels), [0, Decimal(0)])
        entry[0] += 1
        entry[1] += c["charged"] or Decimal(0)
    got = {g.values: [g.figures.calls, g.figures.credits_charged] for g in report.groups}
    assert got == wanted
