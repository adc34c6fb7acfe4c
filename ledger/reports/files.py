"""Report files: named after the report and period, written to a temporary name beside the target, renamed when whole.

A report that fails half-way leaves no file under its name (nor a stray
temporary one); a reader never sees a half-written report. A writer killed
outright leaves its temporary files: the next write of the same file sweeps them.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from ..accounting.periods import Period
from ..errors import ReportError

EXTENSIONS = {"table": "txt", "csv": "csv", "json": "json", "xlsx": "xlsx", "focus": "focus.csv"}
PART = ".part"
STALE_PART_SECONDS = 24 * 3600  # far past any report's writing time: a writer this silent is gone


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def report_file_name(name: str, period: Period, fmt: str, by: tuple[str, ...] = ()) -> str:
    """`spend-2026-11-Europe-Berlin-by-project.xlsx`: what it is, which period, where, how grouped."""
    label = period.label if period.kind != "range" else f"{period.start:%Y%m%dT%H%M}-{period.end:%Y%m%dT%H%M}"
    parts = [name, label, period.zone] + (["by", *by] if by else [])
    return _safe("-".join(_safe(p) for p in parts)) + "." + EXTENSIONS[fmt]


def output_path(output: str | None, reports_dir: str, file_name: str) -> Path:
    """`output` as given (its folder must exist), else `file_name` in `reports_dir` (made when missing).

    What is there already must be a regular file (or a symlink to one): a FIFO, a device or a socket is refused.
    """
    if output:
        path = Path(output)
        if path.is_dir():
            return check_target(path / file_name)
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ReportError(f"no such folder for the report: {folder}")
        return check_target(path)
    folder = Path(reports_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot make the reports folder {folder}: {exc.strerror or exc}") from None
    return check_target(folder / file_name)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def check_target(path: Path) -> Path:
    """`path` when a report may take its place: nothing there yet, or a regular file (a symlink's target counts)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():  # written through, it would make a file wherever the link points
            raise ReportError(f"{path} is a symlink to nothing ({os.readlink(path)}): name the file itself") from None
        return path
    except OSError as exc:
        raise ReportError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")
        raise ReportError(f"{path} is {kind}, not a regular file or a folder: a report never replaces it")
    return path


@contextmanager
def atomic_path(path: Path, keep: bool = True) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write the report to; renamed to `path` when the block ends without error.

    `keep=False`: a scratch file, removed whatever happens. A symlink at `path` is written through: the
    temporary file goes beside its target, which it replaces.
    """
    if keep:
        path = _written(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.{_writer()}.", suffix=PART, dir=folder)
    except OSError as exc:
        raise ReportError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if not keep:
            temporary.unlink(missing_ok=True)
            return
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        check_target(path)  # again, at the last moment: never renamed over a device that appeared meanwhile
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file object on a temporary name beside `path`, renamed to `path` when the block ends without error."""
    with atomic_path(path) as temporary:
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as file:
            yield file


def _written(path: Path) -> Path:
    """The file a write of `path` replaces: a symlink is written through (the link stays, its target is replaced)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# ---------------------------------------------------------------- stale temporary files


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname())[:32]


def _writer() -> str:
    """Who writes a temporary file, in its name: `pid@host` (a pid means nothing on another host)."""
    return f"{os.getpid()}@{_host()}"


def _ended(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process is there
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process, alive
        pass
    return False


def _why_stale(part: Path, now: float) -> str | None:
    """Why `part` is a dead writer's: its process has ended on this host, or it has not been touched for a day."""
    writer = re.search(r"\.(\d+)@([A-Za-z0-9_]*)\.[^.]*\.part$", part.name)
    if writer and writer[2] == _host() and _ended(int(writer[1])):
        return f"left by process {writer[1]}, which has ended"
    try:
        if now - part.stat().st_mtime > STALE_PART_SECONDS:
            return f"untouched for more than {STALE_PART_SECONDS // 3600} hours"
    except FileNotFoundError:  # its writer finished meanwhile
        pass
    return None


def _parts_of(path: Path) -> list[Path]:
    folder = path.parent if str(path.parent) else Path(".")
    try:
        return [p for p in folder.iterdir() if p.name.startswith(f".{path.name}.") and p.name.endswith(PART)]
    except OSError:
        return []


def sweep_stale_parts(path: Path) -> list[str]:
    """Remove the temporary files a dead writer of `path` left beside it (its own and its drafts'); one line for each.

    Only this output's, and only a writer's that is certainly gone: a live one (another report of the same
    file, now) keeps its files.
    """
    removed, now = [], time.time()
    for part in sorted({*_parts_of(path), *_parts_of(_written(path))}):
        reason = _why_stale(part, now)
        if reason is None:
            continue
        try:
            part.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            removed.append(f"cannot remove {part} ({reason}): {exc.strerror or exc}")
            continue
        removed.append(f"removed {part} ({reason})")
    return removed
