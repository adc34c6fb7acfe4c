"""The journal: whole lines, per-process locked segments, deletion only after commit, torn lines kept aside."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import select

from ledger.sink.capture import Capture, RawCapture
from ledger.sink.wire import decode, encode
from ledger.store.engine import Ledger
from ledger.sink.journal import Journal
from ledger.sink.segments import TORN_LINE, UNREADABLE_LINE, claim_orphans, live_segments, segment_paths
from ledger.store.models import Call, RejectedRecord
from ledger.sink.writer import replay_journal
from factories import make_capture

ROOT = Path(__file__).resolve().parents[2]


def append(journal: Journal, capture):
    with journal.lock:
        return journal.append_locked(encode(capture))


def test_each_capture_is_one_whole_record_that_decodes_back(tmp_path):
    journal = Journal(tmp_path)
    captures = [make_capture(i) for i in range(6)]
    for capture in captures:
        append(journal, capture)
    journal.close()  # nothing committed: the segment stays, unlocked
    claimed = [(c.path, list(c.entries())) for c in claim_orphans(tmp_path)]
    [(path, entries)] = claimed
    assert path.read_bytes() == b"".join(encode(c) for c in captures)  # the records, whole, in order
    assert [e.capture for e in entries] == captures


def test_a_payload_framed_as_it_is_copied_is_the_record_encode_makes(tmp_path):
    from ledger.sink.wire import payload
    from factories import make_raw_capture

    journal = Journal(tmp_path, segment_bytes=2 * 1024)  # small: the records fill segments too
    captures = [make_raw_capture(i, call_id=f"p-{i}") for i in range(12)] + [make_capture(i) for i in range(3)]
    with journal.lock:
        for capture in captures:
            journal.append_record_locked(payload(capture))
    journal.close()
    written = b"".join(path.read_bytes() for path in segment_paths(tmp_path))
    assert written == b"".join(encode(c) for c in captures)
    assert len(segment_paths(tmp_path)) > 1


def read_segment(tmp_path: Path, data: bytes) -> list:
    """The entries read from a segment file holding `data`."""
    from ledger.sink.segments import read_entries

    path = tmp_path / "seg-00000000000000000001-1-abcd.seg"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(read_entries(fd))
    finally:
        os.close(fd)


def odd_capture() -> Capture:
    return make_capture(1)._replace(
        request_body=b"\n\x00\xff{", body=b"\r\n", payloads=(b"data", b"\n\n"), project="caf\u00e9\tx\n",
        end_user="\udcff", tags=MappingProxyType({"b": "2", "a": "\n"}), notes=("body_too_large",), ended_at=None,
        first_byte_at=None, http_status=None, stream=None, key_fingerprint=None, key_last4=None,
    )


def test_the_journal_record_keeps_the_captures_fields_in_their_order():
    import marshal

    from ledger.sink.wire import payload

    capture = odd_capture()
    fields = marshal.loads(payload(capture))
    assert fields == tuple(getattr(capture, name) if name != "tags" else dict(capture.tags) for name in Capture._fields)
    assert type(fields[Capture._fields.index("tags")]) is dict


def test_any_capture_is_one_record_of_its_own_and_decodes_back_exactly(tmp_path):
    from ledger.sink.wire import framed_size

    captures = [make_capture(i) for i in range(3)] + [odd_capture()]
    records = [encode(capture) for capture in captures]
    for capture, record in zip(captures, records):
        assert record[:1] == b"M" and framed_size(record) == len(record) and record.endswith(b"\n")
        assert decode(record) == capture._replace(tags=dict(capture.tags))
    # Newlines and NULs inside a record (the odd capture has both) never split it when a segment is read.
    assert b"\n" in records[-1][:-1] and b"\0" in records[-1]
    entries = read_segment(tmp_path, b"".join(records) + b"\0" * 100)
    assert [e.line for e in entries] == records and [e.problem for e in entries] == [None] * 4


def raw_capture(n: int) -> RawCapture:
    """What the recorder emits for a short stream: the bytes as they came, attribution as it stood."""
    sse = (b'data: {"id":"chatcmpl-r","model":"gemini-3.1-pro-preview","choices":[]}\n\n'
           b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30},'
           b'"credits_consumed":0.02}\n\ndata: [DONE]\n\n')
    return RawCapture(
        f"raw-{n}", 1_700_000_000.0 + n, 1_700_000_001.0 + n, 1_700_000_000.5 + n, "aborted", 200,
        b'{"model":"gemini-3.1-pro","stream":true}', b"text/event-stream", None,
        [sse[:7], sse[7:100], sse[100:]], b"2", "f" * 32, "0001", ("search", "u-1", {"team": "a"}),
        {b"x-ledger-user": b"u-2", b"x-ledger-tags": b"feature=summary"}, ("request_body_unread",),
    )


def test_a_raw_capture_is_one_record_that_settles_into_the_capture_the_writer_reads(tmp_path):
    from ledger.sink.capture import as_capture

    raws = [raw_capture(i) for i in range(3)]
    records = [encode(raw) for raw in raws]
    entries = read_segment(tmp_path, b"".join(records) + b"\0" * 64)
    assert [e.line for e in entries] == records and [e.problem for e in entries] == [None] * 3
    assert [e.capture for e in entries] == [as_capture(raw) for raw in raws]
    capture = entries[0].capture
    # closed after [DONE] is completed; the header's user and tags win over the context's, tags merge
    assert (capture.outcome, capture.stream, capture.saw_done, capture.attempt) == ("completed", True, True, 2)
    assert (capture.project, capture.end_user, capture.tags) == ("search", "u-2", {"team": "a", "feature": "summary"})
    assert capture.body is None and len(capture.payloads) == 2 and capture.notes == ("request_body_unread",)


def test_a_raw_record_of_the_right_size_with_wrong_pieces_is_kept_aside_unread(tmp_path):
    import marshal
    import struct

    bad = tuple(raw_capture(1)[:7]) + ("a content type that is not bytes", None, [b"x"]) + tuple(raw_capture(1)[10:])
    payload = marshal.dumps(bad, 2)
    record = b"M" + struct.pack("<I", len(payload)) + payload + b"\n"
    entries = read_segment(tmp_path, record + encode(raw_capture(2)))
    assert [e.problem for e in entries] == [UNREADABLE_LINE, None] and entries[1].capture.call_id == "raw-2"


def legacy_line(capture: Capture) -> bytes:
    """A journal line as versions before 2026-11-25 wrote it: a JSON object, bytes as latin-1 text."""
    obj = {"i": capture.call_id, "s": capture.started_at, "e": capture.ended_at, "f": capture.first_byte_at,
           "o": capture.outcome, "h": capture.http_status, "st": capture.stream,
           "q": capture.request_body.decode("latin-1"), "a": capture.attempt, "k": capture.key_fingerprint,
           "k4": capture.key_last4, "pr": capture.project, "u": capture.end_user, "t": dict(capture.tags)}
    if capture.body is not None:
        obj["b"] = capture.body.decode("latin-1")
    if capture.payloads:
        obj["p"] = [p.decode("latin-1") for p in capture.payloads]
    if capture.saw_done:
        obj["d"] = True
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def test_a_segment_of_an_earlier_version_in_json_lines_is_replayed(database_url, tmp_path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    captures = [make_capture(i) for i in range(6)]
    assert decode(legacy_line(captures[0])) == captures[0]
    (journal_dir / "seg-00000000000000000001-1-00000000.jsonl").write_bytes(b"".join(map(legacy_line, captures)))
    result = replay_journal(database_url, journal_dir)
    assert (result.entries, result.inserted, result.torn) == (6, 6, 0)
    assert segment_paths(journal_dir) == []


def test_a_segment_of_the_previous_version_in_pickled_lines_is_replayed_with_new_records_after_it(database_url, tmp_path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    captures = [make_capture(i) for i in range(6)]
    pickled = [b"P" + base64.b64encode(pickle.dumps(tuple(c._replace(tags=dict(c.tags))), protocol=5)) + b"\n" for c in captures[:4]]
    assert [decode(line) for line in pickled] == captures[:4]
    # A process of the previous version wrote the lines; one of this version appended records after them.
    (journal_dir / "seg-00000000000000000001-1-00000000.seg").write_bytes(
        b"".join(pickled) + b"".join(encode(c) for c in captures[4:]) + b"\0" * 512)
    result = replay_journal(database_url, journal_dir)
    assert (result.entries, result.inserted, result.torn) == (6, 6, 0)
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert sorted(session.scalars(select(Call.call_id)).all()) == sorted(c.call_id for c in captures)
    assert segment_paths(journal_dir) == []


def test_a_line_whose_pickle_names_a_class_or_function_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    for payload in (pickle.dumps((Evil(),)), pickle.dumps(Decimal("1")), b"\x80\x05garbage", b""):
        with pytest.raises(ValueError):
            decode(b"P" + base64.b64encode(payload) + b"\n")
    with pytest.raises(ValueError):
        decode(b"P!!not base64\n")
    with pytest.raises(ValueError):
        decode(b"P" + base64.b64encode(pickle.dumps(("too", "short"))) + b"\n")
    assert not marker.exists()


def test_a_segment_leaves_the_journal_only_when_sealed_and_all_committed(tmp_path):
    journal = Journal(tmp_path, segment_bytes=1000)
    first = append(journal, make_capture(1))
    append(journal, make_capture(2))
    journal.settle({first: 1})
    journal.rotate_if_due(idle_seconds=60)  # past segment_bytes: sealed, but kept until all committed
    assert first.sealed and first.path.exists()
    journal.settle({first: 1})
    assert not first.path.exists() and first.done
    assert [p.name for p in segment_paths(tmp_path)] == [journal.active.path.name]
    journal.close()
    assert segment_paths(tmp_path) == []  # the empty active segment goes at close


def test_a_live_segment_is_not_replayed_and_an_orphan_is(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    journal_dir = tmp_path / "journal"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from ledger.sink.wire import encode
        from ledger.sink.journal import Journal
        from factories import make_capture
        journal = Journal({str(journal_dir)!r})
        with journal.lock:
            for i in range(5):
                journal.append_locked(encode(make_capture(i)))
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert live_segments(journal_dir) == 1
        held = replay_journal(url, journal_dir)
        assert (held.segments, held.entries, held.live_segments) == (0, 0, 1)
        assert len(segment_paths(journal_dir)) == 1
    finally:
        child.communicate("\n", timeout=10)  # the child exits without closing: its segment is an orphan
    orphan = replay_journal(url, journal_dir)
    assert (orphan.segments, orphan.entries, orphan.inserted, orphan.live_segments) == (1, 5, 5, 0)
    assert segment_paths(journal_dir) == []


def test_a_torn_last_line_is_skipped_counted_and_kept_aside(database_url, tmp_path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    whole = [encode(make_capture(i)) for i in range(3)]
    torn = encode(make_capture(3))[:57]  # the process died in the middle of this write
    (journal_dir / "seg-00000000000000000001-1-00000000.seg").write_bytes(b"".join(whole) + b"not json\n" + torn)
    result = replay_journal(database_url, journal_dir)
    assert (result.entries, result.inserted, result.torn) == (5, 3, 2)
    assert "2 torn or unreadable" in result.summary()
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert len(session.scalars(select(Call.call_id)).all()) == 3
        kept = {r.reason: r.payload for r in session.scalars(select(RejectedRecord))}
    assert kept == {UNREADABLE_LINE: "not json\n", TORN_LINE: "base64:" + base64.b64encode(torn).decode()}  # the bytes, exactly
    assert segment_paths(journal_dir) == []


def test_a_line_holding_nul_bytes_is_kept_aside_exactly_and_the_replay_goes_on(database_url, tmp_path):
    # A SIGKILL can leave a torn record starting with a zero byte, and a line may hold NUL: PostgreSQL
    # refuses NUL in text, so keeping such a line aside once failed the replay of its whole batch.
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    whole = [encode(make_capture(i)) for i in range(3)]
    old_line = b'{"call_id": "x\x00"}\n'  # a line of an earlier version, unreadable
    torn = b"\x00R\x03"
    (journal_dir / "seg-00000000000000000001-1-00000000.seg").write_bytes(
        whole[0] + old_line + whole[1] + whole[2] + torn + b"\x00" * 40)
    result = replay_journal(database_url, journal_dir)
    assert (result.inserted, result.torn) == (3, 2)
    with Ledger(database_url) as ledger, ledger.session() as session:
        assert len(session.scalars(select(Call.call_id)).all()) == 3
        kept = {r.reason: r.payload for r in session.scalars(select(RejectedRecord))}
    encoded = {reason: "base64:" + base64.b64encode(line).decode() for reason, line in
               ((UNREADABLE_LINE, old_line), (TORN_LINE, torn))}
    assert kept == encoded  # the bytes, exactly
    assert segment_paths(journal_dir) == []


def test_replay_of_a_missing_or_empty_journal_touches_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = replay_journal(url, tmp_path / "no-journal")
    assert result.entries == 0 and "replayed 0" in result.summary()
    assert not (tmp_path / "ledger.db").exists() and not (tmp_path / "no-journal").exists()


def test_a_killed_process_segment_ends_in_zeros_which_reading_skips_and_a_torn_record_is_kept(tmp_path):
    from ledger.sink.segments import read_entries

    captures = [make_capture(i) for i in range(3)]
    lines = [encode(c) for c in captures]
    # A copy cut short by SIGKILL: the first byte is copied last, so it is still zero; and a record
    # whose frame runs into the zeros of the unused space (a copy that lost its end some other way).
    for torn in (b"\0" + lines[0][1:40], lines[0][:40]):
        path = tmp_path / "seg-00000000000000000001-1-abcd.seg"
        path.write_bytes(b"".join(lines) + torn + b"\0" * 4096)
        fd = os.open(path, os.O_RDONLY)
        try:
            entries = list(read_entries(fd))
        finally:
            os.close(fd)
        assert [e.capture for e in entries[:3]] == captures
        assert [e.problem for e in entries] == [None, None, None, TORN_LINE]
        assert entries[3].line == torn.rstrip(b"\0")  # what was written (a zero written last reads as unused space)


def test_an_append_copies_the_first_byte_of_a_record_last(tmp_path):
    """What makes a record cut short by SIGKILL read as torn, never as a record: its marker comes last."""
    journal = Journal(tmp_path)
    record = encode(make_capture(1))
    writes = []

    class Watched:
        def __init__(self, mm):
            self.mm = mm

        def __setitem__(self, where, data):
            writes.append((where, data if isinstance(data, int) else bytes(data)))
            self.mm[where] = data

    with journal.lock:
        journal.active.mm = Watched(journal.active.mm)
        try:
            journal.append_locked(record)
        finally:
            journal.active.mm = journal.active.mm.mm
    assert writes == [(slice(1, len(record)), record[1:]), (0, record[0])]
    assert journal.active.mm[: len(record)] == record
    journal.close()


def test_a_line_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path):
    journal = Journal(tmp_path, segment_bytes=200)
    small_capture, big_capture = make_capture(1), make_capture(2, prompt_tokens=1)._replace(body=b"x" * 600)
    small = append(journal, small_capture)
    big_line = encode(big_capture)
    assert len(big_line) > 400
    with journal.lock:
        big = journal.append_locked(big_line)
    assert big is not small and small.sealed and big.capacity >= len(big_line)
    assert small.path.stat().st_size == small.size  # sealed: truncated to its lines
    journal.close()
    entries = [e for c in claim_orphans(tmp_path) for e in c.entries()]
    assert [e.capture for e in entries] == [small_capture, big_capture]


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def test_pages_mapped_ahead_spare_the_appends_their_page_faults_and_change_no_byte(tmp_path):
    journal = Journal(tmp_path, segment_bytes=4 * 1024 * 1024)
    lines = [encode(make_capture(i)) for i in range(600)]
    size = sum(len(line) for line in lines[:300])
    assert size > 40 * 4096  # the first half of the lines covers forty pages and more

    def appended(part) -> int:
        before = _minor_faults()
        with journal.lock:
            for line in part:
                journal.append_locked(line)
        return _minor_faults() - before

    cold = appended(lines[:300])  # nobody mapped these pages: each first write faults
    journal.prepare_ahead()  # twice what was appended since the last look: the next lines' pages
    if not journal._prepare:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE: appends fault their own pages")
    assert journal.active.prepared >= 2 * size
    warm = appended(lines[300:])
    assert cold >= size // 8192 and warm <= 4, (cold, warm)  # a page fault at least every other page, then none
    journal.close()
    [claimed] = list(claim_orphans(tmp_path))
    raw = claimed.path.read_bytes()
    claimed.release()
    assert raw == b"".join(lines)  # mapping ahead wrote nothing, and the sealed file is its lines alone


def test_mapping_ahead_while_appends_rotate_segments_loses_and_tears_no_line(tmp_path):
    import threading

    journal = Journal(tmp_path, segment_bytes=64 * 1024)
    captures = [make_capture(i) for i in range(1500)]
    done = threading.Event()

    def prepare() -> None:
        while not done.is_set():
            journal.prepare_ahead()

    thread = threading.Thread(target=prepare)
    thread.start()
    try:
        for capture in captures:
            append(journal, capture)
            if journal.active.size >= journal.segment_bytes:
                with journal.lock:
                    journal._rotate_locked()  # as the writer thread seals a full segment
    finally:
        done.set()
        thread.join()
    journal.close()
    entries = [e for c in claim_orphans(tmp_path) for e in c.entries()]
    assert len(journal.segments) == 0 and len(segment_paths(tmp_path)) > 10
    assert sorted((e.capture for e in entries), key=lambda c: c.started_at) == captures
    assert all(e.problem is None for e in entries)
