"""Where a report file lands: the temporary files of a writer that died are swept at the next write, what
`--output` names is written as a file (through a symlink) and never replaces a device, a FIFO or a socket."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from ledger_rows import call_values, insert

from ledger.cli import main
from ledger.store.engine import Ledger

HOLD_PARTS = """
import sys
from pathlib import Path
from ledger.reports.files import atomic_path
path = Path(sys.argv[1])
with atomic_path(path) as final, atomic_path(path.with_name(path.name + ".draft"), keep=False) as draft:
    final.write_bytes(b"half a workbook")
    print("writing", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def ledger_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:
        insert(ledger, [call_values(started_at=datetime(2026, 11, 3, tzinfo=timezone.utc))])
    return url


def report(url, output, fmt="xlsx") -> tuple[int, str]:
    out = io.StringIO()
    return main(["--database-url", url, "report", "--period", "2026-11", "--format", fmt, "--output", str(output)], out=out), out.getvalue()


def writer_holding_parts(path):
    """A process in the middle of writing `path` (its two temporary files made), waiting on its standard input."""
    child = subprocess.Popen([sys.executable, "-c", HOLD_PARTS, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"writing\n"
    return child


def parts(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".part"))


def test_the_temporary_files_of_a_killed_writer_are_swept_at_the_next_write_and_a_live_ones_kept(ledger_url, tmp_path):
    target = tmp_path / "november.xlsx"
    killed = writer_holding_parts(target)
    left = parts(tmp_path, target.name)
    assert len(left) == 2
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdin.close(), killed.stdout.close()
    assert parts(tmp_path, target.name) == left  # a SIGKILL runs no cleanup
    alive = writer_holding_parts(target)
    try:
        kept = sorted(set(parts(tmp_path, target.name)) - set(left))
        code, text = report(ledger_url, target)
        assert code == 0, text
        assert parts(tmp_path, target.name) == kept  # the live writer's two, not the dead one's
        for name in left:
            assert f"removed {tmp_path / name} (left by process {killed.pid}, which has ended)" in text, text
    finally:
        alive.stdin.close()
        alive.wait()
        alive.stdout.close()
    assert parts(tmp_path, target.name) == []


def test_a_temporary_file_no_process_can_be_named_for_is_swept_only_when_a_day_old(ledger_url, tmp_path):
    """Another host's writer, or an older version's name: its age is all there is to go by."""
    target = tmp_path / "november.csv"
    recent, old = tmp_path / ".november.csv.k2j4_x.part", tmp_path / ".november.csv.draft.zz91.part"
    other = tmp_path / ".december.csv.abcd.part"  # another output's: not this write's business
    for path in (recent, old, other):
        path.write_text("half")
    day_ago = time.time() - 25 * 3600
    for path in (old, other):
        os.utime(path, (day_ago, day_ago))
    code, text = report(ledger_url, target, "csv")
    assert code == 0, text
    assert recent.exists() and other.exists() and not old.exists()
    assert f"removed {old} (untouched for more than 24 hours)" in text
