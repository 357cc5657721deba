"""close(), the exit hooks and records logged after close(): real processes against the local endpoint.

In tests/unit so that scripts/test.sh runs them on Python 3.13 too: from 3.12 no thread can be started in an atexit
hook, and a forked child's engine has no sender thread until it needs one.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import mwaa_logging
from mwaa_logging.engine import engine as engine_module
from mwaa_logging.engine.engine import Engine
from mwaa_logging.outcome import CallResult
from mwaa_logging.spillformat import decode_records
from mwaa_logging.testing.local_aws import LocalAWS
from tests.unit.engine_fakes import OK, Call, FakeClock, ScriptedTransport, make_rig

REPO = Path(__file__).resolve().parents[2]


def spilled_messages(*directories: Path) -> list[str]:
    return [record.message for directory in directories for path in sorted(directory.rglob("*.jsonl.gz"))
            for record in decode_records(path.read_bytes())]


def run_script(script: str, local_aws: LocalAWS) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=60)


class _ThreadThatCannotStart(threading.Thread):
    def start(self) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")


def test_with_no_sender_thread_close_delivers_on_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.12+ refuses new threads in atexit hooks: the wake-up of the first append (or of close()) raised
    out of emit() and handler.close(), and what was queued was never sent."""
    monkeypatch.setattr(engine_module.threading, "Thread", _ThreadThatCannotStart)
    rig = make_rig(send_interval=5.0)
    engine = Engine(start_thread=True)
    rig.channel.engine = engine
    engine.attach(rig.channel)
    now_ms = int(time.time() * 1000)
    for i in range(3):
        rig.channel.append("s", now_ms, f"line {i}")  # no thread: does not raise
    assert engine.sender_missing()
    assert rig.channel.close(10)
    assert rig.transport.delivered_messages() == ["line 0", "line 1", "line 2"]
    assert rig.channel.stats().balanced() and rig.channel.stats().pending == 0


FORKED_CHILD_LOGS_ONLY_AT_EXIT = """
import atexit, os, sys, threading
def late():  # registered before logging is imported: runs after logging.shutdown()
    import logging
    for i in range(3):
        logging.getLogger("app").info("late %d from %s", i, "child" if os.getpid() != parent else "parent")
atexit.register(late)
import logging, mwaa_logging
parent = os.getpid()
if sys.argv[2] == "emulate":  # Python 3.12's refusal, on any version: no new thread once atexit hooks run
    exiting, start = [], threading.Thread.start
    def refuse(self):
        if exiting:
            raise RuntimeError("can't create new thread at interpreter shutdown")
        start(self)
    threading.Thread.start = refuse
    atexit.register(exiting.append, True)  # registered last: runs first
class Marker(logging.Handler):  # a handler closed after ours by logging.shutdown()
    def emit(self, record):
        pass
    def close(self):
        if os.getpid() != parent:
            open(sys.argv[1], "w").write("closed")
        super().close()
logger = logging.getLogger("app")
logger.setLevel(logging.INFO)
logger.addHandler(Marker())
logger.addHandler(mwaa_logging.CloudWatchLogHandler(log_group_name="forked-exit", log_stream_name="s-{process_id}",
                                                    close_timeout=10))
logger.info("parent line")
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the child logged nothing: its engine has no sender thread yet
_, status = os.waitpid(pid, 0)
print(parent, pid, status)
"""


def python_312_or_later() -> str | None:
    """An interpreter of Python 3.12 or later that can import this project (3.13 lets atexit hooks start threads
    again; 3.12 does not): ``$MWAA_LOGGING_PYTHON312``, the repository's ``.venv-3.12``, or this one."""
    candidates = [os.environ.get("MWAA_LOGGING_PYTHON312", ""), str(REPO / ".venv-3.12" / "bin" / "python")]
    if sys.version_info >= (3, 12):
        candidates.append(sys.executable)
    for candidate in filter(None, candidates):
        if os.access(candidate, os.X_OK) and subprocess.run(
                [candidate, "-c", "import sys, mwaa_logging; assert sys.version_info >= (3, 12)"], capture_output=True,
                env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60).returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.parametrize("how", ["emulate", "python3.12+"])
def test_a_forked_child_that_logs_only_at_exit_closes_every_handler_and_delivers(
        local_aws: LocalAWS, spill_dir: Path, tmp_path: Path, how: str) -> None:
    """Python 3.12: RuntimeError (can't create new thread at interpreter shutdown) escaped handler.close(), so
    logging.shutdown() never closed the handlers after ours, and the child's lines logged after it were lost."""
    python = sys.executable if how == "emulate" else python_312_or_later()
    if python is None:
        pytest.skip("no Python 3.12+ that can import this project (set MWAA_LOGGING_PYTHON312, or make .venv-3.12)")
    marker = tmp_path / "marker"
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(REPO)}
    result = subprocess.run([python, "-c", FORKED_CHILD_LOGS_ONLY_AT_EXIT, str(marker), how], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    parent, child, status = result.stdout.split()
    assert status == "0"
    assert "Traceback" not in result.stderr and "could not wake" not in result.stderr, result.stderr
    assert marker.exists()  # logging.shutdown() went on to the next handler
    assert local_aws.messages("forked-exit", f"s-{child}") == [f"late {i} from child" for i in range(3)]
    assert local_aws.messages("forked-exit", f"s-{parent}") == ["parent line"] + [f"late {i} from parent"
                                                                            for i in range(3)]
    assert not spilled_messages(spill_dir, spill_dir.parent / "cache")


LOGS_FROM_A_DEL_AT_FINALIZATION = """
import logging, os, sys, mwaa_logging
handler = mwaa_logging.CloudWatchLogHandler(log_group_name="finalizing", log_stream_name="s", close_timeout=10)
logger = logging.getLogger("app")
logger.setLevel(logging.INFO)
logger.propagate = False
logger.addHandler(handler)
class LogsWhenCollected:
    def __del__(self, logger=logger, sys=sys, os=os):
        assert sys.is_finalizing()
        logger.info("from __del__ at finalization")
        os.write(1, b"logged\\n")
keep = LogsWhenCollected()  # a module global: collected while the interpreter finalizes (no import works then)
logger.info("main line")
"""


def test_a_record_logged_while_the_interpreter_finalizes_is_spilled_once(local_aws: LocalAWS,
                                                                        spill_dir: Path) -> None:
    """close() imported a module when called (ImportError: sys.meta_path is None), emit() then queued the record a
    second time, and neither copy was sent nor spilled (the spill imported io and ctypes when called), unsaid."""
    result = run_script(LOGS_FROM_A_DEL_AT_FINALIZATION, local_aws)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "logged\n"
    assert local_aws.messages("finalizing", "s") == ["main line"]
    # the sender cannot run any more: spilled, once
    assert spilled_messages(spill_dir, spill_dir.parent / "cache") == ["from __del__ at finalization"]
    assert "lost" not in result.stderr, result.stderr


def test_a_record_logged_while_the_interpreter_finalizes_that_no_target_can_store_is_said_lost(
        local_aws: LocalAWS, tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    (temp / f"mwaa-logging-spill-{os.getuid()}").write_text("a file where the fallback directory would be")
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(REPO), "TMPDIR": str(temp),
               "MWAA_LOGGING_SPILL_TO": "/proc/no-such-directory", "XDG_CACHE_HOME": "/proc/no-such-cache"}
    result = subprocess.run([sys.executable, "-c", LOGS_FROM_A_DEL_AT_FINALIZATION], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "logged\n"
    lost = [line for line in result.stderr.splitlines() if "lost" in line]
    assert len(lost) == 1 and lost[0].startswith("1 log events of log group finalizing are lost"), result.stderr


def test_close_flushes_what_came_before_it_while_more_keeps_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() flushed until nothing was left: while other threads logged in a loop there always was something, so
    it ran to its deadline on a healthy endpoint and spilled everything pending (close_deadline). Here every call
    brings one more record (as threads logging meanwhile do), as long as close() has not returned."""
    closing = threading.Event()

    def another_record_meanwhile(call: Call) -> CallResult:
        if closing.is_set():
            rig.channel.append("s", int(time.time() * 1000), "logged while close() runs")
        return OK

    rig = make_rig(ScriptedTransport(on_call=another_record_meanwhile), send_interval=0.1, close_timeout=3)
    engine = Engine(start_thread=True)  # a real sender thread serving the rig's channel
    rig.channel.engine = engine
    engine.attach(rig.channel)
    try:
        rig.channel.append("s", int(time.time() * 1000), "before close")
        closing.set()
        assert rig.channel.close()
        closing.clear()
        assert rig.channel.flush(10)
        stats = rig.channel.stats()
        assert stats.spilled == {} and not rig.spill.records
        assert stats.delivered == stats.emitted and stats.balanced()
    finally:
        closing.clear()
        engine._stopped = True  # let the thread end (the process-wide engine never stops)
        engine.wake()


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"exit-paths-{time.monotonic_ns()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def test_close_while_other_threads_log_in_a_loop_returns_once_what_came_before_is_delivered(
        local_aws: LocalAWS, spill_dir: Path, app_logger: logging.Logger) -> None:
    """close() flushed until nothing was left: while other threads kept logging there always was, so it ran to its
    deadline on a healthy endpoint and spilled everything pending (close_deadline)."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="busy-close", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1, close_timeout=20)
    app_logger.addHandler(handler)
    stop, logged = threading.Event(), [0] * 4
    app_logger.info("first")

    def spam(i: int) -> None:
        while not stop.is_set():
            app_logger.info("t%d %d", i, logged[i])
            logged[i] += 1

    threads = [threading.Thread(target=spam, args=(i,)) for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for thread in threads:
            thread.start()
        took = []
        for _ in range(3):  # closed again: the records logged after close() reopened it
            count = sum(logged)
            while sum(logged) < count + 1000:  # they are logging
                time.sleep(0.01)
            started = time.monotonic()
            handler.close()
            took.append(time.monotonic() - started)
        stop.set()
        for thread in threads:
            thread.join()
    assert handler.flush(30)
    stats = handler.stats()
    assert stats.spilled == {} and stats.spill_failures == 0
    assert max(took) < 15, took  # not its 30 s deadline
    assert len(local_aws.messages("busy-close", "s")) == sum(logged) + 1
    assert not spilled_messages(spill_dir)


def test_emitted_after_close_counts_records(local_aws: LocalAWS, spill_dir: Path, app_logger: logging.Logger) -> None:
    """It counted how often the handler was reopened: 1 for any number of records after close()."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="after-close", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    app_logger.addHandler(handler)
    app_logger.info("before close")
    handler.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(5):
            app_logger.info("after close %d", i)
    assert handler.flush(10)
    assert handler.stats().emitted_after_close == 5
    assert local_aws.messages("after-close", "s") == ["before close"] + [f"after close {i}" for i in range(5)]
    handler.close()
    app_logger.info("after the second close")
    assert handler.flush(10)
    assert handler.stats().emitted_after_close == 6


def test_each_close_of_one_logging_shutdown_counts_its_timeout_from_that_shutdowns_first_close() -> None:
    from mwaa_logging.handler import _ShutdownDeadlines

    clock = FakeClock(0.0)
    deadlines = _ShutdownDeadlines(clock)
    first, second = object(), object()
    assert deadlines.remaining(None, 2.0) == math.inf  # not within logging.shutdown(): the close's own timeout
    assert deadlines.remaining(first, 2.0) == 2.0
    clock.advance(2.0)  # the first handler's close ran into its deadline
    assert deadlines.remaining(first, 2.0) == 0.0  # the next ones of that shutdown spill at once
    assert deadlines.remaining(first, 5.0) == 3.0  # a longer close_timeout keeps what is left of it
    assert deadlines.remaining(None, 2.0) == math.inf
    assert deadlines.remaining(second, 2.0) == 2.0  # another logging.shutdown() starts again


class _OwnClose(mwaa_logging.CloudWatchLogHandler):
    """A subclass with a close() of its own, as Airflow 2's task handler's inner one."""

    def close(self, timeout: float | None = None) -> None:  # type: ignore[override]
        super().close(timeout)


@pytest.mark.parametrize("kinds", [(mwaa_logging.CloudWatchLogHandler,) * 3,
                                   (mwaa_logging.CloudWatchLogHandler, _OwnClose, _OwnClose)])
def test_logging_shutdown_of_several_handlers_with_an_endpoint_that_hangs_takes_one_close_timeout(
        local_aws: LocalAWS, spill_dir: Path, kinds: tuple[type[mwaa_logging.CloudWatchLogHandler], ...]) -> None:
    """Each handler waited its whole close_timeout: 3 handlers, 3 times close_timeout (a subclass overriding close()
    was not taken as closed by the shutdown: one more close_timeout)."""
    handlers = [kind(log_group_name=f"hung-{k}", log_stream_name="s", endpoint_url=local_aws.url, close_timeout=2,
                     read_timeout=30)
                for k, kind in enumerate(kinds)]
    local_aws.faults.inject("hang")
    try:
        for k, handler in enumerate(handlers):
            handler.emit(logging.makeLogRecord({"msg": f"line of handler {k}", "name": "app"}))
        started = time.monotonic()
        logging.shutdown([weakref.ref(handler) for handler in handlers])
        took = time.monotonic() - started
    finally:
        local_aws.faults.clear()
    assert sorted(spilled_messages(spill_dir)) == [f"line of handler {k}" for k in range(3)]
    assert took < 4.5, took  # one close_timeout (2 s) and the local spills: not 3 times 2 s


def test_a_closed_channel_the_sender_retires_while_a_record_arrives_is_served_again() -> None:
    """The sender checked the closed channel empty and removed it; a record queued in between saw the channel still
    attached and did not attach it again: stranded, never sent, nothing said."""
    rig = make_rig(send_interval=5.0)
    engine = Engine(start_thread=False)
    rig.channel.engine = engine
    engine.attach(rig.channel)
    rig.channel.close(0)
    checks = iter([False, True])  # empty when looked at, then the record queued by another thread
    rig.channel.has_work = lambda: next(checks, True)  # type: ignore[method-assign]
    engine._retire(rig.channel)
    assert rig.channel in engine.channels()


def test_asking_for_the_memory_guard_never_raises_where_no_thread_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """relieve() raised where no thread could start (Python 3.12 atexit hooks): out of the check after a record
    logged after close(), and emit() then queued that record a second time (stored twice)."""
    monkeypatch.setattr(engine_module.threading, "Thread", _ThreadThatCannotStart)
    engine = Engine(start_thread=True)
    engine.relieve()  # does not raise
    assert engine.sender_missing()
