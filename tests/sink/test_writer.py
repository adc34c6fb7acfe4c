"""The batch writer with real parts: a SQLite file or PostgreSQL, outages, SIGKILL, SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from db_proxy import Proxy
from factories import hold_sqlite_lock, make_capture, make_raw_capture, wait_for

from ledger.sink.capture import Capture
from ledger.store.engine import Ledger
from ledger.sink.segments import segment_paths
from ledger.store.models import Call, RejectedRecord
from ledger.sink.sink import LedgerSink
from ledger.sink.writer import replay_journal

ROOT = Path(__file__).resolve().parents[2]


def count_rows(url: str, table=Call) -> int:
    engine = create_engine(Ledger(url, upgrade_schema=False).url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(table.__table__))
    finally:
        engine.dispose()


def call_ids(url: str) -> list[str]:
    with Ledger(url) as ledger, ledger.session() as session:
        return list(session.scalars(select(Call.call_id)))


# ---------------------------------------------------------------- the ordinary path


def test_emitted_captures_are_priced_in_the_ledger_once_and_conflicts_kept_aside(database_url, tmp_path):
    captures = [make_capture(i) for i in range(300)]
    with LedgerSink(database_url, tmp_path / "journal", batch_size=64) as sink:
        for capture in captures:
            sink.emit(capture)
        assert sink.flush(20)
        assert sink.stats.committed == 300 and sink.stats.pending == 0
        for capture in captures:  # replays of the same calls
            sink.emit(capture)
        assert sink.flush(20)
        conflicting = make_capture(0, call_id=captures[0].call_id, prompt_tokens=999)
        sink.emit(conflicting)
        assert sink.flush(20)
        stats = sink.stats
    assert (stats.emitted, stats.committed, stats.duplicates, stats.conflicts) == (601, 300, 300, 1)
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 300
        ok = session.scalars(select(Call).where(Call.call_id == captures[0].call_id)).one()
        assert ok.prompt_tokens == 194 and ok.credits_charged == Decimal("0.25")
        assert ok.credits_expected == Decimal("0.25088") and ok.pricing_class == "rounding"
        refunded = session.scalars(select(Call).where(Call.call_id == captures[2].call_id)).one()
        assert refunded.refunded and refunded.error_code == "upstream_error" and refunded.credits_expected == 0
        rejected = session.scalars(select(RejectedRecord)).all()
        assert [r.call_id for r in rejected] == [captures[0].call_id]
        assert json.loads(rejected[0].payload)["usage"]["prompt_tokens"] == 999
    assert segment_paths(tmp_path / "journal") == []  # all committed: the journal is empty


def test_a_sink_made_while_the_database_cannot_be_opened_writes_once_it_can(tmp_path):
    missing = tmp_path / "not-yet"  # SQLite cannot open a file in a directory that does not exist
    url = f"sqlite:///{missing / 'ledger.db'}"
    sink = LedgerSink(url, tmp_path / "journal", backoff=0.02, max_backoff=0.1)
    try:
        for i in range(50):
            sink.emit(make_capture(i))
        assert not sink.flush(0.5)
        assert sink.stats.pending == 50 and not sink.stats.connected
        missing.mkdir()
        assert sink.flush(20)
    finally:
        sink.close()
    assert count_rows(url) == 50


def test_database_locked_mid_load_then_free_nothing_lost_nothing_doubled(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    captures = [make_capture(i) for i in range(600)]
    sink = LedgerSink(url, tmp_path / "journal", batch_size=50, max_pending=100, busy_timeout=0.05,
                      backoff=0.02, max_backoff=0.1, max_attempts=2)
    try:
        for capture in captures[:200]:
            sink.emit(capture)
        assert sink.flush(20)
        holder = create_engine(url, isolation_level=None)
        with holder.connect() as connection:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
            for capture in captures[200:]:
                sink.emit(capture)
            assert not sink.flush(0.5)  # nothing can be written while the file is locked
            connection.exec_driver_sql("COMMIT")
        holder.dispose()
        assert sink.flush(30)
        stats = sink.stats
    finally:
        sink.close()
    assert stats.dropped_from_memory > 0  # the queue overflowed: those came back from the journal
    assert stats.committed == 600 and stats.conflicts == 0
    assert sorted(call_ids(url)) == sorted(c.call_id for c in captures)
    assert segment_paths(tmp_path / "journal") == []


@pytest.mark.postgres
def test_postgres_cut_mid_load_then_back_nothing_lost_nothing_doubled(postgres_url, tmp_path):
    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    captures = [make_capture(i) for i in range(900)]
    sink = LedgerSink(through, tmp_path / "journal", batch_size=50, max_pending=150,
                      backoff=0.02, max_backoff=0.2, max_attempts=2)
    try:
        for capture in captures[:300]:
            sink.emit(capture)
        assert sink.flush(20)
        proxy.cut()
        for capture in captures[300:600]:
            sink.emit(capture)
        wait_for(lambda: sink.stats.outages >= 1, what="the writer to meet the cut database")
        for capture in captures[600:]:  # the load goes on while the writer retries
            sink.emit(capture)
        assert not sink.flush(0.5)
        proxy.restore()
        assert sink.flush(30)
        stats = sink.stats
    finally:
        sink.close()
        proxy.cut()
    assert stats.committed == 900 and stats.conflicts == 0 and stats.dropped_from_memory > 0
    assert sorted(call_ids(postgres_url)) == sorted(c.call_id for c in captures)


@pytest.mark.postgres
def test_postgres_down_at_start_then_up(postgres_url, tmp_path):
    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.cut()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    sink = LedgerSink(through, tmp_path / "journal", backoff=0.02, max_backoff=0.2)
    try:
        for i in range(30):
            sink.emit(make_capture(i))
        assert not sink.flush(0.3)
        proxy.restore()
        assert sink.flush(20)
    finally:
        sink.close()
        proxy.cut()
    assert count_rows(postgres_url) == 30


# ---------------------------------------------------------------- shutdown and restart


def test_close_with_the_database_down_keeps_its_timeout_and_a_later_sink_writes_the_rest(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    journal = tmp_path / "journal"
    holder = create_engine(url, isolation_level=None)
    with holder.connect() as connection:
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
        sink = LedgerSink(url, journal, busy_timeout=0.2, backoff=0.02, max_backoff=0.1)
        for i in range(100):
            sink.emit(make_capture(i))
        started = time.monotonic()
        sink.close(timeout=1.0)
        # It returns at its timeout instead of waiting for the lock (held until COMMIT below, so a close that
        # waited would never return); the margin is for a loaded host, not a measure of speed.
        assert time.monotonic() - started < 1.0 + 8
        assert len(segment_paths(journal)) == 1  # left for the next replay, lock released
        connection.exec_driver_sql("COMMIT")
    holder.dispose()
    assert count_rows(url) == 0
    with LedgerSink(url, journal) as later:  # replays the orphan segment at start-up, in the background
        assert later.flush(20)
        assert later.stats.replayed == 100
    assert count_rows(url) == 100
    assert segment_paths(journal) == []


CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from factories import make_capture
    from ledger.sink.sink import LedgerSink
    sink = LedgerSink({url!r}, {journal!r})
    returned = os.open({returned!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    print("ready", flush=True)
    i = 0
    while i < {limit}:
        capture = make_capture(i)
        sink.emit(capture)
        os.write(returned, capture.call_id.encode() + b"\\n")  # the call returned to its caller
        i += 1
        {pause}
    print("done", flush=True)
    {after}
    """
)


def run_child(url, journal, returned, *, limit=10**9, pause="", after="time.sleep(60)"):
    script = CHILD.format(tests=str(ROOT / "tests"), url=url, journal=str(journal), returned=str(returned),
                          limit=limit, pause=pause, after=after)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_sigkill_mid_load_loses_no_returned_call_and_replay_counts_once(database_url, tmp_path):
    journal, returned = tmp_path / "journal", tmp_path / "returned.txt"
    Ledger(database_url).close()
    child = run_child(database_url, journal, returned, pause="time.sleep(0.001) if i % 4 == 0 else None")
    wait_for(lambda: returned.exists() and returned.read_bytes().count(b"\n") >= 500, what="500 returned calls")
    child.kill()  # SIGKILL: no atexit, no drain
    child.communicate(timeout=10)
    ids = [line for line in returned.read_text().splitlines() if line]
    assert len(ids) > 100

    first = replay_journal(database_url, journal)
    in_ledger = call_ids(database_url)
    assert first.live_segments == 0 and first.segments >= 1
    assert set(ids) <= set(in_ledger)  # every call that returned is in the ledger
    assert len(in_ledger) == len(set(in_ledger)) and len(in_ledger) - len(ids) <= 1  # at most the one in flight
    assert first.inserted + first.duplicates == first.entries - first.torn
    second = replay_journal(database_url, journal)  # nothing left: the replay deleted what it wrote
    assert (second.entries, second.inserted) == (0, 0)
    assert sorted(call_ids(database_url)) == sorted(in_ledger)


def test_replaying_the_same_journal_twice_counts_once(database_url, tmp_path):
    journal = tmp_path / "journal"
    returned = tmp_path / "returned.txt"
    child = run_child(database_url, journal, returned, limit=200, after="os._exit(0)")  # dies before writing
    child.communicate(timeout=20)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in segment_paths(journal):
        (copy / path.name).write_bytes(path.read_bytes())
    first = replay_journal(database_url, journal)
    again = replay_journal(database_url, copy)  # the same entries once more
    assert (first.entries, first.inserted) == (200, 200)
    assert (again.entries, again.inserted, again.duplicates, again.conflicts) == (200, 0, 200, 0)
    assert count_rows(database_url) == 200


def test_sigterm_drains_into_the_ledger(database_url, tmp_path):
    journal, returned = tmp_path / "journal", tmp_path / "returned.txt"
    Ledger(database_url).close()
    child = run_child(database_url, journal, returned, limit=300)
    assert child.stdout.readline().strip() == "done"
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=20)
    assert child.returncode == 128 + signal.SIGTERM
    ids = returned.read_text().split()
    assert sorted(call_ids(database_url)) == sorted(ids)
    assert segment_paths(journal) == []


def test_a_capture_that_cannot_be_encoded_still_reaches_the_writer_and_emit_never_raises(database_url, tmp_path):
    bad = Capture(call_id="bad-1", started_at=1.0, ended_at=None, first_byte_at=None, outcome="completed",
                  http_status=200, stream=False, tags={"x": object()})  # type: ignore[dict-item]
    with LedgerSink(database_url, tmp_path / "journal", writer_processes=0) as sink:  # emit is the subject, not the processes
        sink.emit(bad)
        sink.emit(None)  # type: ignore[arg-type]
        assert sink.flush(20)
        assert sink.stats.emitted == 2
    assert count_rows(database_url, RejectedRecord) + count_rows(database_url) >= 1


def test_a_forked_child_gets_a_journal_segment_and_writer_of_its_own(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with LedgerSink(url, tmp_path / "journal") as sink:
        sink.emit(make_capture(0))
        assert sink.flush(20)
        pid = os.fork()
        if pid == 0:  # the child: its captures must not land in the parent's segment counts
            for i in range(1, 11):
                sink.emit(make_capture(i))
            ok = sink.flush(20)
            sink.close()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        for i in range(11, 16):
            sink.emit(make_capture(i))
        assert sink.flush(20)
    assert os.waitstatus_to_exitcode(status) == 0
    assert count_rows(url) == 16
    assert segment_paths(tmp_path / "journal") == []


# ---------------------------------------------------------------- the writer processes


def test_writer_processes_write_batches_side_by_side_and_one_killed_loses_nothing_doubles_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    captures = [make_capture(i) for i in range(1800)]
    sink = LedgerSink(url, tmp_path / "journal", batch_size=200, max_delay=10, backoff=0.02, max_backoff=0.1)
    try:
        holder = hold_sqlite_lock(url)  # the first batches wait on the database: a backlog builds up
        for capture in captures[:1000]:
            sink.emit(capture)
        wait_for(lambda: sink.stats.outages >= 1, what="the writer to meet the locked database")
        holder.rollback()
        holder.close()
        assert sink.flush(30)
        pids = sink._writer.pids
        assert len(pids) == 2 and os.getpid() not in pids  # the backlog went to two processes of their own
        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: not _running(pids[1]), timeout=10, what="the killed writer process to end")
        for capture in captures[1000:]:  # the batch that meets the dead process is written again
            sink.emit(capture)
        assert sink.flush(30)
        stats = sink.stats
        assert pids[1] not in sink._writer.pids and len(sink._writer.pids) >= 1  # a new one in its place when needed
    finally:
        sink.close()
    assert (stats.committed, stats.duplicates, stats.conflicts, stats.pending) == (1800, 0, 0, 0)
    assert sorted(call_ids(url)) == sorted(c.call_id for c in captures)
    assert segment_paths(tmp_path / "journal") == []


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # our own child: reaped by its Popen, or a zombie until then
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_writer_processes_end_with_the_process_that_started_them(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from factories import make_capture
        from ledger.sink.sink import LedgerSink
        from ledger.store.engine import Ledger
        from factories import hold_sqlite_lock
        url = {f"sqlite:///{tmp_path / 'ledger.db'}"!r}
        Ledger(url).close()
        sink = LedgerSink(url, {str(tmp_path / 'journal')!r}, batch_size=100, max_delay=10)
        holder = hold_sqlite_lock(url)  # a backlog: both writer processes take a batch
        from factories import wait_for
        for i in range(300):
            sink.emit(make_capture(i))
        wait_for(lambda: sink.stats.outages >= 1, what="the writer to meet the locked database")
        holder.rollback()
        assert sink.flush(30)
        print(*sink._writer.pids, flush=True)
        time.sleep(60)  # until it is killed
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    assert len(pids) == 2
    child.kill()  # SIGKILL: no atexit, nobody closes the pipes but the kernel
    child.communicate(timeout=10)
    wait_for(lambda: not any(_running(p) for p in pids), timeout=15, what="the writer processes to end")
    assert count_rows(f"sqlite:///{tmp_path / 'ledger.db'}") == 300


def test_without_writer_processes_the_sink_writes_from_a_thread(tmp_path):
    from ledger.sink.writer import LedgerWriter
    from ledger.sink.processes import can_use_process

    assert not can_use_process("sqlite://") and not can_use_process("sqlite:///:memory:")
    assert can_use_process(f"sqlite:///{tmp_path / 'ledger.db'}")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with LedgerSink(url, tmp_path / "journal", writer_processes=0) as sink:
        assert isinstance(sink._writer, LedgerWriter)
        for i in range(50):
            sink.emit(make_capture(i))
        assert sink.flush(20)
    assert count_rows(url) == 50


@pytest.mark.parametrize("interpreter", ["missing", "exits"])
def test_where_no_writer_process_can_start_the_sink_writes_from_a_thread(tmp_path, monkeypatch, interpreter):
    from ledger.sink.writer import LedgerWriter

    broken = tmp_path / "python-broken"  # named like an interpreter, so the sink tries it
    if interpreter == "exits":
        broken.write_text("#!/bin/sh\nexit 1\n")
        broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with LedgerSink(url, tmp_path / "journal", backoff=0.02, max_backoff=0.1) as sink:
        for i in range(20):
            sink.emit(make_capture(i))
        assert sink.flush(20)
        assert isinstance(sink._writer, LedgerWriter)
    assert count_rows(url) == 20


def test_a_further_writer_process_that_cannot_start_leaves_the_running_one_to_write(tmp_path, monkeypatch, caplog):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    with caplog.at_level("WARNING", logger="ledger"):
        with LedgerSink(url, tmp_path / "journal", batch_size=100, max_delay=10) as sink:
            sink.emit(make_capture(0))
            assert sink.flush(20)
            [pid] = sink._writer.pids
            monkeypatch.setattr(sys, "executable", str(tmp_path / "python-missing"))  # no second one can start
            holder = hold_sqlite_lock(url)  # a backlog: a lane asks for a second process
            for i in range(1, 1000):
                sink.emit(make_capture(i))
            wait_for(lambda: "the ledger is written by 1 process(es)" in caplog.text, what="the failed start to be logged")
            holder.rollback()
            holder.close()
            assert sink.flush(30)
            assert sink._writer.pids == [pid] and sink._writer.processes == 1
    assert count_rows(url) == 1000
    assert "the ledger is written by 1 process(es)" in caplog.text


@pytest.mark.postgres
def test_a_record_the_database_refuses_is_kept_aside_and_the_writer_process_says_so(postgres_url, tmp_path, caplog):
    captures = [make_capture(i) for i in range(300)]
    captures[7] = make_capture(7, call_id="x" * 80)  # longer than calls.call_id: PostgreSQL refuses the row
    with caplog.at_level("WARNING", logger="ledger"):
        with LedgerSink(postgres_url, tmp_path / "journal", batch_size=300, max_delay=10) as sink:
            for capture in captures:
                sink.emit(capture)
            assert sink.flush(30)
            stats = sink.stats
            assert len(sink._writer.pids) == 1 and os.getpid() not in sink._writer.pids  # written by a writer process
    assert (stats.committed, stats.kept_aside, stats.pending) == (299, 1, 0)
    assert count_rows(postgres_url) == 299
    with Ledger(postgres_url) as ledger, ledger.session() as session:
        [kept] = session.scalars(select(RejectedRecord)).all()
    assert kept.call_id == "x" * 64 and kept.reason.startswith("could not be written")
    # The child's warning reached this process's log, as the parent's own.
    assert any("could not be written" in r.getMessage() and r.name == "ledger.sink.writer" for r in caplog.records)


def test_a_flush_waits_for_the_writer_without_spinning_it(tmp_path, monkeypatch):
    # While the last batches commit in the lanes, the writer thread has nothing to take: it must
    # wait for news, not loop at each notice the flush gives it (it did: a thousand loops a flush).
    from ledger.sink.writer_loop import WriterLoop

    loops = []
    background_work = WriterLoop._background_work
    monkeypatch.setattr(WriterLoop, "_background_work", lambda self: (loops.append(1), background_work(self))[1])
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    with LedgerSink(url, tmp_path / "journal", replay_on_start=False) as sink:
        looped = []
        for _ in range(3):  # (before the fix: 13,498 loops in one flush of 0.9 s, 4 in another)
            for i in range(6000):
                sink.emit(make_raw_capture(i))
            before, started = len(loops), time.monotonic()
            assert sink.flush(60)
            looped.append((len(loops) - before, time.monotonic() - started))
    batches = 6000 // sink.options.batch_size
    assert all(n <= batches + 2 * elapsed / sink.options.max_delay + 10 for n, elapsed in looped), looped


def test_as_many_writer_processes_as_set_write_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    captures = [make_capture(i) for i in range(1200)]
    with LedgerSink(url, tmp_path / "journal", batch_size=100, max_delay=10, writer_processes=3) as sink:
        holder = hold_sqlite_lock(url)
        for capture in captures:
            sink.emit(capture)
        wait_for(lambda: sink.stats.outages >= 1, what="the writer to meet the locked database")
        holder.rollback()
        holder.close()
        assert sink.flush(30)
        assert len(sink._writer.pids) == 3
        stats = sink.stats
    assert (stats.committed, stats.duplicates, stats.pending) == (1200, 0, 0)
    assert sorted(call_ids(url)) == sorted(c.call_id for c in captures)


def test_writer_processes_run_at_a_lower_priority_than_the_application(tmp_path):
    from ledger.sink.processes import NICENESS

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with LedgerSink(url, tmp_path / "journal", batch_size=10, max_delay=10) as sink:
        for i in range(10):
            sink.emit(make_capture(i))
        assert sink.flush(30)
        [pid] = sink._writer.pids
        with open(f"/proc/{pid}/stat") as stat:
            child_nice = int(stat.read().rsplit(")", 1)[1].split()[16])
    assert child_nice == min(19, os.nice(0) + NICENESS)


def test_a_replay_through_writer_processes_decodes_nothing_in_the_applications_process(tmp_path, monkeypatch):
    # The writer processes decode the lines they are sent: the application's process only reads them.
    from ledger.sink.journal import Journal
    from ledger.sink.wire import encode

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    journal = Journal(tmp_path / "journal")
    with journal.lock:
        for i in range(50):
            journal.append_locked(encode(make_raw_capture(i)))
        journal.append_locked(b"not a record\n")
    journal.close()  # nothing committed: an orphan for the next sink

    def refuse(*args, **kwargs):
        raise AssertionError("a journal line was decoded in the application's process")

    monkeypatch.setattr("ledger.sink.segments.decode", refuse)
    monkeypatch.setattr("ledger.sink.writer.decode", refuse)
    sink = LedgerSink(url, tmp_path / "journal", writer_processes=1, handle_sigterm=False)
    try:
        assert sink.flush(60)
        stats = sink.stats
    finally:
        sink.close()
    assert (stats.replayed, stats.kept_aside, count_rows(url)) == (51, 1, 50)
    assert count_rows(url, RejectedRecord) == 1


def test_records_neither_journalled_nor_written_are_said_at_error_level_kept_trying_and_counted_at_close(tmp_path, caplog):
    # The journal cannot be opened (a file where its folder should be) and the database is down.
    (tmp_path / "journal").write_text("in the way")
    caplog.set_level(logging.INFO)
    sink = LedgerSink("postgresql://nobody@127.0.0.1:9/none", tmp_path / "journal", backoff=0.01, max_backoff=0.05,
                      handle_sigterm=False, writer_processes=0)  # the writer's processes are not the subject here
    for i in range(5):
        sink.emit(make_capture(i))
    wait_for(lambda: sink.stats.outages >= 3, what="the writer to keep trying")  # it goes on trying while the process lives
    assert sink.stats.pending == 5
    stats = sink.close(timeout=0.2)
    assert (stats.lost, stats.pending, stats.committed) == (5, 5, 0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("records are held in memory only" in m for m in errors)  # the journal could not be opened
    assert any("5 record(s) are in no journal" in m for m in errors)  # while the database is down
    assert any("5 record(s) could not be saved" in m for m in errors)  # and at close
    assert not any("records wait in the journal" in m for m in errors)  # they do not


def test_a_journal_that_could_not_be_opened_is_tried_again_and_then_used(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    blocker = tmp_path / "journal"
    blocker.write_text("in the way")
    with LedgerSink(url, blocker, handle_sigterm=False, writer_processes=0) as sink:  # the journal's subject, not the processes
        sink._intake._journal_retry_at = 0  # (the next background step tries again)
        blocker.unlink()
        wait_for(lambda: sink._intake.journal is not None, what="the journal to open")
        sink.emit(make_capture(1))
        assert sink.flush(20)
        assert sink.stats.committed == 1
