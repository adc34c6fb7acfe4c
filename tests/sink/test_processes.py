"""Writer processes: their pipe's frames, a batch written in a child, an outage and a dead child reported."""

from __future__ import annotations

import os

import pytest
from factories import make_capture

from ledger.errors import DatabaseError
from ledger.sink.processes import ProcessWriter, _recv, _send, can_use_process
from ledger.sink.wire import encode
from ledger.sink.writer import BatchResult, LedgerWriter


def test_a_frame_carries_any_payload_whole_through_a_pipe():
    down, up = os.pipe()
    try:
        for payload in (b"", b"x", b"\0\n" * 50_000):  # a frame longer than the pipe's buffer needs a reader
            import threading

            got = []
            reader = threading.Thread(target=lambda: got.append(_recv(down)))
            reader.start()
            _send(up, payload)
            reader.join(10)
            assert got == [payload]
    finally:
        os.close(down)
        os.close(up)


def test_in_memory_ledgers_and_foreign_interpreters_get_a_thread_instead(monkeypatch, tmp_path):
    assert not can_use_process("sqlite://") and not can_use_process("sqlite:///:memory:")
    assert can_use_process(f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setattr("sys.executable", "/usr/bin/uwsgi")
    assert not can_use_process(f"sqlite:///{tmp_path / 'ledger.db'}")


def test_a_child_writes_a_batch_and_a_killed_one_is_an_outage_then_replaced(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = ProcessWriter(LedgerWriter(url), processes=1)
    try:
        lines = [encode(make_capture(i)) for i in range(5)]
        assert writer.write([(None, line, None) for line in lines]) == BatchResult(5, 0, 0, 0)
        [pid] = writer.pids
        os.kill(pid, 9)
        with pytest.raises(DatabaseError, match="writer process stopped"):
            writer.write([(None, encode(make_capture(5)), None)])
        assert writer.write([(None, encode(make_capture(5)), None)]) == BatchResult(1, 0, 0, 0)  # a new child
        assert writer.pids and writer.pids != [pid]
        assert writer.write([(None, line, None) for line in lines]) == BatchResult(0, 5, 0, 0)  # replays count once
    finally:
        writer.close()
    assert writer.pids == []


def test_a_database_that_cannot_be_reached_is_an_outage_from_the_child(tmp_path):
    writer = ProcessWriter(LedgerWriter("postgresql://nobody@127.0.0.1:9/none"), processes=1)
    try:
        with pytest.raises(DatabaseError):
            writer.connect()
    finally:
        writer.close()
