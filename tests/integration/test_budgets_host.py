"""Host scope with real processes sharing one budget file."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

from mwaa_logging.budget import BudgetConfig, BudgetState
from mwaa_logging.budgets.factory import build_budget
from mwaa_logging.budgets.host import RECORD_SIZE, HostBudget, budget_path, encode
from mwaa_logging.budgets.process import ProcessBudget

RATE = 200.0
BURST = 20.0
SPAWN = multiprocessing.get_context("spawn")


def hammer(directory: str, ready: Barrier, until: Synchronized[float], out: str) -> None:
    """Take tokens as fast as the shared budget allows until ``until``; write grant times to ``out``."""
    shared = HostBudget(BudgetConfig(rate=RATE, burst=BURST), directory=Path(directory))
    ready.wait(30)  # everyone is up
    ready.wait(30)  # the parent has set ``until``
    grants: list[str] = []
    while (now := time.monotonic()) < until.value:
        wait = shared.acquire(now)
        if wait == 0.0:
            grants.append(repr(now))
        else:
            time.sleep(min(wait, 0.002))
    Path(out).write_text("\n".join(grants))


def hold_lock(directory: str, ready: Event) -> None:
    """Take the budget's lock and never let go (until killed)."""
    shared = HostBudget(BudgetConfig(rate=RATE), directory=Path(directory))
    with shared._locked():
        ready.set()
        time.sleep(60)


def throttle_once(directory: str, now: float) -> None:
    shared = HostBudget(BudgetConfig(rate=RATE), directory=Path(directory))
    for _ in range(100):
        shared.acquire(now)
    shared.on_throttled(now)


def read_grants(paths: list[Path]) -> list[float]:
    return sorted(float(line) for path in paths if path.exists() for line in path.read_text().split())


def assert_within_budget(grants: list[float]) -> None:
    """Every interval [a, b] between two grants holds at most burst + rate x (b - a) grants."""
    for i, first in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= BURST + RATE * (grants[j] - first) + 1e-6, (i, j)


@dataclass
class Hammers:
    procs: Sequence[BaseProcess]
    until: float
    ready: Barrier


def run_hammers(tmp_path: Path, count: int, window: float) -> Hammers:
    """Start ``count`` hammering processes on one budget for ``window`` seconds once all are up."""
    ready = SPAWN.Barrier(count + 1)
    until = SPAWN.Value("d", 0.0)
    procs = [
        SPAWN.Process(target=hammer, args=(str(tmp_path), ready, until, str(tmp_path / f"grants{n}")))
        for n in range(count)
    ]
    for proc in procs:
        proc.start()
    ready.wait(30)
    until.value = time.monotonic() + window
    ready.wait(30)
    return Hammers(procs, until.value, ready)


def test_processes_share_one_budget(tmp_path: Path) -> None:
    procs = run_hammers(tmp_path, count=4, window=1.5).procs
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    per_process = [read_grants([tmp_path / f"grants{n}"]) for n in range(4)]
    grants = read_grants([tmp_path / f"grants{n}" for n in range(4)])
    assert all(per_process), "every process got tokens"
    assert_within_budget(grants)
    span = grants[-1] - grants[0]
    assert len(grants) <= BURST + RATE * span + 1
    assert len(grants) >= 0.5 * RATE * span  # the shared budget is actually used, not starved


def test_a_process_killed_mid_run_does_not_wedge_the_others(tmp_path: Path) -> None:
    hammers = run_hammers(tmp_path, count=3, window=2.0)
    procs, until = hammers.procs, hammers.until
    time.sleep(max(0.0, until - 1.0 - time.monotonic()))  # one second before the end
    assert procs[0].pid is not None
    os.kill(procs[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    for proc in procs:
        proc.join(timeout=30)
    assert procs[0].exitcode == -signal.SIGKILL
    assert [proc.exitcode for proc in procs[1:]] == [0, 0]
    survivors = read_grants([tmp_path / "grants1", tmp_path / "grants2"])
    after_kill = [t for t in survivors if t > killed_at + 0.1]
    assert len(after_kill) >= 0.5 * RATE * (until - killed_at - 0.1)
    assert_within_budget(survivors)


def test_the_lock_of_a_killed_holder_is_released(tmp_path: Path) -> None:
    ready = SPAWN.Event()
    holder = SPAWN.Process(target=hold_lock, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(30)
    shared = HostBudget(BudgetConfig(rate=RATE), directory=tmp_path, lock_timeout=0.05)
    started = time.monotonic()
    assert shared.acquire(time.monotonic()) == 0.05  # lock busy: bounded, "come back shortly"
    assert time.monotonic() - started < 1.0
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=10)
    assert shared.acquire(time.monotonic()) == 0.0


def test_a_throttle_in_one_process_lowers_the_rate_of_all(tmp_path: Path) -> None:
    shared = HostBudget(BudgetConfig(rate=RATE), directory=tmp_path)
    now = time.monotonic()
    assert shared.rate(now) == RATE
    other = SPAWN.Process(target=throttle_once, args=(str(tmp_path), now))
    other.start()
    other.join(timeout=30)
    assert other.exitcode == 0
    # The other process took 100 tokens (measured 100/s) and was throttled: 0.7 x 100 for everyone.
    assert shared.rate(now) == pytest.approx(70.0)
    assert shared.acquire(now) == pytest.approx(1 / 70)


def test_a_torn_record_goes_on_from_the_last_state_seen_else_a_fresh_bucket(tmp_path: Path) -> None:
    """A record that holds no state is no reason for a full bucket where a process knows the last one."""
    shared = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path)
    assert [shared.acquire(0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
    for torn in (1, 2):
        with shared.path.open("r+b") as raw:
            raw.seek(12)
            raw.write(b"\xff" * 8)  # half-written field: CRC no longer matches
        assert shared.path.stat().st_size == RECORD_SIZE
        if torn == 1:
            assert shared.acquire(0.0) == pytest.approx(0.1)  # the bucket this process saw last: empty
    newcomer = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path)
    assert newcomer.acquire(0.0) == 0.0  # a process that never saw a state: a fresh bucket


def test_a_forked_child_gets_its_own_lock(tmp_path: Path) -> None:
    shared = HostBudget(BudgetConfig(rate=RATE), directory=tmp_path, lock_timeout=0.05)
    fork = multiprocessing.get_context("fork")
    result = fork.Queue()
    with shared._locked():  # the parent holds the flock while the child tries
        child = fork.Process(target=lambda: result.put(shared.acquire(time.monotonic())))
        child.start()
        answer = result.get(timeout=10)
        child.join(timeout=10)
    assert answer == 0.05  # a shared open file description would have let it through
    assert shared.acquire(time.monotonic()) == 0.0


def test_the_record_has_its_pages_when_the_file_is_opened(tmp_path: Path) -> None:
    # ftruncate alone makes a file with no pages: the first write on a full /dev/shm would fail, not the start.
    shared = HostBudget(BudgetConfig(rate=RATE), directory=tmp_path)
    assert shared.path.stat().st_blocks > 0


FULL_SHM_PROBE = """
import logging, sys, time
logging.basicConfig(stream=sys.stdout, format="%(message)s")
from mwaa_logging.budgets.factory import build_budget
shared = build_budget("host", rate=10.0, burst=None, namespace=sys.argv[1])
print(type(shared).__name__, shared.acquire(time.monotonic()), shared.stats().scope, flush=True)
"""


def test_a_full_dev_shm_leaves_the_process_alive_with_its_own_budget(tmp_path: Path) -> None:
    """A container's /dev/shm (64 MB) filled by another program: the process logs on, with a warning."""
    script = (
        "mount -t tmpfs -o size=64k tmpfs /dev/shm || exit 77; "
        "dd if=/dev/zero of=/dev/shm/filler bs=4k count=64 2>/dev/null; "
        f'exec "$0" -c \'{FULL_SHM_PROBE}\' full-shm'
    )
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a full tmpfs on /dev/shm in a private mount namespace")
    done = subprocess.run([unshare, "-m", "sh", "-c", script, sys.executable], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode == 77:
        pytest.skip(f"cannot mount in a private namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, (done.returncode, done.stderr)  # -7 (SIGBUS) before the fix
    warning, answer = done.stdout.splitlines()
    assert "No space left on device" in warning and "not shared" in warning
    assert answer == "ProcessBudget 0.0 process"


def test_a_host_budget_directory_that_cannot_be_made_falls_back_to_the_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    shared = build_budget("host", rate=RATE, burst=None, directory=occupied)
    assert isinstance(shared, ProcessBudget) and shared.acquire(0.0) == 0.0
    assert "keeps its own budget" in caplog.text


def test_stats_while_the_lock_stays_busy_say_the_ceiling_not_unlimited(tmp_path: Path) -> None:
    holder = HostBudget(BudgetConfig(rate=RATE), directory=tmp_path)  # another open file: flock excludes it
    shared = HostBudget(BudgetConfig(rate=RATE), directory=tmp_path, lock_timeout=0.01)
    with holder._locked():
        assert shared.acquire(0.0) == 0.01
    stats = shared.stats()
    assert (stats.granted, stats.waited, stats.rate) == (0, 1, RATE)  # was inf: "unlimited" under a limit


def test_a_symbolic_link_at_the_budget_path_is_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another local user's link at our predictable /dev/shm name: the record overwrote the first 64 bytes of the
    file it named (any file this user may write)."""
    victim = tmp_path / "victim.conf"
    victim.write_bytes(b"important = yes\n" * 8)
    budget_path("put", "links", tmp_path, config=BudgetConfig(rate=RATE)).symlink_to(victim)
    shared = build_budget("host", rate=RATE, burst=None, namespace="links", directory=tmp_path)
    assert isinstance(shared, ProcessBudget) and shared.acquire(0.0) == 0.0
    assert victim.read_bytes() == b"important = yes\n" * 8
    assert "symbolic link, not followed" in caplog.text


def test_a_budget_file_of_another_user_is_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file another user made at our path, holding a forged record: it stalled every PutLogEvents for ~6,000
    years (each line then spilled at max_latency), and its owner could rewrite it at will."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a file owned by another user")
    path = budget_path("put", "forged", tmp_path, config=BudgetConfig(rate=RATE))
    path.write_bytes(encode(BudgetState(tokens=-1e12, updated=time.monotonic())))
    os.chown(path, 65534, 65534)
    path.chmod(0o666)
    shared = build_budget("host", rate=RATE, burst=None, namespace="forged", directory=tmp_path)
    assert isinstance(shared, ProcessBudget) and shared.acquire(time.monotonic()) == 0.0
    assert "belongs to uid 65534" in caplog.text


def test_an_own_budget_file_open_to_others_is_made_private(tmp_path: Path) -> None:
    path = budget_path("put", "open", tmp_path, config=BudgetConfig(rate=RATE))
    path.write_bytes(b"")
    path.chmod(0o666)
    HostBudget(BudgetConfig(rate=RATE), namespace="open", directory=tmp_path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def acquire_in_forked_child(shared: HostBudget) -> dict[str, object]:
    """Fork (Python's at-fork hooks run), take two tokens in the child, and say what happened there."""
    fork = multiprocessing.get_context("fork")
    result = fork.Queue()

    def child() -> None:
        lines: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(record.getMessage())

        logging.getLogger("mwaa_logging.budgets.host").addHandler(Keep(logging.WARNING))
        try:
            waits = [shared.acquire(time.monotonic()), shared.acquire(time.monotonic())]
            shared.on_throttled(time.monotonic())
            result.put({"waits": waits, "scope": shared.stats().scope, "warnings": lines})
        except Exception as exc:  # before the fix: every acquire raised what the at-fork reopen met
            result.put({"error": repr(exc)})

    process = fork.Process(target=child)
    process.start()
    answer: dict[str, object] = result.get(timeout=30)
    process.join(timeout=30)
    return answer


def test_a_forked_child_that_cannot_reopen_the_file_keeps_its_own_budget(tmp_path: Path) -> None:
    """The file at the budget's path changed between the parent's start and the fork (here a symbolic link, as
    another user could put there): the at-fork reopen failed, silently, and every acquire in the child raised,
    so its sender delivered nothing."""
    shared = HostBudget(BudgetConfig(rate=RATE, burst=BURST), namespace="refork", directory=tmp_path)
    assert shared.acquire(time.monotonic()) == 0.0
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    shared.path.unlink()
    shared.path.symlink_to(victim)
    answer = acquire_in_forked_child(shared)
    assert answer.get("error") is None, answer
    assert answer["waits"] == [0.0, 0.0] and answer["scope"] == "process"
    warnings = answer["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1  # said once, however many calls
    assert "symbolic link, not followed" in warnings[0] and "keeps its own budget" in warnings[0]
    assert victim.read_bytes() == b"keep"
    assert shared.acquire(time.monotonic()) == 0.0  # the parent keeps its open file


SETUID_FORK = """
import json, os, sys, time
from pathlib import Path
from mwaa_logging.budget import BudgetConfig
from mwaa_logging.budgets.host import HostBudget

shared = HostBudget(BudgetConfig(rate=10.0), namespace="setuid", directory=Path(sys.argv[1]))
shared.acquire(time.monotonic())
read, write = os.pipe()
if os.fork() == 0:  # a daemon that configured logging as root drops privileges, then forks its workers
    os.setgid(65534)
    os.setuid(65534)
    worker = os.fork()
    if worker == 0:
        try:
            out = {"wait": shared.acquire(time.monotonic()), "scope": shared.stats().scope, "path": str(shared.path)}
        except Exception as exc:
            out = {"error": repr(exc)}
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.waitpid(worker, 0)
    os._exit(0)
os.close(write)
os.wait()
print(os.read(read, 65536).decode())
"""


def test_a_child_forked_after_setuid_uses_the_budget_file_of_its_own_user() -> None:
    """gunicorn, a Celery worker started with --uid, any prefork server: the children reopened the root-owned 0600
    file of the parent's uid, got EACCES, and every acquire raised."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    shared_dir = Path(tempfile.mkdtemp(prefix="setuid-budget-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        shared_dir.chmod(0o1777)  # a world-writable directory, as /dev/shm (pytest's own tmp_path is root's only)
        done = subprocess.run([sys.executable, "-c", SETUID_FORK, str(shared_dir)], capture_output=True, text=True,
                              timeout=60, check=True)
        answer = json.loads(done.stdout)
        assert answer.get("error") is None, answer
        assert (answer["wait"], answer["scope"]) == (0.0, "host")  # still shared, by the processes of uid 65534
        roots = str(budget_path("put", "setuid", shared_dir, config=BudgetConfig(rate=10.0)))
        assert answer["path"] == roots.replace("-uid0.", "-uid65534.")
        assert Path(answer["path"]).stat().st_uid == 65534
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)


def take_at(directory: str, rate: float, now: float, count: int, throttle: bool = False) -> tuple[list[float], float]:
    """In a process of its own: ``count`` acquires at the injected ``now``; their waits and the rate in force."""
    shared = HostBudget(BudgetConfig(rate=rate), namespace="mixed", directory=Path(directory))
    waits = [shared.acquire(now) for _ in range(count)]
    if throttle:
        shared.on_throttled(now)
    return waits, shared.rate(now)


def test_processes_configured_with_other_rates_each_keep_their_own_limit(tmp_path: Path) -> None:
    """put_rate_limit 100 in one process and 2 in another, one host: they shared one bucket, and whichever took
    first took the other's rate (/tmp/rv/host_mixed.py: 0.2 calls/s for the one configured for 2, 98 for the
    other). Now each configuration has its bucket (file); processes with the same one still share it."""
    now = time.monotonic()
    with SPAWN.Pool(1) as pool:
        fast, fast_rate = pool.apply(take_at, (str(tmp_path), 100.0, now, 150, True))  # drains its bucket, throttled
        slow, slow_rate = pool.apply(take_at, (str(tmp_path), 2.0, now, 3))
        same, _ = pool.apply(take_at, (str(tmp_path), 100.0, now, 1))
    assert fast[:100] == [0.0] * 100 and all(wait > 0 for wait in fast[100:])
    assert slow[:2] == [0.0, 0.0] and slow[2] == pytest.approx(0.5)  # its own burst, then 2 calls/s
    assert (fast_rate, slow_rate) == (pytest.approx(70.0), 2.0)  # a throttle lowers its own bucket's rate
    assert same[0] > 0  # the same configuration, the same (drained) bucket
    assert len(list(tmp_path.glob("mixed-put-*.budget"))) == 2


def test_the_budget_file_names_the_configuration() -> None:
    directory = Path("/nonexistent")
    assert budget_path("put", "ns", directory, config=BudgetConfig(rate=5)) == budget_path(
        "put", "ns", directory, config=BudgetConfig(rate=5, burst=5))  # the default burst is one second of rate
    names = {budget_path("put", "ns", directory, config=config).name
             for config in (BudgetConfig(rate=5), BudgetConfig(rate=5, burst=10), BudgetConfig(rate=0.5),
                            BudgetConfig(), BudgetConfig(burst=10))}
    assert names == {f"ns-put-{tag}-uid{os.getuid()}.budget"
                     for tag in ("rate5-burst5", "rate5-burst10", "rate0.5-burst1", "unlimited", "unlimited-burst10")}


TRUNCATE = """
import os, sys, time
from pathlib import Path
from mwaa_logging.budget import BudgetConfig
from mwaa_logging.budgets.host import HostBudget

shared = HostBudget(BudgetConfig(rate=10), namespace="truncated", directory=Path(sys.argv[1]))
shared.acquire(time.monotonic())
os.truncate(shared.path, 0)  # an operator's ': > /dev/shm/x.budget', a cleanup tool
print(shared.acquire(time.monotonic()), shared.path.stat().st_size)
"""


def test_a_budget_file_truncated_under_a_running_process_does_not_kill_it(tmp_path: Path) -> None:
    """The file was memory-mapped: truncated by someone else, every process using it died of SIGBUS at its next
    acquire (exit -7). Read with pread, the short record holds no state (the process goes on from the last one it
    saw) and the next write makes it whole."""
    done = subprocess.run([sys.executable, "-c", TRUNCATE, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.split() == ["0.0", str(RECORD_SIZE)]


def test_a_process_moves_to_a_budget_file_made_after_its_own_was_removed(tmp_path: Path) -> None:
    """The file removed under running processes (a cleanup; systemd-logind's RemoveIPC): they kept the old inode and
    processes started since made a new file, two full buckets (10 + 10 calls at once against a burst of 10)."""
    config = BudgetConfig(rate=10)
    old = HostBudget(config, directory=tmp_path, path_check_interval=0.0)
    assert old.acquire(0.0) == 0.0
    old.path.unlink()
    new = HostBudget(config, directory=tmp_path)
    assert [new.acquire(0.0) for _ in range(10)] == [0.0] * 10
    assert old.acquire(0.0) > 0.0  # the bucket at the path is empty: was granted from the old file's 9 tokens
    assert old.stats().scope == "host"


def test_a_process_that_finds_its_budget_file_gone_makes_it_again_with_its_state(tmp_path: Path) -> None:
    config = BudgetConfig(rate=10)
    old = HostBudget(config, directory=tmp_path, path_check_interval=0.0)
    assert [old.acquire(0.0) for _ in range(4)] == [0.0] * 4
    old.path.unlink()
    assert old.acquire(0.0) == 0.0  # made the file again, carrying its state over: 5 taken
    assert old.path.stat().st_size == RECORD_SIZE
    new = HostBudget(config, directory=tmp_path)
    assert sum(new.acquire(0.0) == 0.0 for _ in range(10)) == 5  # one bucket of 10, not a fresh one


def test_the_budget_file_is_checked_at_most_every_path_check_interval(tmp_path: Path) -> None:
    config = BudgetConfig(rate=10)
    old = HostBudget(config, directory=tmp_path, path_check_interval=3600.0)
    assert old.acquire(0.0) == 0.0  # checked at the first call
    old.path.unlink()
    assert old.acquire(0.0) == 0.0
    assert not old.path.exists()  # not checked again within the hour: no stat per acquire


def test_a_budget_file_that_cannot_be_written_leaves_the_process_its_own_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Truncated, then its pages taken on a full /dev/shm: the write fails (ENOSPC); logging goes on, with a warning."""
    shared = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path)

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    assert shared.acquire(0.0) == 0.0
    monkeypatch.undo()
    assert [shared.acquire(0.0) for _ in range(2)] == [0.0, pytest.approx(0.1)]  # its own bucket, from that state
    assert shared.stats().scope == "process"
    assert "No space left on device" in caplog.text and "keeps its own budget" in caplog.text


def test_a_truncated_budget_file_is_no_full_bucket_for_the_processes_that_used_it(tmp_path: Path) -> None:
    """Each truncation gave every process a fresh bucket: one more burst each time (125 calls in 8 s against 90
    allowed for 16 processes, four truncations)."""
    shared = HostBudget(BudgetConfig(rate=10), directory=tmp_path)
    assert [shared.acquire(0.0) for _ in range(10)] == [0.0] * 10
    os.truncate(shared.path, 0)
    assert shared.acquire(0.0) == pytest.approx(0.1)
    assert shared.path.stat().st_size == RECORD_SIZE  # written whole again


def test_a_process_that_could_not_write_the_budget_file_shares_it_again_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that failed once (a full /dev/shm) left the process on a budget of its own for the rest of its life:
    16 processes granted 160 calls a second against a limit of 10 after the space came back."""
    shared = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path, path_check_interval=0.0)
    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", lambda fd, data, offset: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        assert shared.acquire(0.0) == 0.0
    assert shared.stats().scope == "process"
    assert shared.acquire(0.0) == 0.0  # the file can be written again: shared, from the state it had (1 left)
    assert shared.stats().scope == "host" and "shared with the host's other processes again" in caplog.text
    other = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path)
    assert other.acquire(0.0) == pytest.approx(0.1)  # the file holds that state: the bucket is empty


def test_a_child_forked_while_its_parent_could_not_write_shares_the_file_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child of a process on its own budget since a write failed kept its own for life (16 such children: 784
    grants in 4 s against ~50 allowed)."""
    shared = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path, path_check_interval=0.0)
    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", lambda fd, data, offset: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        assert shared.acquire(0.0) == 0.0
    assert shared.stats().scope == "process"
    fork = multiprocessing.get_context("fork")
    result = fork.Queue()
    child = fork.Process(target=lambda: result.put((shared.acquire(0.0), shared.stats().scope)))
    child.start()
    child.join(30)
    assert result.get(timeout=5) == (0.0, "host")


def test_a_child_forked_while_dev_shm_is_still_full_shares_the_file_once_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked while the space its parent lacked was still lacking, the child could not open the file and never
    tried again (4 such children: 84 grants in 2 s against ~22 allowed)."""
    from mwaa_logging.budgets import host

    full = [True]
    reserve = host._reserve

    def reserve_unless_full(fd: int) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        reserve(fd)

    shared = HostBudget(BudgetConfig(rate=10, burst=2), directory=tmp_path, path_check_interval=0.0)
    monkeypatch.setattr(host, "_reserve", reserve_unless_full)
    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", lambda fd, data, offset: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        assert shared.acquire(0.0) == 0.0
    fork = multiprocessing.get_context("fork")
    result = fork.Queue()

    def child() -> None:
        before = shared.stats().scope
        full[0] = False  # room again
        result.put((before, shared.acquire(0.0), shared.stats().scope))

    process = fork.Process(target=child)
    process.start()
    process.join(30)
    assert result.get(timeout=5) == ("process", 0.0, "host")
