"""A task process's lines on local disk until they settle: what Airflow 2's supervisor ships if that process dies.

On Airflow 2 the ``--raw`` task process ships its own lines; SIGKILL (the OOM killer) loses what it had queued. Its
handler therefore appends each line it queued to a write-ahead file with one ``os.write`` (the kernel keeps it when
the process is killed), and whenever events settle (a delivered batch, a spill) the sender overwrites a small mark
file beside it: ``<offset> <oldest>`` says that each line among the file's first ``offset`` bytes is delivered or
spilled unless its timestamp is ``oldest`` or later (``-1``: all of them are). The offset is read before the channels
are looked at and a line is written after it was queued, so a mark never covers a line still pending. The
supervisor, when it closes, ships what no mark covers in the files of processes that are gone (:func:`dead_logs`),
with the lines' own timestamps, then removes them. A line may be shipped twice (the reader drops exact
duplicates), never lost.

Files: ``<directory>/<key>.<pid>.wal`` (lines ``<timestamp ms> <message as a JSON string>``) and ``….mark``.
:func:`write_ahead` and :func:`queue_dead_logs` do both halves on a handler: our Airflow 2 task handler's, and the
watchtower shim's inside the provider's or MWAA's (``mwaa_logging.airflow.shim_wal``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from math import floor
from pathlib import Path

import orjson

from mwaa_logging.engine.channel import Channel, settle_watchers
from mwaa_logging.engine.delivery import MARKER_PREFIX
from mwaa_logging.engine.diagnostics import report
from mwaa_logging.handler import CloudWatchLogHandler, _remember_skipped, _skipped, unformattable

#: Where an Airflow 2 task's write-ahead files are, under ``base_log_folder`` (not beside the task's log file, whose
#: directory Airflow's UI lists while the task runs).
WAL_DIRECTORY = ".mwaa-logging-wal"
SUFFIX = ".wal"
MARK_SUFFIX = ".mark"
NO_MARK = (0, -1)


def wal_key(group: str, stream: str) -> str:
    """The file name stem of a stream's write-ahead files (stream names hold ``/`` and can be 512 characters)."""
    return hashlib.sha256(f"{group}\0{stream}".encode()).hexdigest()[:32]


def encode_line(timestamp: int, message: str) -> bytes:
    try:
        text = orjson.dumps(message)
    except TypeError:  # lone surrogates: json escapes them
        text = json.dumps(message).encode()
    return b"%d %s\n" % (timestamp, text)


class WriteAheadLog:
    """This process's write-ahead file for one stream (opened at the first line; a forked child opens its own)."""

    def __init__(self, directory: Path, key: str, *, file_mode: int = 0o600, dir_mode: int = 0o700) -> None:
        self.directory = directory
        self.key = key
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork_in_child(ref))

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.path = self.directory / f"{self.key}.{self.pid}{SUFFIX}"
        self.mark_path = self.path.with_suffix(MARK_SUFFIX)
        self._fd: int | None = None
        self._mark_fd: int | None = None
        self._channels: list[weakref.ref[Channel]] = []
        #: Bytes written so far (an int, replaced whole: the sender reads it without a lock).
        self.offset = 0
        #: Set when a write failed (disk full, ...) or the file was removed: nothing more is written.
        self.stopped = False

    def close_inherited(self) -> None:
        """In a forked child: the parent's files stay the parent's; this process writes its own."""
        for fd in (self._fd, self._mark_fd):
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self._reset()

    def watch(self, channel: Channel) -> None:
        """Mark this file whenever ``channel``'s events settle (the channel of each handler built for the stream)."""
        self._channels.append(weakref.ref(channel))
        settle_watchers[channel] = self.mark

    def append(self, timestamp: int, message: str) -> None:
        """Write one line that was just queued for sending (call it after queueing: see the module doc)."""
        if self.stopped:
            return
        line = encode_line(timestamp, message)
        try:
            fd = self._fd if self._fd is not None else self._open()
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
        except OSError as exc:
            self._stop(exc)
            return
        self.offset += written

    def _open(self) -> int:
        self.directory.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags | os.O_APPEND, self.file_mode)
        try:
            mark_fd = os.open(self.mark_path, flags | os.O_TRUNC, self.file_mode)
        except OSError:
            os.close(fd)
            raise
        for opened in (fd, mark_fd):
            with suppress(OSError):
                os.fchmod(opened, self.file_mode)  # as configured, whatever the umask (the supervisor may be
                # another user: an impersonated task)
        self._fd, self._mark_fd = fd, mark_fd
        return fd

    def _stop(self, exc: OSError) -> None:
        self.stopped = True
        report(f"cannot write the write-ahead log {self.path} ({exc}): the task's lines are still sent, but if this "
               "process is killed before sending them they are lost")

    def mark(self) -> None:
        """Record how far delivery got (the sender calls this after events settle)."""
        fd = self._mark_fd
        if self.stopped or fd is None or self.pid != os.getpid():
            return
        offset = self.offset  # before looking at the channels (see the module doc)
        oldest = [o for o in (_oldest(ref) for ref in self._channels) if o is not None]
        with suppress(OSError):  # a mark that cannot be written only means more lines shipped twice
            os.pwrite(fd, b"%020d %020d\n" % (offset, min(oldest, default=-1)), 0)

    def settled(self) -> bool:
        """Whether every watched channel delivered or spilled all its events."""
        channels = [c for c in (ref() for ref in self._channels) if c is not None]
        return all(c.stats().pending == 0 for c in channels)

    def finish(self) -> None:
        """At close: remove the files if everything settled, else leave them (marked) for the supervisor."""
        if self._fd is None or self.pid != os.getpid():
            return
        if not self.settled():
            self.mark()
            return
        self.stopped = True
        for fd in (self._fd, self._mark_fd):
            with suppress(OSError):
                os.close(fd)  # type: ignore[arg-type]
        self._fd = self._mark_fd = None
        remove(self.path)


def _oldest(ref: weakref.ref[Channel]) -> int | None:
    channel = ref()
    return None if channel is None else channel.oldest_unsettled()


def _after_fork_in_child(ref: weakref.ref[WriteAheadLog]) -> None:
    wal = ref()
    if wal is not None:
        wal.close_inherited()


def remove(path: Path) -> None:
    """Remove a write-ahead file and its mark."""
    for gone in (path, path.with_suffix(MARK_SUFFIX)):
        with suppress(OSError):
            gone.unlink()


@dataclass(frozen=True)
class DeadLog:
    """The write-ahead file of a process that is gone, and its lines no mark covers."""

    path: Path
    pid: int
    lines: list[tuple[int, str]]


def dead_logs(directory: Path, key: str) -> Iterator[DeadLog]:
    """The write-ahead files of the stream ``key`` whose process is gone (a live one is still writing its own)."""
    with suppress(OSError):
        for path in sorted(directory.glob(f"{key}.*{SUFFIX}")):
            pid = _pid_of(path, key)
            if pid is None or pid == os.getpid() or _alive(pid):
                continue
            try:
                yield DeadLog(path, pid, unsettled(path))
            except OSError as exc:
                report(f"cannot read the write-ahead log {path} ({exc}); its lines are not recovered")


def unsettled(path: Path) -> list[tuple[int, str]]:
    """``(timestamp, message)`` of the lines of ``path`` that its mark does not cover, in file order."""
    offset, oldest = read_mark(path.with_suffix(MARK_SUFFIX))
    found: list[tuple[int, str]] = []
    with path.open("rb") as file:
        position = 0
        if oldest < 0:  # every line before the mark is settled
            position = file.seek(offset)
        for raw in file:
            position += len(raw)
            if not raw.endswith(b"\n"):
                continue  # the line being written when the process died
            stamp, _, text = raw.partition(b" ")
            try:
                timestamp = int(stamp)
                if position <= offset and timestamp < oldest:
                    continue
                found.append((timestamp, _decode(text)))
            except ValueError:
                continue
    return found


def read_mark(path: Path) -> tuple[int, int]:
    """``(offset, oldest)`` of a mark file; :data:`NO_MARK` (nothing settled) if there is none."""
    try:
        offset, oldest = (int(x) for x in path.read_bytes().split())
    except (OSError, ValueError):
        return NO_MARK
    return offset, oldest


def _decode(text: bytes) -> str:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        message = json.loads(text)
    if not isinstance(message, str):
        raise ValueError("not a message")
    return message


def _pid_of(path: Path, key: str) -> int | None:
    middle = path.name[len(key) + 1 : -len(SUFFIX)]
    return int(middle) if middle.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's (an impersonated task's) live process
    return True


def queue_dead_logs(handler: CloudWatchLogHandler, directory: Path, key: str) -> list[Path]:
    """Queue on ``handler`` the unsettled lines of dead task processes of the stream ``key``, with their own
    timestamps; return their files (to remove once ``handler`` closed: delivered or spilled by then).

    ``logging.shutdown()`` may have closed ``handler`` already (an inner handler is created after, so closed before,
    its Airflow task handler): its channel, and its client (credentials already resolved: resolving them logs
    through botocore), are reopened and closed again."""
    paths, channel = [], handler._channel
    stream = handler._stream_namer(logging.makeLogRecord({}))
    for dead in dead_logs(directory, key):
        paths.append(dead.path)
        if not dead.lines:
            continue
        channel.reopen()
        for timestamp, message in dead.lines:
            channel.append(stream, timestamp, message)
        # said in the task's log, where a user looks for why the task died
        channel.append(stream, int(time.time() * 1000),
                       f"{MARKER_PREFIX}{len(dead.lines)} lines of task process {dead.pid}, which ended before it "
                       "sent them, were shipped by the supervisor from its write-ahead log")
    if paths and handler.shutting_down:
        channel.close(handler.settings.close_timeout)
    return paths


def write_ahead(wal: WriteAheadLog, handler: logging.Handler, record: logging.LogRecord) -> None:
    """Append ``record`` as ``handler.emit`` queued it (same message, same timestamp), unless emit skipped it."""
    skipped = _skipped.get(record.name)
    if skipped is None:
        skipped = _remember_skipped(record.name)
    if skipped or not isinstance(handler, CloudWatchLogHandler):
        return
    try:
        timestamp = floor(record.created * 1000)
        message = record.__dict__.get("message") if _plain(handler, record) else None
        if type(message) is not str:
            try:
                message = handler._formatted(record)
            except Exception as exc:
                message = unformattable(record, exc)
    except Exception:  # emit queued it its own way (a record.created that is no time): not worth a line here
        return
    wal.append(timestamp, message)


def _plain(handler: CloudWatchLogHandler, record: logging.LogRecord) -> bool:
    """Whether ``handler.emit`` took its plain fast path, which leaves the message it queued in ``record.message``."""
    formatter = handler._formatter
    return (type(record.msg) is str and handler._plain_format and not record.exc_info and not record.exc_text
            and not record.stack_info and not getattr(formatter, "add_log_record_attrs", False))
