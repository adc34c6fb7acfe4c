"""The rollup path's sums are the raw GROUP BY's, to the nano-credit: reports (every key, late calls, adjustments) and budgets.

Hypothesis makes small ledgers whose calls crowd 15-minute bounds, local
midnights and the cutoffs of closes, in zones whose days are 23, 23.5, 24.5
or 25 hours long or start at +05:45, and compares `spend_rows` (whole buckets
from the rollup, the rest from raw calls) with `raw_spend_rows` (raw calls
alone), and budgets' `spends` with raw sums. The rollups are the writer's
(each batch adds its calls), as every reader finds them.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_rows import call_values, insert_batches, register
from sqlalchemy import delete, update

from ledger.accounting.budgets import Scope
from ledger.accounting.closes import CLOSE, CloseEvent
from ledger.accounting.periods import calendar_period, parse_period, preceding, range_period, rolling_period
from ledger.accounting.group_keys import GroupKey, parse_group_keys
from ledger.reports.spend import bucket_bounds, selection_for
from ledger.store.budgets import SpendQuery, spend, spends
from ledger.store.models import Call
from ledger.store.rollup_levels import day_spans
from ledger.store.rollup_tables import DAILY, HOURLY_PROJECTS, MONTHLY_USERS, TABLES
from ledger.store.spend import (needed_dims, raw_spend_rows, rollup_parts, selection_ends, spend_rows, spend_rows_in_order,
                                spend_rows_of)

UTC = timezone.utc
ZONES = {  # zone: a day in a month with a change (or an odd offset)
    "Asia/Kathmandu": "2026-11-30",
    "Australia/Lord_Howe": "2026-10-04",
    "America/St_Johns": "2026-03-08",
    "Europe/Berlin": "2026-10-25",
}
KEYS = ["project", "user", "key", "model", "account", "day", "week", "month", "tag:feature", "tag:team"]
INTERNAL = ["pricing_class", "key_id", "tags_json", "project_as_is", "user_or_empty", "model_priced"]
FINGERPRINTS = [None, "a" * 64, "b" * 64, "c" * 64]
ACCOUNTS = {"a" * 64: ("backend", "prod"), "c" * 64: ("batch", "dev")}  # "b"*64: a key no account claims
MODELS = [(None, None), ("gemini-3.1-pro", "gemini-3.1-pro-preview"), ("gemini-2.5-pro", "gemini-2.5-pro"), (None, "m")]
NEAR = [timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1), timedelta(minutes=7), timedelta(minutes=15),
        -timedelta(minutes=15), timedelta(minutes=30, seconds=1)]


def nano(n: int) -> Decimal:
    return Decimal(n).scaleb(-9)


@st.composite
def ledgers(draw, kinds=("day", "week", "month", "range"), key_names=KEYS + INTERNAL, zones=ZONES):
    zone = draw(st.sampled_from(sorted(zones)))
    day = parse_period(zones[zone], zone)
    kind = draw(st.sampled_from(kinds))
    if kind == "range":  # a custom range off the 15-minute grid
        start = day.start + timedelta(minutes=draw(st.integers(-600, 600)), microseconds=draw(st.integers(0, 10**6)))
        period = range_period(start, start + timedelta(minutes=draw(st.integers(1, 3000)), seconds=draw(st.integers(0, 59))), zone)
        closing = calendar_period("day", period.start, zone)
    else:
        period = calendar_period(kind, day.start, zone)
        closing = period
    # Closes: the period before (its late calls are this report's adjustments) and this one (late calls left out).
    closes, cutoff = [], None
    for number, closed in enumerate([preceding(closing), closing], 1):
        if draw(st.booleans()):
            cutoff = max(closed.end, cutoff or closed.end) + draw(st.sampled_from(NEAR[:2] + [timedelta(minutes=15), timedelta(hours=2, minutes=3, microseconds=7)]))
            closes.append(CloseEvent(number, CLOSE, closed, cutoff))
    edges = [period.start, period.end, day.start, day.end, closing.start, closing.end, preceding(closing).start]
    edges += [c.at for c in closes]
    t = closing.start
    while t < min(period.end, closing.start + timedelta(days=3)):
        t = calendar_period("day", t, zone).end
        edges.append(t)
    low, high = preceding(closing).start - timedelta(hours=2), max(period.end, closing.end) + timedelta(hours=2)
    calls = []
    for _ in range(draw(st.integers(1, 30))):
        if draw(st.booleans()):
            at = draw(st.sampled_from(edges)) + draw(st.sampled_from(NEAR))
        else:
            at = low + timedelta(seconds=draw(st.integers(0, int((high - low).total_seconds()))))
        late = draw(st.sampled_from(["soon", "soon", "at_cutoff", "after"])) if closes else "soon"
        if late == "soon":
            recorded = at + timedelta(seconds=draw(st.sampled_from([0, 2, 899, 900])))
        elif late == "at_cutoff":
            recorded = draw(st.sampled_from(closes)).at + draw(st.sampled_from(NEAR))
        else:
            recorded = closes[-1].at + timedelta(minutes=draw(st.integers(1, 600)))
        requested, reported = draw(st.sampled_from(MODELS))
        fingerprint = draw(st.sampled_from(FINGERPRINTS))
        tags = draw(st.dictionaries(st.sampled_from(["feature", "team"]), st.sampled_from(["a", "b", ""]), max_size=2))
        calls.append(dict(
            started_at=at, recorded_at=recorded, project=draw(st.sampled_from([None, "", "search", "(none)"])),
            end_user=draw(st.sampled_from([None, "", "u-1", "u-2"])), tags=tags or None, key_fingerprint=fingerprint,
            key_last4=None if fingerprint is None else fingerprint[:4],
            charged=draw(st.one_of(st.none(), st.integers(0, 10**12).map(nano))),
            expected=draw(st.one_of(st.none(), st.integers(0, 10**12).map(nano))),
            prompt_tokens=draw(st.one_of(st.none(), st.integers(0, 5000))),
            pricing_class=draw(st.sampled_from(["ok", "rounding", "overcharge", "missing_usage"])),
            status=draw(st.sampled_from(["completed", "error", "aborted", "failed"])),
            rate_card=draw(st.sampled_from(["aivideoapi-2026-04", None])),
            model_requested=requested, model_reported=reported,
        ))
    keys = draw(st.lists(st.sampled_from(key_names), max_size=3, unique=True))
    account = draw(st.sampled_from([None, None, "prod", "dev"]))
    projects = draw(st.sampled_from([None, None, frozenset({"search"}), frozenset({"", "(none)"}), frozenset()]))
    return period, closes, calls, keys, (account, projects)


def fill(ledger, calls) -> None:
    with ledger.session() as session:
        session.execute(delete(Call))
        for table in TABLES:  # the calls' sums go with them
            session.execute(delete(table.model))
    for fingerprint, (label, account) in ACCOUNTS.items():
        register(ledger, fingerprint, fingerprint[:4], label, account)
    batches: dict = {}  # a batch shares one recorded_at, as the writer's do
    for c in calls:
        batches.setdefault(c["recorded_at"], []).append(call_values(**c))
    insert_batches(ledger, list(batches.values()))  # in one transaction: the calls are the subject, not their commits


def same(found, wanted) -> bool:
    return Counter(found) == Counter(wanted)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=ledgers())
def test_the_rollup_path_gives_the_raw_group_by_to_the_nano_credit(ledger, case):
    period, closes, calls, names, (account, projects) = case
    fill(ledger, calls)
    keys = [GroupKey(n) if n in INTERNAL else parse_group_keys(n)[0] for n in names]
    with ledger.session() as session:
        selection, adjustments, _ = selection_for(session, period, account, closes)
        bounds, _ = bucket_bounds([k for k in keys if k.is_time], period)
        parts = (selection, adjustments) if adjustments is not None else (selection,)
        for part in parts + tuple(replace(p, projects=projects) for p in parts if projects is not None):
            wanted = raw_spend_rows(session, part, keys, bounds)
            assert same(spend_rows(session, part, keys, bounds), wanted)
            ordered = list(spend_rows_in_order(session, part, keys, bounds))
            assert same(ordered, wanted)
            runs = [v for i, v in enumerate(r.values for r in ordered) if i == 0 or ordered[i - 1].values != v]
            assert len(runs) == len(set(runs))  # a group's rows (one per card) come together
        # The period's total is the calls counted, call by call: the oracle is not itself wrong.
        total = sum((r.calls for r in spend_rows(session, selection, ())), 0)
        late = [(c.period, c.at) for c in closes]
        counted = [c for c in calls if period.start <= c["started_at"] < period.end
                   and (account is None or ACCOUNTS.get(c["key_fingerprint"], (None, None))[1] == account)
                   and not any(p.start <= c["started_at"] < p.end and c["recorded_at"] > at for p, at in late)]
        assert total == len(counted)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=ledgers(kinds=("month",), key_names=["project", "key", "account", "user_or_empty"],
                    zones={**ZONES, "UTC": "2026-10-15"}),  # and a month of whole UTC days
       spread=st.lists(st.integers(0, 32 * 86_400), min_size=5, max_size=25))
def test_a_month_by_user_takes_utc_months_whole_and_the_days_it_does_not_take_away_exactly(ledger, case, spread):
    """A local month read from the monthly users' table (its UTC months whole, the days at its ends, of the closed
    period before it and recorded at a cutoff taken away from the daily one) gives the raw GROUP BY."""
    period, closes, calls, names, (account, projects) = case
    late = closes[-1].at if closes else period.end
    calls = calls + [dict(calls[i % len(calls)], started_at=period.start + timedelta(seconds=s),
                          recorded_at=period.start + timedelta(seconds=s + (i % 3) * 900) if i % 4 else late)
                     for i, s in enumerate(spread)]  # calls all through the month, some recorded at the cutoff
    fill(ledger, calls)
    keys = [parse_group_keys("user")[0]] + [GroupKey(n) if n in INTERNAL else parse_group_keys(n)[0] for n in names]
    taken = 0
    with ledger.session() as session:
        selection, adjustments, _ = selection_for(session, period, account, closes)
        for part in (selection, *(() if projects is None else (replace(selection, projects=projects),))):
            rolled, _ = rollup_parts(part, {}, needed_dims(keys, part.account, part.projects))
            taken += any(table is MONTHLY_USERS.model for table, *_ in rolled)
            assert same(spend_rows(session, part, keys), raw_spend_rows(session, part, keys))
        if adjustments is not None:
            assert same(spend_rows(session, adjustments, keys), raw_spend_rows(session, adjustments, keys))
    assert taken  # the path under test was taken: a local month leaves most of its UTC month whole


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=ledgers(kinds=("month", "day", "range"), key_names=["project", "user", "key", "account", "user_or_empty"],
                    zones={**ZONES, "Asia/Kolkata": "2026-10-31"}),
       spread=st.lists(st.integers(-86_400, 86_400), min_size=5, max_size=30))
def test_a_reads_ends_widened_to_wider_buckets_and_taken_away_again_give_the_raw_group_by(ledger, case, spread):
    """A read whose ends are inside a UTC day: widened to the bound of an hourly or daily bucket and the part beyond
    taken away again (`selection_ends`), the hourly tables read, gives the raw GROUP BY."""
    period, closes, calls, names, (account, projects) = case
    late = closes[-1].at if closes else period.end
    ends = [period.start, period.end]
    calls = calls + [dict(calls[i % len(calls)], started_at=ends[i % 2] + timedelta(seconds=s),
                          recorded_at=ends[i % 2] + timedelta(seconds=s + (i % 3) * 900) if i % 4 else late)
                     for i, s in enumerate(spread)]  # calls a day either side of each end, some recorded at the cutoff
    fill(ledger, calls)
    keys = [GroupKey(n) if n in INTERNAL else parse_group_keys(n)[0] for n in names]
    widened = 0
    with ledger.session() as session:
        selection, adjustments, _ = selection_for(session, period, account, closes)
        for part in (selection, *(() if projects is None else (replace(selection, projects=projects),))):
            widened += any(sign < 0 for _, sign in selection_ends(part, {}, needed_dims(keys, part.account, part.projects)))
            assert same(spend_rows(session, part, keys), raw_spend_rows(session, part, keys))
        if adjustments is not None:
            assert same(spend_rows(session, adjustments, keys), raw_spend_rows(session, adjustments, keys))
    # The path under test was taken: a local day or month off UTC's hours (Berlin's are UTC's; a range may be short)
    assert widened or period.zone == "Europe/Berlin" or period.kind == "range"


def fill_kolkata_october(ledger) -> datetime:
    """A call every 37 minutes from 2026-09-30 08:30Z to 2026-11-01 03:00Z, of two projects and three users; the
    start of the month 2026-10 in Asia/Kolkata (2026-09-30 18:30Z)."""
    start = datetime(2026, 9, 30, 18, 30, tzinfo=UTC)
    fill(ledger, [dict(started_at=start + timedelta(minutes=37 * i - 600), recorded_at=start + timedelta(minutes=37 * i - 590),
                       project=("a", "b")[i % 2], end_user=f"u-{i % 3}", tags=None, key_fingerprint="a" * 64,
                       key_last4="aaaa", charged=nano(10**9 + i), expected=None, prompt_tokens=1, pricing_class="ok",
                       status="completed", rate_card=None, model_requested=None, model_reported=None)
                  for i in range(1250)])
    return start


def test_a_month_by_user_or_project_in_kolkata_takes_its_last_day_whole_less_the_hours_after_its_end(ledger):
    """The month 2026-10 in Asia/Kolkata (2026-09-30 18:30Z to 2026-10-31 18:30Z), by user and by project: October
    whole less 2026-10-31 from 18:30 on (22 quarter hours, where the day to 18:30 is 74); by project those hours
    from the hourly projects' table. A row of it changed changes the answer: it is read (and equal to the raw GROUP
    BY when not changed)."""
    start = fill_kolkata_october(ledger)
    period = parse_period("2026-10", "Asia/Kolkata")
    assert (period.start, period.end) == (start, datetime(2026, 10, 31, 18, 30, tzinfo=UTC))
    hourly = HOURLY_PROJECTS.model
    with ledger.session() as session:
        selection, _, _ = selection_for(session, period, None, [])
        for name, dims in (("user", {"end_user", "rate_card"}), ("project", {"project", "rate_card"})):
            keys = parse_group_keys(name)
            spans = [(s.start, s.end, sign) for s, sign in selection_ends(selection, {}, frozenset(dims))]
            assert spans == [(start, datetime(2026, 11, 1, tzinfo=UTC), 1), (period.end, datetime(2026, 11, 1, tzinfo=UTC), -1)]
            assert same(spend_rows(session, selection, keys), raw_spend_rows(session, selection, keys))
        wanted = raw_spend_rows(session, selection, parse_group_keys("project"))
        session.execute(update(hourly).where(hourly.bucket_start == datetime(2026, 10, 31, 20, tzinfo=UTC), hourly.project == "a")
                        .values(credits_charged=hourly.credits_charged + Decimal("0.000000001")))
        assert not same(spend_rows(session, selection, parse_group_keys("project")), wanted)
        session.rollback()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=ledgers(kinds=("month", "week", "day"), key_names=["day", "week", "month", "project", "user", "key", "account"],
                    zones={**ZONES, "Asia/Kolkata": "2026-10-31"}),
       near=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(NEAR), st.booleans()), min_size=5, max_size=40))
def test_local_days_read_as_utc_days_less_and_plus_their_pieces_give_the_raw_group_by(ledger, case, near):
    """A read by day, week or month whose local days are off UTC's: each UTC day taken whole to the groups of its
    biggest piece, its other pieces taken away and added to their own groups (`day_spans`), gives the raw GROUP BY.
    The calls crowd every local midnight and UTC midnight of the period (either side, a microsecond to 30 minutes),
    where a piece cut at the wrong instant would move them to another day."""
    period, closes, calls, names, (account, projects) = case
    keys = [parse_group_keys("day")[0]] + [parse_group_keys(n)[0] for n in names if n != "day"]
    bounds, spans = bucket_bounds([k for k in keys if k.is_time], period)
    midnights = sorted({b.start for b in spans["day"]} | {b.end for b in spans["day"]}
                       | {datetime.combine(b.start.astimezone(UTC).date(), datetime.min.time(), UTC) for b in spans["day"]})
    late = closes[-1].at if closes else period.end
    calls = calls + [dict(calls[i % len(calls)], started_at=midnights[n % len(midnights)] + offset,
                          recorded_at=(midnights[n % len(midnights)] + offset + timedelta(seconds=i % 3 * 900))
                          if i % 4 or not recorded_late else late)
                     for i, (n, offset, recorded_late) in enumerate(near)]
    fill(ledger, calls)
    with ledger.session() as session:
        selection, adjustments, _ = selection_for(session, period, account, closes)
        for part in (selection, *(() if projects is None else (replace(selection, projects=projects),))):
            assert same(spend_rows(session, part, keys, bounds), raw_spend_rows(session, part, keys, bounds))
            assert same(list(spend_rows_in_order(session, part, keys, bounds)), raw_spend_rows(session, part, keys, bounds))
        if adjustments is not None:
            assert same(spend_rows(session, adjustments, keys, bounds), raw_spend_rows(session, adjustments, keys, bounds))
    # The path under test was taken: a UTC day whole (of a single local day in Kathmandu, reading its pieces costs
    # fewer quarter hours: 18:15Z-24:00Z is 3 of them, 00:00Z-18:15Z one; a read by user keeps `levels`' path)
    needed = needed_dims(keys, account, projects)
    plan = day_spans(period.start, period.end, [b for found in bounds.values() for b in found], needed)
    assert ((plan is not None and plan.reference) or (period.kind == "day" and period.zone == "Asia/Kathmandu")
            or "end_user" in needed)


def test_a_month_by_project_and_day_in_kolkata_reads_utc_days_less_their_hours_after_18_30(ledger):
    """The month 2026-10 in Asia/Kolkata by project and day: each UTC day of October from the daily table, less its
    18:30Z-24:00Z (its next local day's) added to that day, and 2026-09-30 18:30Z-24:00Z read as it is. A daily row
    changed changes the answer: it is read (and equal to the raw GROUP BY when not changed)."""
    start = fill_kolkata_october(ledger)
    period = parse_period("2026-10", "Asia/Kolkata")
    keys = parse_group_keys("project,day")
    bounds, _ = bucket_bounds(keys, period)
    plan = day_spans(period.start, period.end, bounds["day"], frozenset({"project", "rate_card"}))
    october = [datetime(2026, 10, d, tzinfo=UTC) for d in range(1, 32)]
    assert plan.reference == {day: day for day in october}  # a UTC day's rows go to the local day it starts
    tails = [(day + timedelta(hours=18, minutes=30), day + timedelta(days=1)) for day in october]
    assert plan.spans[0] == (start, october[0], 1, 0)
    assert [s for s in plan.spans if s.day == 1] == [(day, day + timedelta(days=1), 0, 1) for day in october]
    assert [s[:2] for s in plan.spans if s.day == -1] == tails
    assert [s.own for s in plan.spans if s.day == -1] == [1] * 30 + [0]  # 2026-10-31's tail is November's
    daily = DAILY.model
    with ledger.session() as session:
        selection, _, _ = selection_for(session, period, None, [])
        wanted = raw_spend_rows(session, selection, keys, bounds)
        assert same(spend_rows(session, selection, keys, bounds), wanted)
        assert [Counter(found) for found in spend_rows_of(session, [selection, selection], keys, bounds)] == [Counter(wanted)] * 2
        session.execute(update(daily).where(daily.bucket_start == datetime(2026, 10, 12, tzinfo=UTC), daily.project == "a")
                        .values(credits_charged=daily.credits_charged + Decimal("0.000000001")))
        assert not same(spend_rows(session, selection, keys, bounds), wanted)
        session.rollback()


SCOPES = [Scope(), Scope(project="search"), Scope(project=""), Scope(user="u-1"), Scope(user=""), Scope(model="gemini-2.5-pro"),
          Scope(account="prod"), Scope(key="batch"), Scope(user="u-2", model="gemini-3.1-pro"),
          Scope(tags=(("feature", "a"),)), Scope(project="search", tags=(("team", ""),))]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=ledgers(), rolling=st.integers(1, 3000))
def test_budgets_sum_the_rollup_and_the_edges_as_the_raw_calls_do(ledger, case, rolling):
    period, _, calls, _, _ = case
    fill(ledger, calls)
    windows = [period, rolling_period(timedelta(minutes=rolling), period.end - timedelta(seconds=rolling))]
    queries = [SpendQuery(scope, w.start, w.end) for w in windows for scope in SCOPES]
    with ledger.session() as session:
        found = spends(session, queries)
        for query, got in zip(queries, found):
            raw = spend(session, *query, raw_only=True)  # the raw calls alone
            assert (got.credits, got.calls) == (raw.credits, raw.calls), query
            assert tuple(spend(session, *query))[:2] == (raw.credits, raw.calls)
