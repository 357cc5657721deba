"""``host`` scope: one budget shared by every process on this machine, with no server.

The state is a 64-byte record in a small file (``/dev/shm`` when present, else the temp dir), read
and written with ``pread``/``pwrite`` under ``flock``. The kernel releases a ``flock`` when its
holder dies, so a process killed mid-call cannot wedge the others; a CRC over the record tells a
write torn by such a death from a state: each process then goes on from the last state it saw (a fresh bucket
for one that saw none), not from garbage. Waiting for the lock is bounded
(``lock_timeout``): past it, acquire answers "wait a little" rather than blocking logging.

The file is not memory-mapped: a mapped file truncated by someone else (``: > /dev/shm/x.budget``, a
cleanup tool) killed every process using it with SIGBUS at its next acquire; a short read holds no state (as a
torn one). A file removed (a cleanup, systemd-logind's ``RemoveIPC``) or replaced while processes have it
open left them on the old inode while new processes made another: two buckets, each at the full rate.
So, under the lock, at most every ``path_check_interval`` s, a process compares its open file with the
one at the path and moves to the latter (creating it with the state it had when it is gone).

``now`` must be comparable across processes: pass ``time.monotonic()``, which is the system-wide
``CLOCK_MONOTONIC`` on Linux (and a system-wide clock on macOS).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import re
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from mwaa_logging import budget
from mwaa_logging.budget import BudgetConfig, BudgetState
from mwaa_logging.budgets.forksafe import after_fork_in_child
from mwaa_logging.budgets.stats import BudgetStats, Counters

log = logging.getLogger(__name__)

_MAGIC = b"MWLBUD01"
_FIELDS = struct.Struct("<6d")  # tokens, updated, w_max, throttled_at, measured, measured_at
_CRC = struct.Struct("<I")
RECORD_SIZE = 64
_CRC_OFFSET = len(_MAGIC) + _FIELDS.size
_LOCK_POLL_MAX = 0.002


def default_directory() -> Path:
    """``/dev/shm`` (memory, cleared at boot) when usable, else the temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def budget_path(name: str, namespace: str = "mwaa-logging", directory: Path | None = None, *,
                config: BudgetConfig) -> Path:
    """Where the host budget called ``name`` lives; one file per user, namespace, name and configuration (rate
    and burst: processes configured with other values share another bucket), ``<namespace>-*.budget``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{namespace}-{name}-{budget.config_tag(config)}")
    return (directory or default_directory()) / f"{safe}-uid{os.getuid()}.budget"


def encode(state: BudgetState) -> bytes:
    """The on-disk record: magic, six doubles, CRC32 of both."""
    body = _MAGIC + _FIELDS.pack(
        state.tokens, state.updated, state.w_max, state.throttled_at, state.measured, state.measured_at
    )
    return (body + _CRC.pack(zlib.crc32(body))).ljust(RECORD_SIZE, b"\0")


def is_valid(record: bytes | bytearray) -> bool:
    """True when ``record`` holds a state (not new, short, foreign or torn)."""
    if len(record) < _CRC_OFFSET + _CRC.size:
        return False
    body = record[:_CRC_OFFSET]
    (crc,) = _CRC.unpack_from(record, _CRC_OFFSET)
    return body.startswith(_MAGIC) and zlib.crc32(body) == crc


def decode(record: bytes | bytearray) -> BudgetState:
    """The state in ``record``; a fresh state when it is new, short (a truncated file), foreign or torn."""
    if not is_valid(record):
        return BudgetState()
    return BudgetState(*_FIELDS.unpack_from(record, len(_MAGIC)))


def _reserve(fd: int) -> None:
    """Give the record its pages now (``OSError`` ENOSPC if there is no room, said at the start rather than at
    some later write). ``ftruncate`` makes a file with none, and writing to it on a full tmpfs or disk (a
    container's 64 MB ``/dev/shm`` filled by another program) fails."""
    fallocate = getattr(os, "posix_fallocate", None)  # Linux, FreeBSD; not macOS
    if fallocate is not None:
        fallocate(fd, 0, RECORD_SIZE)


def _open_own_file(path: Path) -> int:
    """``path`` opened read-write (created ``0600``), only if it is a regular file of this user, private to it.

    The file sits in a world-writable directory (``/dev/shm``) under a predictable name: another local user could
    put a symbolic link there (the record would overwrite the first 64 bytes of a file the link names) or a file of
    theirs (which they could rewrite to stall this user's sending). Neither is followed or used: ``OSError``, and
    the caller keeps a budget of its own process."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EACCES) and path.is_symlink():  # EACCES: a sticky directory's rule
            raise OSError(errno.ELOOP, "it is a symbolic link, not followed", str(path)) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EPERM, "it is not a regular file", str(path))
        if info.st_uid != os.getuid():
            raise OSError(errno.EPERM, f"it belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})",
                          str(path))
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


class LockTimeout(Exception):
    """The host budget's lock stayed busy longer than ``lock_timeout``."""


class HostBudget:
    """A budget shared through a small file by all processes of one user on this host."""

    scope = "host"

    def __init__(
        self,
        config: BudgetConfig,
        name: str = "put",
        *,
        namespace: str = "mwaa-logging",
        directory: Path | None = None,
        lock_timeout: float = 0.05,
        path_check_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.name = name
        self._namespace = namespace
        self._directory = directory
        self._configured = config  # names the file; ``config`` may change later (a fleet budget's host share)
        self.path = budget_path(name, namespace, directory, config=config)
        self.lock_timeout = lock_timeout
        #: Seconds (of this process's monotonic clock) between checks that the open file is still the one at
        #: the path (two system calls; one acquire per PutLogEvents call would do with every one).
        self.path_check_interval = path_check_interval
        self._next_path_check = -math.inf
        #: Why the file at the path could not be opened, when that was last tried (said once per reason).
        self._path_trouble = ""
        self._counters = Counters(config.ceiling)
        self._pid = -1
        self._fd = -1
        #: The record of this process alone, once the file cannot be had in a forked child (or written: then
        #: until ``_rejoin_at``, when the file is tried again).
        self._own: bytearray | None = None
        self._rejoin_at = math.inf
        #: The last valid record this process read or wrote: what it goes on from when the file holds none (truncated,
        #: made again after a removal, garbled) rather than a fresh, full bucket.
        self._last = b""
        #: Why, until it is said (in a warning at the next call: not in the at-fork hook).
        self._unsaid: OSError | None = None
        self._thread_lock = threading.Lock()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._open()
        after_fork_in_child(self._reopen)

    def _reopen(self) -> None:
        """In a forked child: drop the inherited descriptor and open a new one. ``flock`` does not
        exclude holders of the same open file description, and closing the child's duplicate does not
        release a lock the parent holds.

        The file is that of the child's user (a daemon that dropped privileges with ``setuid`` before forking
        its workers has another uid than when it made this budget). When it cannot be had (another user's file
        at its path, a full ``/dev/shm``), the child keeps a budget of its own, starting from the state it
        inherited, and says so once, as a process started without the file does."""
        self._thread_lock = threading.Lock()
        self._pid = os.getpid()
        inherited = self._read() if self._fd >= 0 or self._own is not None else b""
        self._release()
        if self._own is not None and self._rejoin_at == math.inf:  # on its own, without the file: so is the child
            self._own = bytearray(inherited)
            return
        # (on its own since a write failed: the child opens the file, and shares it again once it can write it)
        self.path = budget_path(self.name, self._namespace, self._directory, config=self._configured)
        self._next_path_check = -math.inf
        try:
            self._open()
        except OSError as exc:
            self._own = bytearray(inherited.ljust(RECORD_SIZE, b"\0"))
            self._unsaid = exc
            if self._rejoin_at != math.inf:  # (the space its parent lacked is still lacking: tried again later)
                self._rejoin_at = time.monotonic() + self.path_check_interval

    def _open(self) -> None:
        fd = _open_own_file(self.path)
        try:
            if os.fstat(fd).st_size < RECORD_SIZE:
                os.ftruncate(fd, RECORD_SIZE)  # zero bytes decode as a fresh state
            _reserve(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the file (the shared state stays for the other processes)."""
        with self._thread_lock:
            self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _say_own_budget(self, exc: OSError) -> None:
        log.warning("host budget %r cannot use %s in this forked process (%s): it keeps its own budget, not shared "
                    "with the host's other processes", self.name, self.path, exc.strerror or exc)

    def _read(self) -> bytes:
        """The record (held under the lock); shorter, or empty, when the file was truncated."""
        if self._own is not None:
            return bytes(self._own)
        if self._fd < 0:
            raise ValueError("host budget is closed")
        return os.pread(self._fd, RECORD_SIZE, 0)

    def _record(self) -> bytes:
        """The record to decide from (held under the lock): the file's, or, when it holds none (truncated, made
        again after a removal, garbled), the last one this process saw: each truncation gave every process a full
        bucket (125 calls in 8 s against 90 allowed, with four truncations)."""
        record = self._read()
        if is_valid(record):
            self._last = bytes(record)
            return record
        return self._last

    def _write(self, state: BudgetState) -> None:
        """Store ``state`` (under the lock). A file that cannot be written (truncated, then its pages taken on a
        full ``/dev/shm``) leaves this process with a budget of its own, said in a warning, until the file's pages
        can be had again (tried every ``path_check_interval``)."""
        record = encode(state)
        self._last = record
        if self._own is not None:
            self._own[:] = record
            return
        try:
            if os.pwrite(self._fd, record, 0) == RECORD_SIZE:
                return
            error = OSError(errno.EIO, "short write")
        except OSError as exc:
            error = exc
        log.warning("host budget %r cannot write %s (%s): this process keeps its own budget, not shared with the "
                    "host's other processes, until it can write it again", self.name, self.path,
                    error.strerror or error)
        self._own = bytearray(record)
        self._rejoin_at = time.monotonic() + self.path_check_interval

    def _rejoined(self) -> bool:
        """On a budget of its own since a write failed: whether the file can be written again now (opened again
        first in a child forked meanwhile, whose open failed for the same lack of space)."""
        if time.monotonic() < self._rejoin_at:
            return False
        try:
            if self._fd < 0:
                self._open()
            _reserve(self._fd)
        except OSError:
            self._rejoin_at = time.monotonic() + self.path_check_interval
            return False
        self._own, self._rejoin_at = None, math.inf
        log.warning("host budget %r can write %s again: shared with the host's other processes again", self.name,
                    self.path)
        return True

    def _at_path(self) -> bool:
        """False when, at a check, the file at the path is not the one open (removed, or replaced)."""
        clock = time.monotonic()
        if clock < self._next_path_check:
            return True
        self._next_path_check = clock + self.path_check_interval
        try:
            there = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell (a directory made unreadable): keep the open file
        mine = os.fstat(self._fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def _move_to_path(self) -> bool:
        """Open the file now at the path in place of the open one (locked by this process); False when the path
        cannot be had (the old file is kept, checked again later)."""
        record = self._read()
        if is_valid(record):
            self._last = bytes(record)  # the state it goes on from if the new file holds none
        old = self._fd
        try:
            self._open()
        except OSError as exc:
            reason = str(exc.strerror or exc)
            if reason != self._path_trouble:
                self._path_trouble = reason
                log.warning("host budget %r: %s was removed or replaced and cannot be opened again (%s); this "
                            "process keeps the file it had open", self.name, self.path, reason)
            return False
        self._path_trouble = ""
        os.close(old)  # releases its lock
        log.info("host budget %r: %s was removed or replaced; this process now uses the file at the path",
                 self.name, self.path)
        return True

    def _lock_file(self, deadline: float) -> None:
        """``flock`` the file that is at the path, within ``deadline`` (``LockTimeout``)."""
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    raise
            else:
                if self._at_path() or not self._move_to_path():
                    break  # (a path that cannot be had: the old file is kept, locked)
                continue  # lock the new one
            if time.monotonic() >= deadline:
                raise LockTimeout(str(self.path))
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL_MAX)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._pid != os.getpid():  # forked without Python's fork hooks
            self._reopen()
        deadline = time.monotonic() + self.lock_timeout
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise LockTimeout(str(self.path))
        try:
            if self._own is not None and not self._rejoined():
                unsaid, self._unsaid = self._unsaid, None
                if unsaid is not None:
                    self._say_own_budget(unsaid)
                yield
                return
            if self._fd < 0:
                raise ValueError("host budget is closed")
            self._lock_file(deadline)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)  # (kept open after a failed write: tried again later)
        finally:
            self._thread_lock.release()

    def acquire(self, now: float, tokens: float = 1.0) -> float:
        try:
            with self._locked():
                decision = budget.acquire(self.config, decode(self._record()), now, tokens)
                self._write(decision.state)
        except LockTimeout:
            log.debug("host budget %s busy; asking the caller to retry", self.path)
            self._counters.count_acquire(self.lock_timeout, self._counters.rate)
            return self.lock_timeout
        self._counters.count_acquire(decision.wait, decision.rate)
        return decision.wait

    def on_throttled(self, now: float) -> None:
        try:
            with self._locked():
                state = budget.throttled(self.config, decode(self._record()), now)
                self._write(state)
        except LockTimeout:
            log.debug("host budget %s busy; throttle signal not recorded", self.path)
            self._counters.count_throttle()
            return
        self._counters.count_throttle(budget.current_rate(self.config, state, now))

    def drain(self, now: float) -> None:
        """Empty the shared bucket (see :func:`mwaa_logging.budget.drained`); nothing if the lock stays busy."""
        try:
            with self._locked():
                self._write(budget.drained(self.config, decode(self._record()), now))
        except LockTimeout:
            log.debug("host budget %s busy; not drained", self.path)

    def on_success(self, now: float) -> None:
        """Nothing to do: recovery is a function of the time since the last shared throttle."""

    def state(self) -> BudgetState:
        """The shared state as it is now (for stats and tests)."""
        with self._locked():
            return decode(self._record())

    def rate(self, now: float) -> float:
        """The shared rate in force at ``now`` (``inf``: unlimited); the last one seen if the lock is busy."""
        try:
            return budget.current_rate(self.config, self.state(), now)
        except LockTimeout:
            return self._counters.rate

    def stats(self) -> BudgetStats:
        """Its counters; the scope is ``process`` once a forked child keeps a budget of its own."""
        return self._counters.snapshot(self.scope if self._own is None else "process")
