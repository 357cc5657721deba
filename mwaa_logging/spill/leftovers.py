"""Spill files a writer left unfinished: ``<name>.jsonl.gz.tmp`` of a process killed while it wrote (SIGKILL, OOM,
a machine stopped). Their records exist nowhere else, so the reader and replay take them, but only once their
writer is gone: a file being written right now is not theirs to read or move.

A file is named ``<UTC time>-<host>-<pid>-<n>`` (:func:`mwaa_logging.spill.layout.object_name`; in a container's
pid namespace, ``<host>`` names that namespace too). Its writer is gone when the file names this host (and pid
namespace) and its pid runs no process, or a process that started after the file was last written (the pid was
reused), or a zombie. A file of another host or pid namespace (a shared volume), or where this host cannot tell
(no ``/proc``), is taken once it has not changed for :data:`UNASKABLE_AFTER_S`: writing one takes a second or so.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

from mwaa_logging.spill.layout import EXPORT_PREFIX, SUFFIX, TMP_SUFFIX, writer_host

#: How long a spill file being written whose writer cannot be asked stays untouched before it counts as left.
UNASKABLE_AFTER_S = 3600.0
#: A process that started at most this long after the file's last write may be its writer (clock ticks, rounding).
_START_SLACK_S = 1.0
_NAME = re.compile(r"\d{8}T\d{6}-(?P<host>.+)-(?P<pid>\d+)-\d+" + re.escape(SUFFIX + TMP_SUFFIX))


def is_left_behind(path: Path, *, now: Callable[[], float] = time.time) -> bool:
    """Whether ``path``, a spill file being written (``.tmp``), is one its writer left: see the module doc."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    match = _NAME.fullmatch(path.name)
    if match is not None and match["host"] == writer_host():
        gone = _writer_gone(int(match["pid"]), info.st_mtime)
        if gone is not None:
            return gone
    return now() - info.st_mtime > UNASKABLE_AFTER_S


def _writer_gone(pid: int, written: float) -> bool | None:
    """Whether the process of this host that had ``pid`` when it last wrote at ``written`` (s since the epoch) is
    gone; None where this host cannot tell (no ``/proc``)."""
    if pid == os.getpid():
        return False
    if pid <= 0 or not _runs(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, IndexError, ValueError, StopIteration):  # no /proc (macOS), one that hides other users'
        return None if _runs(pid) else True  # processes (hidepid), or it ended meanwhile
    if fields[0] in (b"Z", b"X"):  # killed, not yet reaped by its parent
        return True
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started > written + _START_SLACK_S  # a later process that got the pid again


def spill_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The spill files in ``folder`` (and below it, ``recursive``), with those a writer left unfinished
    (:func:`is_left_behind`), in name order."""
    find = folder.rglob if recursive else folder.glob
    files = list(find("*" + SUFFIX))
    files += [path for path in find("*" + SUFFIX + TMP_SUFFIX) if is_left_behind(path)]
    return sorted(path for path in files if not path.name.startswith(EXPORT_PREFIX))


def _runs(pid: int) -> bool:
    """Whether a process (maybe a zombie) has ``pid``; True where this cannot be asked."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True
