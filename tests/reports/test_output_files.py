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


def refused(url, output, capsys, fmt="csv") -> str:
    code, text = report(url, output, fmt)
    err = capsys.readouterr().err
    assert code == 1 and text == "", (text, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_symlink_is_written_through_its_target_stays_a_link(ledger_url, tmp_path, fmt):
    """A stable name (`latest`) kept as a link to the real file: the report replaces the file it points to."""
    (tmp_path / "archive").mkdir()
    target = tmp_path / "archive" / f"november.{fmt}"
    target.write_text("last month's")
    link = tmp_path / f"latest.{fmt}"
    link.symlink_to(target)
    code, text = report(ledger_url, link, fmt)
    assert code == 0 and text == f"wrote {link}\n", text
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:2] == (b"PK" if fmt == "xlsx" else b"sc")  # a workbook (a zip), a CSV's header
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_a_symlink_to_nothing_is_refused(ledger_url, tmp_path, capsys):
    link = tmp_path / "latest.csv"
    link.symlink_to(tmp_path / "gone" / "november.csv")
    assert "is a symlink to nothing" in refused(ledger_url, link, capsys)
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def special_files(folder):
    """A FIFO, a socket and (as root) a character device like /dev/null, made in `folder`: (path, kind, check)."""
    import socket
    import stat

    found = []
    fifo = folder / "fifo.csv"
    os.mkfifo(fifo)
    found.append((fifo, "a FIFO", stat.S_ISFIFO))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock.csv"))
    listener.close()
    found.append((folder / "sock.csv", "a socket", stat.S_ISSOCK))
    if os.geteuid() == 0:
        os.mknod(folder / "null.csv", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        found.append((folder / "null.csv", "a character device", stat.S_ISCHR))
    return found


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "focus"])
def test_a_fifo_a_socket_or_a_device_is_refused_and_stays_what_it_was(ledger_url, tmp_path, capsys, fmt):
    folder = tmp_path / "out"
    folder.mkdir()
    for path, kind, is_kind in special_files(folder):
        before = sorted(p.name for p in folder.iterdir())
        err = refused(ledger_url, path, capsys, fmt)
        assert f"{path} is {kind}, not a regular file or a folder" in err, err
        assert is_kind(path.lstat().st_mode), kind
        assert sorted(p.name for p in folder.iterdir()) == before  # no temporary file left either
    links = tmp_path / "links"
    links.mkdir()
    for path, kind, _ in special_files(links):
        link = tmp_path / f"to-{path.name}"
        link.symlink_to(path)
        assert f"{link} is {kind}" in refused(ledger_url, link, capsys, fmt)


def test_the_named_file_in_an_output_folder_is_held_to_the_same_rule(ledger_url, tmp_path, capsys):
    os.mkfifo(tmp_path / "spend-2026-11-UTC.csv")
    assert "spend-2026-11-UTC.csv is a FIFO" in refused(ledger_url, tmp_path, capsys)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can replace /dev/null (or make a device to try first)")
def test_dev_null_is_refused_and_stays_a_device(ledger_url, tmp_path, capsys):
    import stat

    os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    assert "is a character device" in refused(ledger_url, tmp_path / "null", capsys)  # code that would harm it stops here
    before = os.stat("/dev/null")
    assert "/dev/null is a character device" in refused(ledger_url, "/dev/null", capsys)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
