"""``host`` scope: one budget shared by every process on this machine, with no server.

The state is a 64-byte record in a small file (``/dev/shm`` when present, else the temp dir),
memory-mapped by each process and guarded by ``flock``. The kernel releases a ``flock`` when its
holder dies, so a process killed mid-call cannot wedge the others; a CRC over the record turns a
write torn by such a death into a fresh bucket instead of garbage. Waiting for the lock is bounded
(``lock_timeout``): past it, acquire answers "wait a little" rather than blocking logging.

``now`` must be comparable across processes: pass ``time.monotonic()``, which is the system-wide
``CLOCK_MONOTONIC`` on Linux (and a system-wide clock on macOS).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
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


def decode(record: bytes | bytearray) -> BudgetState:
    """The state in ``record``; a fresh state when it is new, foreign or torn."""
    body = record[:_CRC_OFFSET]
    (crc,) = _CRC.unpack_from(record, _CRC_OFFSET)
    if not body.startswith(_MAGIC) or zlib.crc32(body) != crc:
        return BudgetState()
    return BudgetState(*_FIELDS.unpack_from(record, len(_MAGIC)))


def _reserve(fd: int) -> None:
    """Give the record its pages now (``OSError`` ENOSPC if there is no room). ``ftruncate`` makes a file
    with none, and storing through a map of it on a full tmpfs or disk (a container's 64 MB ``/dev/shm``
    filled by another program) is a SIGBUS that kills the process."""
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
    """A budget shared through a memory-mapped file by all processes of one user on this host."""

    scope = "host"

    def __init__(
        self,
        config: BudgetConfig,
        name: str = "put",
        *,
        namespace: str = "mwaa-logging",
        directory: Path | None = None,
        lock_timeout: float = 0.05,
    ) -> None:
        self.config = config
        self.name = name
        self._namespace = namespace
        self._directory = directory
        self._configured = config  # names the file; ``config`` may change later (a fleet budget's host share)
        self.path = budget_path(name, namespace, directory, config=config)
        self.lock_timeout = lock_timeout
        self._counters = Counters(config.ceiling)
        self._pid = -1
        self._fd = -1
        self._map: mmap.mmap | None = None
        #: The record of this process alone, once the file cannot be had in a forked child.
        self._own: bytearray | None = None
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
        inherited = bytes(self._map[:RECORD_SIZE]) if self._map is not None else bytes(self._own or b"")
        self._release()
        if self._own is not None:  # already on its own: so is the child
            self._own = bytearray(inherited)
            return
        self.path = budget_path(self.name, self._namespace, self._directory, config=self._configured)
        try:
            self._open()
        except OSError as exc:
            self._own = bytearray(inherited.ljust(RECORD_SIZE, b"\0"))
            self._unsaid = exc

    def _open(self) -> None:
        fd = _open_own_file(self.path)
        try:
            if os.fstat(fd).st_size < RECORD_SIZE:
                os.ftruncate(fd, RECORD_SIZE)  # zero bytes decode as a fresh state
            _reserve(fd)
            self._map = mmap.mmap(fd, RECORD_SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._pid = os.getpid()

    def close(self) -> None:
        """Unmap and close the file (the shared state stays for the other processes)."""
        with self._thread_lock:
            self._release()

    def _release(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _say_own_budget(self, exc: OSError) -> None:
        log.warning("host budget %r cannot use %s in this forked process (%s): it keeps its own budget, not shared "
                    "with the host's other processes", self.name, self.path, exc.strerror or exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[mmap.mmap | bytearray]:
        if self._pid != os.getpid():  # forked without Python's fork hooks
            self._reopen()
        deadline = time.monotonic() + self.lock_timeout
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise LockTimeout(str(self.path))
        if self._own is not None:
            try:
                unsaid, self._unsaid = self._unsaid, None
                if unsaid is not None:
                    self._say_own_budget(unsaid)
                yield self._own
            finally:
                self._thread_lock.release()
            return
        try:
            pause = 0.0001
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                        raise
                if time.monotonic() >= deadline:
                    raise LockTimeout(str(self.path))
                time.sleep(pause)
                pause = min(pause * 2, _LOCK_POLL_MAX)
            try:
                if self._map is None:
                    raise ValueError("host budget is closed")
                yield self._map
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def acquire(self, now: float, tokens: float = 1.0) -> float:
        try:
            with self._locked() as record:
                decision = budget.acquire(self.config, decode(record[:RECORD_SIZE]), now, tokens)
                record[:RECORD_SIZE] = encode(decision.state)
        except LockTimeout:
            log.debug("host budget %s busy; asking the caller to retry", self.path)
            self._counters.count_acquire(self.lock_timeout, self._counters.rate)
            return self.lock_timeout
        self._counters.count_acquire(decision.wait, decision.rate)
        return decision.wait

    def on_throttled(self, now: float) -> None:
        try:
            with self._locked() as record:
                state = budget.throttled(self.config, decode(record[:RECORD_SIZE]), now)
                record[:RECORD_SIZE] = encode(state)
        except LockTimeout:
            log.debug("host budget %s busy; throttle signal not recorded", self.path)
            self._counters.count_throttle()
            return
        self._counters.count_throttle(budget.current_rate(self.config, state, now))

    def on_success(self, now: float) -> None:
        """Nothing to do: recovery is a function of the time since the last shared throttle."""

    def state(self) -> BudgetState:
        """The shared state as it is now (for stats and tests)."""
        with self._locked() as record:
            return decode(record[:RECORD_SIZE])

    def rate(self, now: float) -> float:
        """The shared rate in force at ``now`` (``inf``: unlimited); the last one seen if the lock is busy."""
        try:
            return budget.current_rate(self.config, self.state(), now)
        except LockTimeout:
            return self._counters.rate

    def stats(self) -> BudgetStats:
        """Its counters; the scope is ``process`` once a forked child keeps a budget of its own."""
        return self._counters.snapshot(self.scope if self._own is None else "process")
