"""A hard limit's refresh reads (`limit_reads`: whole UTC days from the daily rollups, their largest charges kept
between reads, the edges raw) give what the raw calls give: the spend, the count and the largest charge, also after
calls land late in days already read, and after a call commits behind calls committed and read before it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_rows import call_values, empty, insert, register

from ledger.accounting.budgets import Scope
from ledger.accounting.periods import calendar_period, rolling_period
from ledger.accounting.pricing import default_rate_book
from ledger.accounting.records import CallRecord
from ledger.store.budgets import largest_charge, spend
from ledger.store.calls import insert_rows
from ledger.store.limit_reads import DayCharges, limit_reads
from ledger.store.models import Call
from ledger.store.rate_cards import sync_rate_cards

UTC = timezone.utc
NOW = datetime(2026, 10, 20, 9, 40, tzinfo=UTC)
FINGERPRINTS = ["a" * 64, "b" * 64, None]
SCOPES = [Scope(project="search"), Scope(project=""), Scope(key="backend"), Scope(account="prod"), Scope(user="u-1"),
          Scope(project="search", user="u-2"), Scope(), Scope(model="gemini-2.5-pro"), Scope(tags=(("feature", "a"),))]
PERIODS = [calendar_period("month", NOW, "Asia/Kolkata"), calendar_period("month", NOW, "UTC"),
           calendar_period("week", NOW, "America/St_Johns"), calendar_period("day", NOW, "Asia/Kathmandu"),
           rolling_period(timedelta(days=7), NOW), rolling_period(timedelta(hours=30), NOW)]
LOW, HIGH = datetime(2026, 9, 20, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)


def raw(session, scope, period) -> tuple:
    found = spend(session, scope, period.start, period.end, raw_only=True)
    return found.credits, found.calls, largest_charge(session, scope, period.start, period.end)


def read(session, scope, period, seen) -> tuple:
    found, largest = limit_reads(session, scope, period.start, period.end, seen=seen)
    return found.credits, found.calls, largest


calls_drawn = st.lists(st.fixed_dictionaries(dict(
    at=st.integers(0, int((HIGH - LOW).total_seconds())), midnight=st.booleans(),
    project=st.sampled_from(["search", "", None, "other"]), end_user=st.sampled_from(["u-1", "u-2", None]),
    key=st.sampled_from(FINGERPRINTS), charged=st.one_of(st.none(), st.integers(-10, 10**11)),
    model=st.sampled_from(["gemini-3.1-pro", "gemini-2.5-pro"]), tag=st.sampled_from([None, "a", "b"]))),
    min_size=1, max_size=25)


def rows_of(drawn: list[dict]) -> list[tuple]:
    found = []
    for c in drawn:
        at = LOW + timedelta(seconds=c["at"])
        if c["midnight"]:  # crowd the UTC days' bounds and the periods' own
            at = at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(microseconds=c["at"] % 3)
        found.append(call_values(
            started_at=at, recorded_at=NOW, project=c["project"], end_user=c["end_user"], key_fingerprint=c["key"],
            key_last4=None if c["key"] is None else c["key"][:4], model_requested=c["model"],
            charged=None if c["charged"] is None else Decimal(c["charged"]).scaleb(-9),
            tags=None if c["tag"] is None else {"feature": c["tag"]}))
    return found


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=calls_drawn, later=calls_drawn)
def test_the_refresh_reads_give_the_raw_spend_and_largest_charge_before_and_after_late_calls(ledger, first, later):
    empty(ledger)
    register(ledger, "a" * 64, "aaaa", "backend", "prod")
    register(ledger, "b" * 64, "bbbb", "batch", "dev")
    insert(ledger, rows_of(first))
    seen = {(scope, period): DayCharges() for scope in SCOPES for period in PERIODS}
    with ledger.session() as session:
        for (scope, period), kept in seen.items():
            assert read(session, scope, period, kept) == raw(session, scope, period), (scope, period)
    insert(ledger, rows_of(later))  # into days already read, too: each changes its day's count
    with ledger.session() as session:
        for (scope, period), kept in seen.items():
            wanted = raw(session, scope, period)
            assert read(session, scope, period, kept) == wanted, (scope, period)
            assert read(session, scope, period, kept) == wanted  # from the days kept
            assert read(session, scope, period, None) == wanted  # nothing kept


def test_a_call_committed_after_later_calls_were_read_still_raises_the_largest_charge(ledger):
    """A writer's transaction takes its call's id, then commits after another writer's later call was committed and
    read: a refresh that read on from the largest id it had seen would never see the first call. The day's count
    in the rollup changes when it commits, so its charge is read."""
    month = calendar_period("month", NOW, "Asia/Kolkata")
    day = datetime(2026, 10, 3, 12, tzinfo=UTC)  # a whole UTC day of the month, well before the refresh
    insert(ledger, [call_values(started_at=day + timedelta(hours=h), charged="1") for h in range(3)])
    scope, seen = Scope(project="search"), DayCharges()
    late = call_values(started_at=day, charged="50", recorded_at=day + timedelta(days=9), end_user="u-late")
    with ledger.session() as session:
        sync_rate_cards(session, default_rate_book())
    slow = ledger.session()  # the slow writer: its call is inserted (its id taken), not committed
    with slow as writing:
        assert insert_rows(writing, [late], [CallRecord(late[0], day, "completed")]).inserted == 1
        with ledger.session() as session:
            assert read(session, scope, month, seen)[2] == Decimal(1)
        if ledger.dialect == "postgresql":  # (SQLite has one writer at a time: no call commits meanwhile)
            insert(ledger, [call_values(started_at=day + timedelta(days=1), charged="2")])
            with ledger.session() as session:
                assert read(session, scope, month, seen)[2] == Decimal(2)
                assert session.scalar(Call.__table__.select().with_only_columns(Call.id).where(
                    Call.credits_charged == Decimal(2))) > _id_of(writing, late[0])
    with ledger.session() as session:
        assert read(session, scope, month, seen) == raw(session, scope, month)
        assert read(session, scope, month, seen)[2] == Decimal(50)


def _id_of(session, call_id: str) -> int:
    return session.scalar(Call.__table__.select().with_only_columns(Call.id).where(Call.call_id == call_id))


def test_a_first_read_of_more_days_than_a_statement_holds_reads_them_all(ledger):
    """A long period's first read re-reads every day with calls: more SELECTs than SQLite takes in one compound
    statement (500) are sent as several."""
    days = 520
    start = NOW.replace(hour=12, minute=0) - timedelta(days=days + 5)
    insert(ledger, [call_values(started_at=start + timedelta(days=n, minutes=n % 600), charged=str(1 + n % 97))
                    for n in range(days)])
    period = rolling_period(timedelta(days=days + 10), NOW)
    with ledger.session() as session:
        seen = DayCharges()
        assert read(session, Scope(project="search"), period, seen) == raw(session, Scope(project="search"), period)
        assert len(seen.days) == days
