"""Spill to a local directory: gzip JSON Lines files, written atomically."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from mwaa_logging.protocols import PartialSpillError, SpillError
from mwaa_logging.spill.layout import SUFFIX, TMP_SUFFIX, object_name, stream_prefix
from mwaa_logging.spillformat import SpillRecord, decode_records, encode_records, records_by_stream


def default_spill_directory() -> Path:
    """``$XDG_CACHE_HOME/mwaa-logging/spill`` (or ``~/.cache/...``), else the temp dir."""
    cache, temp = _default_candidates()
    return cache if os.path.isdir(cache.parent.parent) and os.access(cache.parent.parent, os.W_OK) else temp


def default_spill_directories() -> list[Path]:
    """Every directory :func:`default_spill_directory` may choose, the one it chooses now first: where readers look
    for the handler's last resort. A handler that found no cache directory wrote to the temp dir, and a cache
    directory made later (``pip install --user``, any tool) must not hide those lines. The temp dir's name of
    earlier versions (shared by every user) is listed too, and none that another user could have written into:
    their files would be read back as this user's lines."""
    chosen = default_spill_directory()
    legacy = _temp_directory() / "mwaa-logging-spill"
    listed = [chosen, *(path for path in (*_default_candidates(), legacy) if path != chosen)]
    return [path for path in listed if private_directory_problem(path) is None]


def _default_candidates() -> tuple[Path, Path]:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mwaa-logging" / "spill", _temp_directory() / f"mwaa-logging-spill-{os.getuid()}"


def private_directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be this user's own directory (another user's, a link another user made, writable by
    every user), or None: fine, or not there. Group-writable is allowed (a umask of 002 made it so)."""
    try:
        link = os.lstat(path)
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    uid = os.getuid()
    if stat.S_ISLNK(link.st_mode) and link.st_uid != uid:
        return f"it is a symbolic link of uid {link.st_uid}"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != uid:
        return f"it belongs to uid {info.st_uid}, not to this user (uid {uid})"
    if info.st_mode & 0o002:
        return f"every user may write in it (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def default_spill_sink() -> LocalSpillSink:
    """The handler's last resort: the default directory, made ``0700`` and used only if it is this user's own."""
    return LocalSpillSink(default_spill_directory(), private=True)


def _make_private(directory: Path) -> None:
    """Create ``directory`` (``0700``) unless it exists; ``OSError`` unless it is this user's own."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    problem = private_directory_problem(directory)
    if problem is not None:
        raise OSError(errno.EPERM, problem, str(directory))


def _temp_directory() -> Path:
    """The temp dir; where Python finds none writable (a read-only root file system), ``$TMPDIR`` or ``/tmp`` all
    the same: a handler is still built, and a spill there fails as a write (said, events kept), not construction."""
    try:
        return Path(tempfile.gettempdir())
    except OSError:
        return Path(os.environ.get("TMPDIR") or "/tmp")


#: A write with this many streams or more makes its files durable together (one ``syncfs``, on Linux) rather than
#: one ``fsync`` each: 3,000 streams spilled at a close deadline took 2.5 s, most of it in fsync.
SYNC_TOGETHER_MIN_FILES = 4


class LocalSpillSink:
    """Writes each stream's records to a new file under ``directory`` (one file per call and stream).

    A file appears whole or not at all (written aside, made durable, renamed). If some streams' files were
    written and then one fails, :class:`PartialSpillError` says which records are still to be stored elsewhere,
    so that nothing is stored twice. A write of many streams (a close deadline) writes every file aside, then
    syncs the file system once, renames them all and syncs once more (their names), where the platform offers
    ``syncfs``; else each file is fsynced.
    """

    def __init__(self, directory: str | os.PathLike[str], *, private: bool = False) -> None:
        self.directory = Path(directory)
        self.description = str(self.directory)
        #: A directory of this user alone (the default one, in a temp dir other users share): created ``0700``,
        #: written only while it is this user's own and not writable by every user.
        self.private = private
        _syncfs()  # now, not at a spill that may come while the interpreter finalizes (no import works then)

    def write(self, records: Sequence[SpillRecord]) -> str:
        if not records:
            return self.description
        if self.private:
            try:
                _make_private(self.directory)
            except OSError as exc:
                raise SpillError(f"cannot write spill file under {self.directory}: {exc.strerror or exc}") from exc
        by_stream = records_by_stream(records)
        if len(by_stream) >= SYNC_TOGETHER_MIN_FILES and _syncfs() is not None:
            return self._write_together(records, by_stream)
        written: list[str] = []
        stored: set[tuple[str, str]] = set()
        for (group, stream), batch in by_stream.items():  # a file is named after its first record
            try:
                written.append(self._write_file(self.directory / object_name(group, stream, batch[0].timestamp),
                                                batch))
            except OSError as exc:
                self._failed(exc, records, stored, written)
            stored.add((group, stream))
        return self._location_of(written)

    def _write_together(self, records: Sequence[SpillRecord],
                        by_stream: dict[tuple[str, str], list[SpillRecord]]) -> str:
        """Write every stream's file aside, sync once, rename them all, sync once more."""
        staged: list[tuple[Path, Path, tuple[str, str]]] = []
        written: list[str] = []
        stored: set[tuple[str, str]] = set()
        try:
            for (group, stream), batch in by_stream.items():
                path = self.directory / object_name(group, stream, batch[0].timestamp)
                staged.append((self._write_aside(path, batch), path, (group, stream)))
            _sync_file_system(self.directory)  # the files' contents, before any of them is named
            for tmp, path, key in staged:
                os.replace(tmp, path)
                written.append(str(path))
                stored.add(key)
        except OSError as exc:
            for tmp, _, key in staged:
                if key not in stored:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
            self._failed(exc, records, stored, written)
        with contextlib.suppress(OSError):  # their names (the one-file path leaves these to the file system too)
            _sync_file_system(self.directory)
        return self._location_of(written)

    def _failed(self, exc: OSError, records: Sequence[SpillRecord], stored: set[tuple[str, str]],
                written: Sequence[str]) -> NoReturn:
        message = f"cannot write spill file under {self.directory}: {exc}"
        if not written:
            raise SpillError(message) from exc
        remaining = [r for r in records if (r.group, r.stream) not in stored]
        raise PartialSpillError(message, remaining, self._location_of(written)) from exc

    def _location_of(self, written: Sequence[str]) -> str:
        return written[0] if len(written) == 1 else self.description

    @staticmethod
    def _write_file(path: Path, batch: Sequence[SpillRecord]) -> str:
        """Write ``batch`` to ``path`` atomically; no partial file is left behind on failure."""
        tmp = LocalSpillSink._write_aside(path, batch, fsync=True)
        try:
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return str(path)

    @staticmethod
    def _write_aside(path: Path, batch: Sequence[SpillRecord], *, fsync: bool = False) -> Path:
        """Write ``batch`` next to ``path`` (``.tmp``, which readers take only once this process is gone: see
        :mod:`mwaa_logging.spill.leftovers`); return that file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        try:
            # io.open, not os.fdopen (it imports io when called) nor open (a builtin gone while the interpreter
            # finalizes): a spill may come then (a record logged from a __del__)
            with io.open(_create_new(tmp), "wb") as f:  # noqa: UP020
                f.write(encode_records(batch))
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp

    def read_stream(self, group: str, stream: str) -> Iterator[SpillRecord]:
        """Every record spilled for one stream, file by file (not merged or sorted)."""
        folder = self.directory / stream_prefix(group, stream)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*" + SUFFIX)):
            yield from decode_records(path.read_bytes())

    def iter_files(self) -> Iterator[Path]:
        """Every spill file under the directory."""
        yield from sorted(self.directory.rglob("*" + SUFFIX))


def _create_new(path: Path) -> int:
    """A new file at ``path``, never through a symbolic link nor into an existing file (a link planted in a
    directory other users may write would truncate the file it names). A file left there by a process killed
    while writing (same pid and counter, after pid reuse) is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:
        os.unlink(path)  # the link itself, not what it names
        return os.open(path, flags, 0o666)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(fd)`` (flush one file system, and wait), or None where it is not available. Set up when a
    sink is made (see :class:`LocalSpillSink`): a spill may come while the interpreter finalizes, when ``ctypes``
    can no longer be imported."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, ImportError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    _get_errno.append(ctypes.get_errno)
    return function  # type: ignore[no-any-return]


#: ``ctypes.get_errno``, bound by :func:`_syncfs`.
_get_errno: list[Callable[[], int]] = []


def _sync_file_system(directory: Path) -> None:
    """Make everything written to ``directory``'s file system durable (as fsync of each file and directory)."""
    syncfs = _syncfs()
    assert syncfs is not None
    fd = os.open(directory, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            errno = _get_errno[0]()
            raise OSError(errno, f"syncfs: {os.strerror(errno)}")
    finally:
        os.close(fd)
