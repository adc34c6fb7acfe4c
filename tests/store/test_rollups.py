"""The rollups: kept by the writer in its transaction, equal to a recompute from the raw calls after replays, kills
and concurrent writers; built on upgrade; rebuilt and verified."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest
from sqlalchemy import delete, func, insert, select, update

from factories import make_capture, wait_for
from ledger_rows import T0, call_values

from ledger import Ledger, LedgerSink, Recorder, replay_journal
from ledger.accounting.records import CallRecord
from ledger.store import rollup_tables, rollups
from ledger.store.calls import CALL_COLUMNS, insert_rows
from ledger.store.engine import downgrade, upgrade
from ledger.store.models import Call, CallRollup

ROOT = Path(__file__).resolve().parents[2]


def assert_exact(url: str, calls: int) -> None:
    """The rollups equal the recompute from the raw calls, and hold `calls` calls."""
    with Ledger(url) as ledger, ledger.session() as session:
        comparison = rollups.compare(session)
        assert comparison.differences == []
        assert comparison.calls == calls
        for table in rollup_tables.TABLES:  # every width holds every call once
            assert session.scalar(select(func.coalesce(func.sum(table.model.calls), 0))) == calls, table.name


def test_dims_key_keeps_null_empty_and_false_apart():
    base = ("f" * 64, "Zq9x", "p", "u", "m", "m", None, "card", "ok", False)
    keys = {rollups.dims_key(base), rollups.dims_key(base[:2] + ("",) + base[3:]),
            rollups.dims_key(base[:2] + (None,) + base[3:]), rollups.dims_key(base[:-1] + (True,)),
            rollups.dims_key(base[:6] + ("",) + base[7:])}
    assert len(keys) == 5 and all(len(key) == 64 for key in keys)


def test_dims_key_is_the_sha256_of_each_values_length_and_text_joined():
    # the key stored in every rollup row: a change of its text would leave every stored row apart from its next upsert
    text = "64:" + "f" * 64 + "|4:Zq9x|0:|-|3:naï|T|F"
    assert rollups.dims_key(("f" * 64, "Zq9x", "", None, "naï", True, False)) == sha256(text.encode()).hexdigest()


def random_groups(rng: random.Random, n: int) -> dict[tuple, list[int]]:
    """15-minute groups {(bucket, recorded bucket, every dimension): sums} across a month's end, values recurring."""
    groups: dict[tuple, list[int]] = {}
    for _ in range(n):
        bucket = datetime(2026, 11, 30, 22, tzinfo=timezone.utc) + timedelta(minutes=15 * rng.randrange(12))
        recorded = bucket + timedelta(minutes=15 * rng.randrange(3))
        dims = (f"{rng.randrange(3):064x}", "last", rng.choice(["p", "q", None, ""]), rng.choice(["u", "v", None]),
                "m", rng.choice(["m", "n"]), rng.choice(["{}", '{"team":"a"}']), "card", rng.choice(["ok", "x"]),
                rng.random() < 0.2)
        groups[bucket, recorded, dims] = [rng.randrange(1, 4) for _ in rollup_tables.MEASURES]
    return groups


def test_each_table_of_tables_and_a_new_one_holds_its_groups_sums_summed_once():
    # coarsen beside the definition: every 15-minute group added, one by one, to its row of each table; a table
    # added to TABLES (an hourly one by project, a monthly one by project and card) is summed the same way, in order
    hourly_projects = rollup_tables.RollupTable(CallRollup, rollup_tables.HOUR, ("project", "rate_card"))
    monthly_cards = rollup_tables.RollupTable(CallRollup, rollup_tables.MONTH, ("project", "rate_card"))
    tables = (*rollup_tables.TABLES, hourly_projects, monthly_cards)
    plan = rollup_tables._plan(tables)
    assert [(source, list(summed)) for source, summed in plan] == [
        (rollup_tables.QUARTERLY, [t for t in tables[1:] if t not in (rollup_tables.MONTHLY_USERS, monthly_cards)]
         + [monthly_cards]),
        (rollup_tables.DAILY_USERS, [rollup_tables.MONTHLY_USERS]),
    ]
    groups = random_groups(random.Random(15), 400)
    found = {rollup_tables.QUARTERLY: groups}
    for source, summed in plan:
        found.update(rollup_tables._summed(found[source], source, summed))
    for table in tables:
        expected: dict[tuple, list[int]] = {}
        for (bucket, recorded, dims), sums in groups.items():
            key = (table.floor(bucket), table.floor(recorded), table.project(dims))
            expected[key] = [a + b for a, b in zip(expected.get(key, [0] * len(sums)), sums)]
        assert found[table] == expected, table.name
    coarsened = rollup_tables.coarsen(groups)
    assert list(coarsened) == list(rollup_tables.TABLES)  # one order of the tables: writers cannot deadlock across them
    assert all(coarsened[table] == found[table] for table in rollup_tables.TABLES)


class StatementsSeen:
    """A session and cursor as rollup_tables.upsert uses them, keeping each statement's rows."""

    def __init__(self, dialect: str) -> None:
        self.dialect, self.rows = SimpleNamespace(name=dialect), []
        self.connection = lambda: SimpleNamespace(connection=SimpleNamespace(driver_connection=self))

    def get_bind(self):
        return self

    def cursor(self):
        return self

    def executemany(self, sql, rows):  # SQLite: a row a group
        self.rows.append(list(rows))

    def execute(self, sql, columns):  # PostgreSQL: a column a parameter, unnest's arrays
        self.rows.append(list(zip(*columns)))

    def close(self):
        pass


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_tables_upserts_go_in_bucket_recorded_bucket_and_key_order_with_the_groups_values(dialect):
    # the one order of every writer's upserts (two writers sharing rows cannot deadlock), the buckets as bound
    groups = rollup_tables.coarsen(random_groups(random.Random(26), 300))
    for table, found in groups.items():
        session = StatementsSeen(dialect)
        rollup_tables.upsert(session, table, found)
        (rows,) = session.rows
        as_bound = (lambda moment: moment) if dialect == "postgresql" else rollup_tables._text
        expected = sorted(((bucket, recorded, dims_key, dims, sums) for (bucket, recorded, dims), sums in found.items()
                           for dims_key in [rollup_tables.dims_key(dims)]), key=lambda group: group[:3])
        assert rows == [(as_bound(b), as_bound(r), k, *d, *s) for b, r, k, d, s in expected], table.name


def test_a_bucket_is_the_quarter_hour_in_utc_whatever_the_zone_given():
    kathmandu = timezone(timedelta(hours=5, minutes=45))
    moment = datetime(2026, 12, 1, 5, 59, 59, 999999, tzinfo=kathmandu)  # 00:14:59.999999 UTC
    assert rollups.bucket_of(moment) == datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
    assert rollups.bucket_after(moment) == datetime(2026, 12, 1, 0, 15, tzinfo=timezone.utc)
    assert rollups.bucket_after(datetime(2026, 12, 1, 0, 15, tzinfo=timezone.utc)) == datetime(2026, 12, 1, 0, 15, tzinfo=timezone.utc)


def test_the_writers_rollups_equal_the_recompute_replays_and_conflicts_counted_never(database_url, tmp_path):
    captures = [make_capture(i) for i in range(300)]
    with LedgerSink(database_url, tmp_path / "journal", batch_size=64) as sink:
        for capture in captures:
            sink.emit(capture)
        assert sink.flush(20)
        for capture in captures[:100]:  # replays of the same calls
            sink.emit(capture)
        sink.emit(make_capture(0, call_id=captures[0].call_id, prompt_tokens=999))  # a conflict: rejected
        assert sink.flush(20)
        assert (sink.stats.committed, sink.stats.duplicates, sink.stats.conflicts) == (300, 100, 1)
    assert_exact(database_url, 300)


def test_upgrading_a_ledger_at_0010_builds_its_wider_rollups_from_its_calls(database_url):
    from ledger_rows import insert as insert_calls

    ledger = Ledger(database_url)
    rng = random.Random(10)
    rows = [call_values(started_at=T0 + timedelta(minutes=rng.randint(0, 4000)), end_user=rng.choice([None, "u", "v"]),
                        project=rng.choice([None, "a"]), charged=rng.choice([None, "0.000000001", "3"]))
            for _ in range(300)]
    insert_calls(ledger, rows)
    downgrade(ledger.engine, "0010")  # the wider tables gone, the calls and call_rollups kept
    upgrade(ledger.engine)
    ledger.close()
    assert_exact(database_url, 300)


def test_upgrading_a_ledger_at_0012_builds_its_monthly_users_and_hourly_tags_rollups(database_url):
    from ledger_rows import insert as insert_calls

    ledger = Ledger(database_url)
    rng = random.Random(12)
    rows = [call_values(started_at=T0 + timedelta(hours=rng.randint(-600, 900)), end_user=rng.choice([None, "", "u"]),
                        recorded_at=T0 + timedelta(hours=rng.choice([900, 1000])),  # some recorded the month after
                        project=rng.choice([None, "a"]), charged=rng.choice([None, "0.000000001", "3"]),
                        tags=rng.choice([None, {"a": "b"}, {"a": ""}]))
            for _ in range(200)]
    insert_calls(ledger, rows)
    downgrade(ledger.engine, "0012")  # the monthly and hourly tags tables gone
    upgrade(ledger.engine)
    ledger.close()
    assert_exact(database_url, 200)
    with Ledger(database_url) as ledger, ledger.session() as session:
        months = session.scalars(select(rollup_tables.MONTHLY_USERS.model.bucket_start).distinct()).all()
        assert len(months) == 3  # October, November, December 2026


def test_upgrading_a_ledger_at_0014_builds_its_hourly_projects_rollups_from_call_rollups(database_url):
    from ledger_rows import insert as insert_calls

    ledger = Ledger(database_url)
    rng = random.Random(15)
    rows = [call_values(started_at=T0 + timedelta(minutes=rng.randint(-3000, 3000), seconds=rng.random() * 60),
                        recorded_at=T0 + timedelta(hours=rng.choice([51, 52, 300])),  # some recorded days after
                        end_user=rng.choice([None, "", "u", "v"]), project=rng.choice([None, "", "a", "b"]),
                        key_fingerprint=rng.choice([None, "f" * 64]), charged=rng.choice([None, "0.000000001", "3"]))
            for _ in range(300)]
    insert_calls(ledger, rows)
    downgrade(ledger.engine, "0014")  # the table gone, the calls and the other rollups kept
    upgrade(ledger.engine)
    ledger.close()
    assert_exact(database_url, 300)  # every table beside the raw calls' recompute
    with Ledger(database_url) as ledger:
        downgrade(ledger.engine, "0014")
        with ledger.session() as session:  # a raw call gone (as retention deletes them): its 15-minute row holds it
            gone = session.scalar(select(Call.id).order_by(Call.started_at).limit(1))
            session.execute(delete(Call).where(Call.id == gone))
        upgrade(ledger.engine)
        with ledger.session() as session:
            hourly = rollup_tables.HOURLY_PROJECTS.model
            assert session.scalar(select(func.sum(hourly.calls))) == 300


def test_the_hourly_projects_table_holds_what_the_calls_give_and_verify_names_a_row_that_differs(ledger):
    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(minutes=37 * i), charged="0.5", end_user=f"u-{i % 3}",
                                      project=("a", "b")[i % 2]) for i in range(80)])  # 2026-11-10 12:00 on, three days
    url = ledger.url
    assert_exact(url, 80)
    assert cli("--database-url", url, "rollup", "verify")[0] == 0
    with ledger.session() as session:
        hourly = rollup_tables.HOURLY_PROJECTS.model
        # 12:00-13:00: two calls, one of each project, a row each (recorded in the same hour)
        assert session.scalar(select(func.count()).select_from(hourly).where(hourly.bucket_start == T0)) == 2
        session.execute(update(hourly).where(hourly.bucket_start == T0.replace(hour=13), hourly.project == "a")
                        .values(credits_charged=hourly.credits_charged + Decimal("0.000000001")))
        session.execute(delete(hourly).where(hourly.bucket_start == T0.replace(hour=18)))
    code, text = cli("--database-url", url, "rollup", "verify")
    assert code == 3
    lines = text.splitlines()
    assert lines[0].startswith("call_rollups_hourly_projects bucket 2026-11-10T13:00Z: 1 rollup row differ; "
                               "rollups 1 calls 0.500000001 credits charged, calls 1 calls 0.5 credits charged (projects: a)")
    assert lines[1] == ("call_rollups_hourly_projects bucket 2026-11-10T18:00Z: 2 rollup rows differ; rollups 0 calls 0 credits "
                        "charged, calls 2 calls 1 credits charged (projects: a, b)")  # the hour's rows of both projects
    assert cli("--database-url", url, "rollup", "rebuild", "--from", "2026-11-10T13:00Z", "--to", "2026-11-10T19:00Z")[0] == 0
    assert cli("--database-url", url, "rollup", "verify")[0] == 0
    assert_exact(url, 80)


def test_verify_names_a_monthly_row_that_differs_and_rebuild_of_a_day_of_its_month_mends_it(ledger):
    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(hours=7 * i), charged="0.5", end_user="u")
                          for i in range(40)])  # 2026-11-10 12:00 on, twelve UTC days
    url = ledger.url
    monthly = rollup_tables.MONTHLY_USERS.model
    with ledger.session() as session:
        session.execute(update(monthly).values(credits_charged=monthly.credits_charged + Decimal("0.000000001")))
    code, text = cli("--database-url", url, "rollup", "verify", "--from", "2026-11-20T00:00Z")
    assert code == 3
    assert text.splitlines()[0].startswith("call_rollups_monthly_users bucket 2026-11-01T00:00Z: 1 rollup row differ; "
                                           "rollups 40 calls 20.000000001 credits charged, calls 40 calls 20 credits")
    assert cli("--database-url", url, "rollup", "rebuild", "--from", "2026-11-15T00:00Z", "--to", "2026-11-16T00:00Z")[0] == 0
    assert cli("--database-url", url, "rollup", "verify")[0] == 0
    assert_exact(url, 40)


def test_batches_that_are_partly_replays_add_only_the_rows_they_wrote(ledger, monkeypatch):
    monkeypatch.setattr(rollup_tables, "_GROUPS_A_STATEMENT", 7)  # the upserts in several statements, as a big rebuild's
    rng = random.Random(26)
    rows = [call_values(started_at=T0 + timedelta(minutes=rng.randint(0, 300), seconds=rng.random() * 60),
                        project=rng.choice([None, "", "search"]), status=rng.choice(["completed", "error", "failed"]),
                        charged=rng.choice([None, "0.25", "1.000000001"]), prompt_tokens=rng.choice([None, 7]),
                        pricing_class=rng.choice(["ok", "rounding", "overcharged"]), tags=rng.choice([None, {"a": "b"}]))
            for _ in range(120)]

    def write(batch):
        records = [CallRecord(row[0], row[CALL_COLUMNS.index("started_at")], row[CALL_COLUMNS.index("status")]) for row in batch]
        with ledger.session() as session:
            return insert_rows(session, batch, records).inserted

    # new, partly replayed, one replayed alone, one new alone, all replayed
    assert [write(rows[:40]), write(rows[20:80]), write(rows[50:51]), write(rows[80:81]), write(rows[:81])] == [40, 40, 0, 1, 0]
    assert_exact(ledger.url, 81)
    assert write(rows[81:]) == 39
    assert_exact(ledger.url, 120)


def test_calls_recorded_through_the_recorder_against_the_simulator_are_in_the_rollups(database_url, simulator, tmp_path):
    with Recorder(database_url, journal_dir=tmp_path / "journal") as rec:
        with openai.OpenAI(base_url=simulator.base_url, api_key="sk-test-rollups-0001", http_client=rec.client(),
                           max_retries=0) as client:
            for i in range(12):
                response = client.chat.completions.create(
                    model="gemini-3.1-pro", messages=[{"role": "user", "content": f"hi {i}"}], stream=bool(i % 2),
                    extra_headers={"X-Ledger-Project": f"p{i % 3}"},
                )
                if i % 2:
                    list(response)
        assert rec.sink.flush(20)
    assert_exact(database_url, 12)


CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from factories import make_capture
    from ledger import LedgerSink
    sink = LedgerSink({url!r}, {journal!r}, batch_size=50)
    print("ready", flush=True)
    for i in range({limit}):
        sink.emit(make_capture(i))
        {pause}
    print("done", flush=True)
    {after}
    """
)


def run_child(url, journal, *, limit, pause="", after="time.sleep(60)"):
    script = CHILD.format(tests=str(ROOT / "tests"), url=url, journal=str(journal), limit=limit, pause=pause, after=after)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def count_calls(url: str) -> int:
    with Ledger(url) as ledger, ledger.session() as session:
        return session.scalar(select(func.count()).select_from(Call))


def test_a_journal_replayed_twice_changes_nothing(database_url, tmp_path):
    journal = tmp_path / "journal"
    child = run_child(database_url, journal, limit=200, after="os._exit(0)")  # dies before writing
    child.communicate(timeout=20)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in journal.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert replay_journal(database_url, journal).inserted == 200
    assert_exact(database_url, 200)
    again = replay_journal(database_url, copy)  # the same entries once more
    assert (again.inserted, again.duplicates) == (0, 200)
    assert_exact(database_url, 200)


def test_a_writer_killed_mid_load_then_replayed_leaves_the_rollups_exact(database_url, tmp_path):
    journal = tmp_path / "journal"
    Ledger(database_url).close()
    child = run_child(database_url, journal, limit=10**9, pause="time.sleep(0.001) if i % 4 == 0 else None")
    wait_for(lambda: count_calls(database_url) >= 300, what="300 calls written")
    child.kill()  # SIGKILL in the middle of batches: a transaction cut short writes neither calls nor rollups
    child.communicate(timeout=10)
    replay_journal(database_url, journal)
    in_ledger = count_calls(database_url)
    assert in_ledger >= 300
    assert_exact(database_url, in_ledger)
    replay_journal(database_url, journal)  # nothing left to write
    assert_exact(database_url, in_ledger)


def test_a_writer_killed_before_its_commit_writes_neither_calls_nor_rollups(database_url, tmp_path):
    Ledger(database_url).close()
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from ledger_rows import call_values
        from ledger import Ledger
        from ledger.accounting.records import CallRecord
        from ledger.store.calls import insert_rows
        rows = [call_values(call_id=f"cut-{{i}}") for i in range(50)]
        ledger = Ledger({database_url!r})
        session = ledger.session().__enter__()
        insert_rows(session, rows, [CallRecord(row[0], row[9], row[12]) for row in rows])
        session.flush()
        os.kill(os.getpid(), 9)  # before the COMMIT
        """
    )
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert_exact(database_url, 0)


WRITER = textwrap.dedent(
    """
    import random, sys
    sys.path.insert(0, {tests!r})
    from datetime import timedelta
    from ledger_rows import T0, call_values
    from ledger import Ledger
    from ledger.accounting.records import CallRecord
    from ledger.store.calls import insert_rows
    rng = random.Random({seed})
    ledger = Ledger({url!r})
    print("ready", flush=True)
    sys.stdin.readline()
    for batch in range({batches}):
        # one scope (a project's calls of a few buckets), many rollup rows a batch, in random order
        rows = [call_values(call_id=f"w{seed}-{{batch}}-{{i}}", project="shared", end_user=f"u{{rng.randint(0, 30)}}",
                            started_at=T0 + timedelta(minutes=rng.randint(0, 90)))
                for i in range(100)]
        with ledger.session() as session:
            insert_rows(session, rows, [CallRecord(row[0], row[9], row[12]) for row in rows])
    print("done", flush=True)
    """
)


@pytest.mark.postgres
def test_two_processes_writing_one_scope_at_once_leave_the_rollups_exact_without_deadlock(database_url):
    Ledger(database_url).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(ROOT / "tests"), seed=seed, url=database_url,
                                                              batches=30)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        for seed in (1, 2)
    ]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready"
    for writer in writers:  # both start their batches together
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0 and out.strip() == "done", err[-2000:]
    assert_exact(database_url, 2 * 30 * 100)


# ---------------------------------------------------------------- upgrade, rebuild, compare


def test_upgrading_a_ledger_at_0007_builds_its_rollups_from_its_calls(database_url):
    ledger = Ledger(database_url)
    downgrade(ledger.engine, "0007")
    rng = random.Random(7)
    rows = [call_values(started_at=T0 + timedelta(minutes=rng.randint(0, 2000)), project=rng.choice([None, "a", "b"]),
                        status=rng.choice(["completed", "error"]), charged=rng.choice([None, "0.000000001", "3"]))
            for _ in range(400)]
    with ledger.session() as session:  # as the writer of 0007 wrote them: no rollups
        session.execute(insert(Call.__table__), [dict(zip(CALL_COLUMNS, row)) for row in rows])
    upgrade(ledger.engine)
    ledger.close()
    assert_exact(database_url, 400)


def test_rebuild_of_a_range_makes_its_buckets_anew_and_leaves_the_others(ledger):
    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(minutes=7 * i)) for i in range(60)])
    with ledger.session() as session:  # damage: one bucket inside the range, one outside
        rows = session.scalars(select(CallRollup).order_by(CallRollup.bucket_start)).all()
        inside, outside = rows[5], rows[-1]
        inside.calls += 5
        outside.credits_charged += 1
        damaged = (inside.bucket_start, outside.bucket_start)
    with ledger.session() as session:
        differences = rollups.compare(session).differences
        assert sorted(d.key.bucket_start for d in differences) == sorted(damaged)
        rollups.rebuild(session, T0 + timedelta(minutes=1), T0 + timedelta(minutes=100))  # widened to whole buckets
    with ledger.session() as session:
        assert [d.key.bucket_start for d in rollups.compare(session).differences] == [damaged[1]]
        rollups.rebuild(session)
    assert_exact(ledger.url, 60)


# ---------------------------------------------------------------- the commands


def cli(*args: str) -> tuple[int, str]:
    from ledger.cli import main

    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def test_rollup_verify_says_they_match_then_names_each_bucket_that_differs_and_rebuild_mends_it(ledger, capsys):
    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(minutes=15 * i), charged="0.5") for i in range(30)])
    url = ledger.url
    assert cli("--database-url", url, "rollup", "verify") == (0, "rollups match the calls: 30 buckets, 30 calls\n")
    with ledger.session() as session:
        for row in session.scalars(select(CallRollup).where(CallRollup.bucket_start.in_(
                [T0 + timedelta(minutes=30), T0 + timedelta(minutes=120)]))):
            row.credits_charged += Decimal("0.000000001")
        session.execute(delete(CallRollup).where(CallRollup.bucket_start == T0 + timedelta(minutes=150)))
    code, text = cli("--database-url", url, "rollup", "verify")
    assert code == 3
    assert text.splitlines()[:3] == [
        "bucket 2026-11-10T12:30Z: 1 rollup row differ; rollups 1 calls 0.500000001 credits charged, "
        "calls 1 calls 0.5 credits charged (projects: search)",
        "bucket 2026-11-10T14:00Z: 1 rollup row differ; rollups 1 calls 0.500000001 credits charged, "
        "calls 1 calls 0.5 credits charged (projects: search)",
        "bucket 2026-11-10T14:30Z: 1 rollup row differ; rollups 0 calls 0 credits charged, "
        "calls 1 calls 0.5 credits charged (projects: search)",
    ]
    assert "differ from the calls in 3 buckets" in text.splitlines()[3]
    # a range that holds none of them matches; one that holds one names only it
    assert cli("--database-url", url, "rollup", "verify", "--to", "2026-11-10T12:30Z")[0] == 0
    code, text = cli("--database-url", url, "rollup", "verify", "--from", "2026-11-10T13:00Z", "--to", "2026-11-10T14:10Z")
    assert code == 3 and text.startswith("bucket 2026-11-10T14:00Z") and "in 1 bucket:" in text
    code, text = cli("--database-url", url, "rollup", "rebuild", "--from", "2026-11-10T14:00Z")
    assert code == 0 and text.startswith("rollups rebuilt: 1 day from 2026-11-10T14:00Z")
    code, text = cli("--database-url", url, "rollup", "verify")
    assert code == 3 and text.startswith("bucket 2026-11-10T12:30Z") and "in 1 bucket:" in text
    assert cli("--database-url", url, "rollup", "rebuild")[0] == 0
    assert cli("--database-url", url, "rollup", "verify")[0] == 0
    assert capsys.readouterr().err == ""  # no progress line off a terminal


def test_verify_names_the_wider_tables_buckets_that_differ_and_rebuild_mends_them(ledger):
    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(minutes=37 * i), charged="0.5", end_user="u")
                          for i in range(80)])  # 2026-11-10 12:00 on, three UTC days
    url = ledger.url
    assert cli("--database-url", url, "rollup", "verify")[0] == 0
    with ledger.session() as session:
        daily, hourly = rollup_tables.DAILY.model, rollup_tables.HOURLY.model
        session.execute(update(daily).where(daily.bucket_start == T0.replace(hour=0) + timedelta(days=1))
                        .values(calls=daily.calls + 1))
        session.execute(delete(hourly).where(hourly.bucket_start == T0.replace(hour=13)))
    code, text = cli("--database-url", url, "rollup", "verify")
    assert code == 3
    lines = text.splitlines()
    assert lines[0].startswith("call_rollups_daily bucket 2026-11-11T00:00Z: 1 rollup row differ; rollups 40 calls")
    assert lines[1].startswith("call_rollups_hourly bucket 2026-11-10T13:00Z: 1 rollup row differ; rollups 0 calls")
    # the 15-minute range of a verify takes its whole UTC day in the wider tables
    assert cli("--database-url", url, "rollup", "verify", "--from", "2026-11-11T05:00Z", "--to", "2026-11-11T05:15Z")[0] == 3
    assert cli("--database-url", url, "rollup", "verify", "--from", "2026-11-12T00:00Z")[0] == 0
    assert cli("--database-url", url, "rollup", "rebuild", "--from", "2026-11-10T18:00Z", "--to", "2026-11-11T01:00Z")[0] == 0
    assert cli("--database-url", url, "rollup", "verify")[0] == 0


def test_rollup_rebuild_goes_a_utc_day_a_transaction_and_writers_may_write_meanwhile(ledger):
    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(hours=7 * i)) for i in range(12)])  # 4 days
    with ledger.session() as session:
        session.execute(delete(CallRollup))
        assert rollups.days(session) == [
            (T0.replace(hour=12), T0.replace(hour=0) + timedelta(days=1)),
            *[(T0.replace(hour=0) + timedelta(days=d), T0.replace(hour=0) + timedelta(days=d + 1)) for d in (1, 2)],
            (T0.replace(hour=0) + timedelta(days=3), T0 + timedelta(hours=77, minutes=15)),
        ]
    code, text = cli("--database-url", ledger.url, "rollup", "rebuild")
    assert code == 0 and "4 days" in text and "12 rollup rows" in text
    insert_calls(ledger, [call_values(started_at=T0 + timedelta(hours=3))])  # the writer adds to rebuilt buckets
    assert cli("--database-url", ledger.url, "rollup", "verify") == (0, "rollups match the calls: 13 buckets, 13 calls\n")


def test_a_rebuild_while_a_writer_writes_leaves_the_rollups_exact(database_url):
    Ledger(database_url).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=str(ROOT / "tests"), seed=3, url=database_url, batches=40)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert writer.stdout.readline().strip() == "ready"
    writer.stdin.write("go\n")
    writer.stdin.flush()
    wait_for(lambda: count_calls(database_url) >= 500, what="the writer's first batches")
    rebuilds = 0
    while writer.poll() is None or rebuilds < 2:
        assert cli("--database-url", database_url, "rollup", "rebuild")[0] == 0
        rebuilds += 1
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0 and out.strip() == "done", err[-2000:]
    assert_exact(database_url, 40 * 100)


def test_rollup_commands_refuse_a_range_backwards_and_a_missing_ledger(tmp_path, capsys):
    from ledger.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["rollup", "verify", "--from", "2026-11-02", "--to", "2026-11-01"])
    assert exit_info.value.code == 2
    assert main(["--database-url", f"sqlite:///{tmp_path / 'none.db'}", "rollup", "verify"]) == 1
    err = capsys.readouterr().err
    assert "--from must come before --to" in err and "no ledger at" in err and "Traceback" not in err


def test_the_services_daily_job_verifies_the_last_two_days_and_says_which_buckets_differ(ledger):
    from ledger.config import Settings
    from ledger.service.jobs import CronSchedule, Service, default_jobs, verify_rollups_job
    from ledger_rows import insert as insert_calls

    now = datetime.now(timezone.utc)
    insert_calls(ledger, [call_values(started_at=now - timedelta(hours=h)) for h in (1, 30, 60)])  # the last is older
    service = Service(Settings(database_url=ledger.url), ledger, host="test-host")
    assert verify_rollups_job(service) == ("ok", "rollups match the calls: 2 buckets, 2 calls")
    with ledger.session() as session:
        session.execute(delete(CallRollup))
    outcome, detail = verify_rollups_job(service)
    assert outcome == "differs"
    assert detail.startswith("rollups differ from the calls in 2 buckets: bucket ") and "rollup rebuild --from" in detail
    assert default_jobs(service.settings)["verify_rollups"][1] == CronSchedule("17 3 * * *", "UTC")


def test_check_finds_rollups_that_differ_from_the_calls_as_it_finds_mispriced_calls(ledger):
    """`credit-ledger check` is where a user looks for what is wrong in the ledger: rollups that differ from the
    calls (reports over them would be wrong) are one of its findings, with the bucket and the rebuild to run."""
    import json

    from ledger_rows import insert as insert_calls

    insert_calls(ledger, [call_values(started_at=T0 + timedelta(minutes=15 * i), charged="0.5") for i in range(8)])
    url = ledger.url
    code, text = cli("--database-url", url, "check")
    assert code == 0 and text.startswith("rollups: match the calls (8 buckets, 8 calls)\n"), text
    with ledger.session() as session:
        session.execute(delete(CallRollup).where(CallRollup.bucket_start == T0 + timedelta(minutes=30)))
    code, text = cli("--database-url", url, "check")
    assert code == 3, text
    assert text.startswith("bucket 2026-11-10T12:30Z: 1 rollup row differ") and "rollup rebuild" in text
    code, text = cli("--database-url", url, "check", "--json")
    assert code == 3
    found = json.loads(text)["rollups"]
    assert (found["differ"], found["differing_buckets"]) == (True, ["2026-11-10T12:30:00Z"]) and "lines" not in found
    assert cli("--database-url", url, "check", "--since", "2026-11-10T13:00Z")[0] == 0  # a range without it
