"""The handler end to end: boto3 over HTTP against the strict local endpoint, with faults and real processes."""

from __future__ import annotations

import itertools
import json
import logging
import logging.config
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest

import mwaa_logging
from mwaa_logging.engine.channel import CHECK_SENDER_MASK
from mwaa_logging.engine.delivery import MARKER_PREFIX
from mwaa_logging.splitting import reassemble_messages
from mwaa_logging.streamnames import StreamNamer
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records
from tests.waiting import wait_until

WORKER = Path(__file__).with_name("log_worker.py")
_namespaces = itertools.count()


def user_lines(messages: list[str]) -> list[str]:
    return [m for m in messages if not m.startswith(MARKER_PREFIX)]


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def run_workers(local_aws: LocalAWS, group: str, count: int, processes: int, *extra: str,
                env: dict[str, str] | None = None, timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
    environ = {**os.environ, **local_aws.env(), **(env or {}), "PYTHONPATH": str(WORKER.parents[2])}
    procs = [subprocess.Popen([sys.executable, str(WORKER), group, str(count), *extra], env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        assert proc.returncode == 0, err
    return results


def test_many_processes_through_throttling_and_faults_lose_nothing(local_aws: LocalAWS, spill_dir: Path) -> None:
    local_aws.set_quota(put_tps=4)
    local_aws.faults.inject("unavailable", probability=0.1)
    local_aws.faults.inject("drop", probability=0.05)
    local_aws.faults.inject("lost_reply", probability=0.05)
    count, processes = 3000, 4
    results = run_workers(local_aws, "fault-run", count, processes,
                          env={"MWAA_LOGGING_SEND_INTERVAL": "0.2", "MWAA_LOGGING_CLOSE_TIMEOUT": "60",
                               "MWAA_LOGGING_MAX_BATCH_COUNT": "500"})
    stats = [json.loads(r.stdout) for r in results]
    streams = local_aws.streams()["fault-run"]
    assert len(streams) == processes
    spilled = Counter(r.message for r in spilled_records(spill_dir))
    for stream in streams:
        delivered = set(user_lines(local_aws.messages("fault-run", stream)))
        pid = stream.rsplit("-", 1)[1]
        expected = {f"line {i:06d} of a worker that logs a realistic ~100 byte message with some padding"
                    for i in range(count)}
        missing = expected - delivered - set(spilled)
        assert not missing, f"{len(missing)} lines of process {pid} lost"
    server = local_aws.stats()
    assert server.invalid == 0, server.last_invalid
    assert server.throttled > 0 and server.unavailable + server.dropped + server.lost_replies > 0
    for s in stats:
        assert s["emitted"] == s["delivered"] + s["spilled_total"] + s["pending"]
        assert s["pending"] == 0


def test_lines_are_delivered_at_interpreter_exit_without_flush(local_aws: LocalAWS, spill_dir: Path) -> None:
    run_workers(local_aws, "exit-run", 2000, 1, "--no-flush")
    (stream,) = local_aws.streams()["exit-run"]
    assert len(user_lines(local_aws.messages("exit-run", stream))) == 2000
    assert not spill_dir.exists()


@pytest.mark.parametrize("client", ["built", "user-supplied"])
def test_forked_child_records_arrive(local_aws: LocalAWS, spill_dir: Path, client: str) -> None:
    # a user-supplied client reaches the child with the parent's pooled connections: they must not be reused
    settings = ({"endpoint_url": local_aws.url} if client == "built"
                else {"boto3_client": boto3.client("logs", endpoint_url=local_aws.url)})
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="fork", log_stream_name="p-{process_id}",
                                                send_interval=0.2, **settings)
    logger = make_logger("forking", handler)
    logger.info("parent before fork")
    assert handler.flush(10)  # the parent's connection is open and pooled when it forks
    pid = os.fork()
    if pid == 0:  # child: log, then exit the way Airflow's task runner does
        try:
            for i in range(100):
                logger.info("child %d", i)
            logging.shutdown()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    logger.info("parent after fork")
    assert handler.flush(10)
    child = user_lines(local_aws.messages("fork", f"p-{pid}"))
    assert child == [f"child {i}" for i in range(100)]
    parent = user_lines(local_aws.messages("fork", f"p-{os.getpid()}"))
    assert parent == ["parent before fork", "parent after fork"]  # the child did not send the parent's line
    handler.close()


def _child_logs_and_returns(url: str) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="mp", log_stream_name="p-{process_id}",
                                                endpoint_url=url)
    make_logger("mp-child", handler).info("from a multiprocessing child")
    # no flush, no close: the process ends through multiprocessing's own exit path


def test_multiprocessing_fork_child_is_flushed_at_its_exit(local_aws: LocalAWS, spill_dir: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_child_logs_and_returns, args=(local_aws.url,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert user_lines(local_aws.messages("mp", f"p-{proc.pid}")) == ["from a multiprocessing child"]


def test_a_batch_size_with_no_room_for_a_split_chunk_is_refused_and_the_smallest_one_splits(
        local_aws: LocalAWS, spill_dir: Path) -> None:
    # max_batch_size=50 was accepted, then every message needing a split made the sender fail and lose the pass
    with pytest.raises(mwaa_logging.SettingsError, match="max_batch_size=50"):
        mwaa_logging.CloudWatchLogHandler(log_group_name="small", log_stream_name="s", endpoint_url=local_aws.url,
                                          max_batch_size=50)
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="small", log_stream_name="s",
                                                endpoint_url=local_aws.url, max_batch_size=128, send_interval=0.1)
    logger = make_logger("small-batches", handler)
    lines = ["short-1", "x" * 100 + " long-2", "short-3", "é" * 400 + " long-4"]
    for line in lines:
        logger.info(line)
    assert handler.flush(timeout=30)
    handler.close()
    assert list(reassemble_messages(local_aws.messages("small", "s"))) == lines
    stats = handler.stats()
    assert stats.balanced() and (stats.pending, stats.spilled_total, stats.split_events) == (0, 0, 2), stats


def test_close_against_a_never_answering_endpoint_returns_by_its_deadline(local_aws: LocalAWS,
                                                                           spill_dir: Path) -> None:
    local_aws.faults.inject("hang")
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="hang", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1,
                                                read_timeout=60, close_timeout=2)
    logger = make_logger("hanging", handler)
    for i in range(10):
        logger.info("stuck %d", i)
    started = time.monotonic()
    assert handler.flush(timeout=0.5) is False
    handler.close()
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 0.5 + 1.0, elapsed
    records = spilled_records(spill_dir)
    assert sorted(r.message for r in records) == [f"stuck {i}" for i in range(10)]
    assert {r.reason for r in records} == {"close_deadline"}
    stats = handler.stats()
    assert stats.balanced() and stats.pending == 0
    local_aws.faults.clear()


def test_close_spilling_to_an_s3_that_never_answers_returns_about_a_second_after_its_deadline(
        local_aws: LocalAWS, spill_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the S3 client's read timeout (10 s) used to apply whatever the close timeout
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    fallback = spill_dir.parent / "cache"  # XDG_CACHE_HOME: the handler's local fallback is under it
    fallback.mkdir()
    local_aws.faults.inject("hang")  # PutLogEvents
    local_aws.faults.inject("hang", api="s3:PUT")  # and the spill's PutObject
    try:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="hang-s3", log_stream_name="s",
                                                    endpoint_url=local_aws.url, spill_to="s3://spill/prefix",
                                                    send_interval=0.1, read_timeout=60)
        logger = make_logger("hanging-s3", handler)
        for i in range(10):
            logger.info("stuck %d", i)
        assert handler.flush(timeout=0.5) is False
        started = time.monotonic()
        handler.close(timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        local_aws.faults.clear()
    assert elapsed < 0.5 + 1.0 + 1.0, elapsed
    records = spilled_records(fallback)
    assert sorted(r.message for r in records) == [f"stuck {i}" for i in range(10)]
    assert {r.reason for r in records} == {"close_deadline"}
    stats = handler.stats()
    assert stats.balanced() and stats.pending == 0 and stats.spilled == {"close_deadline": 10}


def test_dict_config_reconfiguration_neither_deadlocks_nor_loses_lines(local_aws: LocalAWS,
                                                                         spill_dir: Path) -> None:
    def config(stream: str) -> dict[str, object]:
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"cw": {"()": "mwaa_logging.CloudWatchLogHandler", "log_group_name": "dict",
                                "log_stream_name": stream, "endpoint_url": local_aws.url, "send_interval": 30}},
            "loggers": {"app": {"handlers": ["cw"], "level": "INFO", "propagate": False}},
        }

    logging.config.dictConfig(config("first"))
    for i in range(50):
        logging.getLogger("app").info("before %d", i)
    # dictConfig closes the old handler while holding logging's module lock
    done = threading.Event()
    thread = threading.Thread(target=lambda: (logging.config.dictConfig(config("second")), done.set()))
    thread.start()
    thread.join(15)
    assert done.is_set(), "dictConfig deadlocked"
    logging.getLogger("app").info("after")
    assert mwaa_logging.flush_all(15)
    assert local_aws.messages("dict", "first") == [f"before {i}" for i in range(50)]
    assert local_aws.messages("dict", "second") == ["after"]
    app = logging.getLogger("app")
    app.handlers[0].close()
    app.handlers[:] = []
    app.propagate = True


def test_records_from_botocore_never_loop_back(local_aws: LocalAWS, spill_dir: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="loop", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # botocore and urllib3 log every request at DEBUG
    try:
        for i in range(5):
            logging.getLogger("loop-app").info("mine %d", i)
        assert handler.flush(10)
    finally:
        root.removeHandler(handler)
    assert local_aws.messages("loop", "s") == [f"mine {i}" for i in range(5)]
    handler.close()


def test_record_after_close_is_delivered_with_a_warning(local_aws: LocalAWS, spill_dir: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="late", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("late", handler)
    logger.info("before close")
    handler.close()
    assert handler.shutting_down
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.info("after close")
    warned = [w for w in caught if issubclass(w.category, mwaa_logging.WatchtowerWarning)]
    assert [w.filename for w in warned] == [__file__]  # the line that logged it, not the library's
    assert handler.flush(10)
    assert local_aws.messages("late", "s") == ["before close", "after close"]
    assert handler.stats().emitted_after_close == 1
    handler.close()


LOGS_AFTER_LOGGING_SHUTDOWN = """
import atexit, sys
assert "logging" not in sys.modules
def late():
    for i in range(50):
        logger.info("after logging.shutdown %d", i)
atexit.register(late)  # registered before logging is imported: runs after logging.shutdown()
import logging, mwaa_logging
handler = mwaa_logging.CloudWatchLogHandler(log_group_name="late-exit", log_stream_name="s")
logger = logging.getLogger("app")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.info("before exit")
"""


def test_records_logged_after_the_exit_flush_are_delivered_not_lost(local_aws: LocalAWS, spill_dir: Path) -> None:
    # The handler warned "it is delivered anyway", but once logging.shutdown() had run at exit nothing sent them
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(WORKER.parents[2])}
    result = subprocess.run([sys.executable, "-c", LOGS_AFTER_LOGGING_SHUTDOWN], env=environ, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "delivered anyway" in result.stderr
    assert user_lines(local_aws.messages("late-exit", "s")) == ["before exit"] + [
        f"after logging.shutdown {i}" for i in range(50)]


STREAM_WRITES_AFTER_EXIT = """
import atexit, threading, time
atexit.register(lambda: stream.write("from an atexit function that runs after the library's"))
import mwaa_logging
stream = mwaa_logging.open_stream("late-stream", "s")
atexit.register(lambda: stream.write("from an atexit function"))
def worker():
    time.sleep(1)  # the main thread has returned and the exit flush has run
    for i in range(3000):
        stream.write(f"from a thread after exit {i}")
threading.Thread(target=worker).start()  # not a daemon: the interpreter waits for it
stream.write("main line")
"""


def test_stream_lines_written_after_the_exit_flush_are_delivered_not_lost(local_aws: LocalAWS,
                                                                         spill_dir: Path) -> None:
    """open_stream (Airflow 3's remote IO, tools) had nothing like the handler's late delivery: lines a non-daemon
    thread or an atexit function wrote after the exit flush were queued, then lost with the process, unsaid. (A
    first fix delivered each such line at once: 3,000 lines of a thread took 520 calls, then 2,482 spill files.)"""
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(WORKER.parents[2])}
    result = subprocess.run([sys.executable, "-c", STREAM_WRITES_AFTER_EXIT], env=environ, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(local_aws.messages("late-stream", "s")) == sorted(
        ["main line", "from an atexit function", "from an atexit function that runs after the library's"]
        + [f"from a thread after exit {i}" for i in range(3000)])
    assert local_aws.stats().calls["PutLogEvents"] <= 8  # batches, not a call a line
    assert not list(spill_dir.rglob("*.jsonl.gz"))


CLOSED_HANDLER_LOGGED_TO_AFTER_EXIT = """
import logging, threading, time
import mwaa_logging
handler = mwaa_logging.CloudWatchLogHandler(log_group_name="late-closed", log_stream_name="s", close_timeout=2)
logger = logging.getLogger("app")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.info("main line")
handler.close()
def worker():
    time.sleep(1)  # the main thread has returned and the exit flush has run
    for i in range(500):
        logger.info("from a thread after exit %d", i)
threading.Thread(target=worker).start()  # not a daemon: the interpreter waits for it
"""


def test_records_a_thread_logs_to_a_closed_handler_after_exit_are_sent_in_batches(local_aws: LocalAWS,
                                                                                    spill_dir: Path) -> None:
    """After the exit hook, each record logged after close() was delivered on its own (threading's exit hook runs
    before non-daemon threads are joined): 500 records of a thread took 502 calls, or 501 spill files against a hung
    endpoint. The atexit hook, after the join, delivers them in batches, as open_stream's lines."""
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(WORKER.parents[2])}
    result = subprocess.run([sys.executable, "-c", CLOSED_HANDLER_LOGGED_TO_AFTER_EXIT], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(user_lines(local_aws.messages("late-closed", "s"))) == sorted(
        ["main line"] + [f"from a thread after exit {i}" for i in range(500)])
    assert local_aws.stats().calls["PutLogEvents"] <= 8  # batches, not a call a line
    assert not list(spill_dir.rglob("*.jsonl.gz"))


def test_oversized_records_arrive_split_and_valid(local_aws: LocalAWS, spill_dir: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="big", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("big", handler)
    big = "0123456789" * 120_000  # 1.2 MB
    logger.info(big)
    logger.info("small after big")
    assert handler.flush(10)
    messages = local_aws.messages("big", "s")
    assert len(messages) == 3 and messages[-1] == "small after big"
    from mwaa_logging.splitting import reassemble_messages

    assert list(reassemble_messages(messages)) == [big, "small after big"]
    assert local_aws.stats().invalid == 0
    handler.close()


def test_messages_are_sized_in_utf8_bytes_where_they_are_logged(local_aws: LocalAWS, spill_dir: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="sizes", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1,
                                                max_message_size=1026)  # messages of up to 1,000 bytes
    logger = make_logger("sizes", handler)
    logger.info("é" * 500)  # 1,000 bytes: fits
    logger.info("é" * 501)  # 1,002 bytes in 501 characters: split
    logger.info("")
    assert handler.flush(10)
    messages = local_aws.messages("sizes", "s")
    assert messages[0] == "é" * 500 and len(messages) == 4 and messages[-1] == "(empty log message)"
    from mwaa_logging.splitting import reassemble_messages

    assert list(reassemble_messages(messages[1:3])) == ["é" * 501]
    assert handler.stats().split_events == 1
    handler.close()


def test_a_formatter_that_returns_bytes_still_gets_its_record_delivered(local_aws: LocalAWS,
                                                                      spill_dir: Path) -> None:
    class BytesFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return record.getMessage().encode()  # type: ignore[return-value]

    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="bytes", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    handler.setFormatter(BytesFormatter())
    make_logger("bytes", handler).info("as bytes")
    assert handler.flush(10)
    assert local_aws.messages("bytes", "s") == ["b'as bytes'"]
    handler.close()


def test_dict_messages_arrive_as_the_formatter_writes_them(local_aws: LocalAWS, spill_dir: Path) -> None:
    """emit inlines the formatter's dict path (the Airflow 3 / MWAA task log line): same JSON, the handler's
    json_serialize_default, and the formatter itself for what the inlined path does not cover."""
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="dicts", log_stream_name="s", endpoint_url=local_aws.url, send_interval=0.1,
        json_serialize_default=lambda o: f"<{type(o).__name__}>")
    logger = make_logger("dicts", handler)
    when = datetime(2026, 11, 24, tzinfo=timezone.utc)
    messages: list[object] = [{"event": "task line", "level": "info"}, {"when": when, "obj": object(), 1: "int key"}]
    records = [logger.makeRecord("dicts", logging.INFO, __file__, 0, msg, (), None) for msg in messages]
    try:
        raise ValueError("boom")
    except ValueError:
        records.append(logger.makeRecord("dicts", logging.ERROR, __file__, 0, {"event": "failed"}, (),
                                         sys.exc_info()))
    expected = [handler.formatter.format(record) for record in records]  # type: ignore[union-attr]
    for record in records:
        logger.handle(record)
    assert handler.flush(10)
    assert local_aws.messages("dicts", "s") == expected
    # the handler's default for the datetime too, as json.dumps (watchtower) calls it
    assert json.loads(expected[1]) == {"when": "<datetime>", "obj": "<object>", "1": "int key"}
    handler.close()


def test_stream_name_can_be_reassigned_after_construction(local_aws: LocalAWS, spill_dir: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="rename", endpoint_url=local_aws.url,
                                                send_interval=0.1)
    handler.log_stream_name = "dag_id=d/run_id=manual__2026-11-24T07:41:15+00:00/task_id=t/attempt=1.log"
    logger = make_logger("rename", handler)
    logger.info("task line")
    assert handler.flush(10)
    stream = "dag_id=d/run_id=manual__2026-11-24T07_41_15+00_00/task_id=t/attempt=1.log"
    assert local_aws.messages("rename", stream) == ["task line"]
    handler.close()


def test_a_stream_name_assigned_before_every_record_routes_each_record_and_compiles_once(
        local_aws: LocalAWS, spill_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Amazon provider's and MWAA's Airflow 3 task loggers set ``log_stream_name`` before each record
    (a triggerer's alternates between streams): each record lands in its stream, each name compiled once."""
    compiled: list[str] = []
    compile_once = mwaa_logging.handler.compile_stream_name

    def counting(template: str) -> StreamNamer:
        compiled.append(template)
        return compile_once(template)

    monkeypatch.setattr(mwaa_logging.handler, "compile_stream_name", counting)
    monkeypatch.setattr(mwaa_logging.handler, "_compiled_names", {})  # names compiled by earlier tests
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="per-record", log_stream_name="first",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("per-record", handler)
    task, trigger = "dag_id=d/task_id=t/attempt=1.log", "dag_id=d/task_id=t/attempt=1.log.trigger.7.log"
    for i in range(300):
        handler.log_stream_name = (task, trigger)[i % 2]
        logger.info("line %d", i)
    assert handler.flush(10)
    assert local_aws.messages("per-record", task) == [f"line {i}" for i in range(0, 300, 2)]
    assert local_aws.messages("per-record", trigger) == [f"line {i}" for i in range(1, 300, 2)]
    assert compiled == ["first", task, trigger]
    handler.close()


def test_a_record_that_cannot_be_formatted_is_delivered_with_the_reason(local_aws: LocalAWS,
                                                                         spill_dir: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="bad", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("bad", handler)
    logger.info("two %s %s", "but one")  # TypeError in msg % args
    logger.info("fine")
    assert handler.flush(10)
    first, second = local_aws.messages("bad", "s")
    assert first.startswith("[mwaa-logging: could not format this record (TypeError")
    assert "'two %s %s'" in first and "'but one'" in first
    assert second == "fine"
    handler.close()


def test_a_signal_handler_that_flushes_while_its_thread_held_the_channel_lock_returns_by_its_deadlines(
        local_aws: LocalAWS, spill_dir: Path) -> None:
    """A SIGTERM or SIGUSR handler that calls flush(), stats() or close() may interrupt the main thread inside one of
    the handler's own short critical sections (a stats() in the main loop): the call then waited for the lock
    forever, and the sender with it. Now each call gives up by its deadline and nothing is lost."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="signal", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("signal", handler)
    said: dict[str, object] = {}

    def on_signal(signum: int, frame: object) -> None:
        logger.info("from the signal handler")
        started = time.monotonic()
        said["flush"] = handler.flush(timeout=0.3)
        said["emitted"] = handler.stats().emitted
        handler.close(timeout=0.3)
        said["seconds"] = time.monotonic() - started

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        logger.info("before")
        with handler._channel.lock:  # where the main thread is for microseconds in every stats() or flush()
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            waited = time.monotonic() + 20
            while "seconds" not in said and time.monotonic() < waited:
                pass  # the Python handler runs here, between two bytecodes of this thread, the lock held
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert said["flush"] is False and said["emitted"] == 2
    assert isinstance(said["seconds"], float) and said["seconds"] < 0.3 + 1.0 + 0.3 + 1.0 + 2.0  # flush, stats, close
    assert handler.flush(10)
    assert local_aws.messages("signal", "s") == ["before", "from the signal handler"]
    assert handler.stats().balanced() and not handler.stats().spilled_total
    handler.close()


def test_a_record_queued_when_the_sender_cannot_be_woken_is_not_queued_again(
        local_aws: LocalAWS, spill_dir: Path) -> None:
    """Waking the sender can fail (no thread can be started late at exit): emit() then queued the record a second
    time through its fallback."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="wake", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("wake", handler)
    channel = handler._channel

    def cannot_start() -> None:
        raise RuntimeError("can't start new thread")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(channel, "check_sender", cannot_start)
        channel.armed = True  # the next record wakes the sender
        logger.info("queued once")
    assert handler.flush(10)
    assert local_aws.messages("wake", "s") == ["queued once"]
    assert handler.stats().emitted == 1
    handler.close()


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("its message cannot be made either")


class _RaisesUnprintable:
    def __str__(self) -> str:
        raise _Unprintable

    def __repr__(self) -> str:
        return "<RaisesUnprintable>"


def test_a_record_whose_formatting_error_cannot_be_printed_is_still_delivered(local_aws: LocalAWS,
                                                                             spill_dir: Path) -> None:
    """A message whose ``__str__`` raises an exception whose own ``__str__`` raises: the record was neither
    delivered nor spilled nor counted (a "--- Logging error ---" on stderr, nothing with raiseExceptions off)."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="bad", log_stream_name="s2",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("bad2", handler)
    logger.info("before")
    logger.info(_RaisesUnprintable())
    logger.info("after")
    assert handler.flush(10)
    before, bad, after = local_aws.messages("bad", "s2")
    assert (before, after) == ("before", "after")
    assert bad == ("[mwaa-logging: could not format this record (_Unprintable (its message cannot be printed))] "
                   "msg=<RaisesUnprintable> args=()")
    assert handler.stats().emitted == 3 and handler.stats().balanced()
    handler.close()


@pytest.mark.parametrize("missing", ["group", "stream"])
def test_a_missing_group_or_stream_we_may_not_create_is_said_not_only_spilled(
        local_aws: LocalAWS, spill_dir: Path, caplog: pytest.LogCaptureFixture, missing: str) -> None:
    """MWAA builds its handlers with create_log_group=False: a group that does not exist must be said in the
    process's log (watchtower warns there), not only counted in stats() and written to the spill directory."""
    group = f"never-created-{missing}-{os.getpid()}-{next(_namespaces)}"
    if missing == "stream":
        local_aws.client("logs").create_log_group(logGroupName=group)
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name=group, log_stream_name="s", endpoint_url=local_aws.url,
                                                send_interval=0.1, create_log_group=False,
                                                create_log_stream=missing != "stream")
    logger = make_logger(group, handler)
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        logger.info("goes to the spill directory")
        assert handler.flush(10)
    handler.close()
    assert handler.stats().spilled == {"no_resource": 1}
    said = [r.getMessage() for r in caplog.records if r.name == "mwaa_logging" and r.levelno == logging.WARNING]
    flag = "create_log_group" if missing == "group" else "create_log_stream"
    assert any(group in m and f"{flag} is false" in m and str(spill_dir) in m for m in said), said


def test_close_also_delivers_the_spill_marker_so_a_later_flush_is_immediate(local_aws: LocalAWS,
                                                                             spill_dir: Path) -> None:
    # send_interval=60: the second line leaves only because close() flushes
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="marker", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=60, close_timeout=5)
    logger = make_logger("marker", handler)
    too_old = logger.makeRecord("marker", logging.INFO, __file__, 0, "older than CloudWatch takes", (), None)
    too_old.created = time.time() - 15 * 86_400  # CloudWatch rejects events older than 14 days
    logger.handle(too_old)
    wait_until(lambda: bool(spilled_records(spill_dir)), timeout=10, state=handler.stats)
    logger.info("delivered during close(); its delivery appends the marker")
    handler.close()
    assert handler.stats().pending == 0
    started = time.monotonic()
    assert handler.flush()  # what logging.shutdown() does after close()
    assert time.monotonic() - started < 1.0
    messages = local_aws.messages("marker", "s")
    assert len(messages) == 2, (messages, handler.stats())
    assert messages[0] == "delivered during close(); its delivery appends the marker"
    assert messages[1].startswith(MARKER_PREFIX + "1 log events") and str(spill_dir) in messages[1]
    assert [(r.message, r.reason) for r in spilled_records(spill_dir)] == [("older than CloudWatch takes", "too_old")]


def test_close_after_a_long_throttle_makes_one_last_call_instead_of_spilling(local_aws: LocalAWS,
                                                                           spill_dir: Path) -> None:
    # After six throttles the stream's backoff is up to 6.4 s, more than close(3) waits: close() calls once
    # more 2 s before its deadline (the throttle has ended by then) rather than spilling at the deadline.
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="last-call", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1)
    logger = make_logger("last-call", handler)
    logger.info("the stream exists")
    assert handler.flush(10)
    local_aws.faults.inject("throttle")  # every PutLogEvents, until cleared
    logger.info("waits out a long throttle")
    wait_until(lambda: handler.stats().throttled >= 6, timeout=30, state=handler.stats)
    local_aws.faults.clear()
    handler.close(3.0)
    stats = handler.stats()
    assert (stats.delivered, stats.spilled_total, stats.pending) == (2, 0, 0), stats
    assert local_aws.messages("last-call", "s") == ["the stream exists", "waits out a long throttle"]
    assert not spilled_records(spill_dir)


def hung_call(local_aws: LocalAWS, group: str) -> tuple[mwaa_logging.CloudWatchLogHandler, logging.Logger]:
    """A handler with a 1 MiB cap whose sender is inside a PutLogEvents call that the endpoint never answers."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name=group, log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=0.1,
                                                max_buffer_bytes=1 << 20, read_timeout=60)
    logger = make_logger(group, handler)
    logger.info("before the hang")
    assert handler.flush(10)
    local_aws.faults.inject("hang", count=1)  # the next PutLogEvents is accepted and never answered
    logger.info("sent in the hung call")
    wait_until(lambda: local_aws.stats().hung == 1, timeout=10)  # the sender is inside the hung call
    return handler, logger


def every_line_ends_delivered_or_spilled(local_aws: LocalAWS, handler: mwaa_logging.CloudWatchLogHandler,
                                         spill_dir: Path, lines: list[str]) -> None:
    """After the hung call is released: each line once, in CloudWatch or in the spill files (memory_cap)."""
    local_aws.faults.clear()  # the hung call is released (it counts as ambiguous and is retried)
    assert handler.flush(30)
    handler.close()
    spilled = [r.message for r in spilled_records(spill_dir)]
    delivered = user_lines(local_aws.messages(handler.log_group_name, "s"))
    everything = ["before the hang", "sent in the hung call", *lines]
    assert sorted(set(delivered) | set(spilled)) == sorted(everything)  # every line, delivered or spilled
    assert not set(spilled) & set(delivered)
    assert {r.reason for r in spilled_records(spill_dir)} == {"memory_cap"}


def test_memory_cap_holds_while_a_call_hangs_and_every_line_ends_delivered_or_spilled(local_aws: LocalAWS,
                                                                                        spill_dir: Path) -> None:
    handler, logger = hung_call(local_aws, "hung")
    lines = [f"line {i:06d} " + "w" * 200 for i in range(1, 30_001)]  # ~6.6 MiB: 6x the cap
    for line in lines:
        logger.info(line)
    channel = handler._channel
    # the guard's last pass has drained the queue and spilled down to the cap (not only begun to); what was
    # queued after the application last asked for it (it looks every 64 records) stays queued
    most_left = channel.inbox_alarm + CHECK_SENDER_MASK + 1

    def buffered() -> int:  # the cap is on the buffers; stats' pending bytes include the queue's
        return handler.stats().pending_bytes - channel.queued_bytes

    wait_until(lambda: len(channel.inbox) < most_left and buffered() <= 1 << 20, timeout=30,
               state=lambda: (len(channel.inbox), handler.stats(), channel.engine.busy,
                              [t.name for t in threading.enumerate()]))
    stats = handler.stats()
    assert channel.engine.busy and local_aws.stats().hung == 1, stats  # still hanging: the memory guard did this
    assert stats.spilled.get("memory_cap", 0) > 20_000, stats
    every_line_ends_delivered_or_spilled(local_aws, handler, spill_dir, lines)


def test_memory_cap_holds_for_large_lines_that_are_few(local_aws: LocalAWS, spill_dir: Path) -> None:
    # 300 lines of 100 KB: 30 MB, 30 times the cap, yet far fewer events than the guard's count alarm (1,024).
    # The guard's alarm also counts bytes, so they are spilled while the call hangs instead of waiting in the
    # queue until read_timeout.
    handler, logger = hung_call(local_aws, "hung-large")
    lines = [f"line {i:03d} " + "L" * 100_000 for i in range(1, 301)]
    for line in lines:
        logger.info(line)
    channel = handler._channel
    line_bytes = len(lines[0]) + 26
    # The buffers keep what fits under the cap (10 lines); the queue may keep what came after the guard's last
    # drain, up to its alarm (2 lines: a quarter of the cap); the guard spills the rest, the oldest first.
    kept_at_most = (1 << 20) // line_bytes + channel.inbox_alarm_bytes // line_bytes

    def settled() -> bool:
        stats = handler.stats()
        return (stats.pending_bytes - channel.queued_bytes <= 1 << 20 and not channel.inbox_alarmed()
                and stats.spilled.get("memory_cap", 0) >= len(lines) - kept_at_most)

    wait_until(settled, timeout=30, state=lambda: (handler.stats(), channel.queued_bytes))
    assert local_aws.stats().hung == 1, handler.stats()  # still hanging: the memory guard did this
    every_line_ends_delivered_or_spilled(local_aws, handler, spill_dir, lines)


def test_a_put_iam_refuses_is_said_not_only_spilled(local_aws: LocalAWS, spill_dir: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A role without logs:PutLogEvents: CloudWatch stays empty, so the process's log must say why and where the
    lines went (as for a missing group), not only stats() and the spill directory."""
    group = f"denied-{os.getpid()}-{next(_namespaces)}"
    local_aws.faults.inject("denied")
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name=group, log_stream_name="s", endpoint_url=local_aws.url,
                                                send_interval=0.1)
    logger = make_logger(group, handler)
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        logger.info("goes to the spill directory")
        wait_until(lambda: handler.stats().spilled_total == 1, timeout=10, state=handler.stats)
    local_aws.faults.clear()
    handler.close()
    assert handler.stats().spilled == {"auth": 1}
    assert [r.message for r in spilled_records(spill_dir)] == ["goes to the spill directory"]
    said = [r.getMessage() for r in caplog.records if r.name == "mwaa_logging" and r.levelno == logging.WARNING]
    assert any(group in m and "AccessDeniedException" in m and str(spill_dir) in m
               and "auth" in m for m in said), said


def test_logging_shutdown_waits_close_timeout_once_not_twice(local_aws: LocalAWS, spill_dir: Path) -> None:
    """logging.shutdown() calls flush() and then close(): each waited a whole close_timeout for an endpoint that
    does not answer, so a supervisor's SIGKILL in the second wait lost what close() would have spilled."""
    import weakref

    local_aws.faults.inject("hang")
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="shutdown",
                                                endpoint_url=local_aws.url, close_timeout=3)
    logger = make_logger("shutting-down", handler)
    for i in range(50):
        logger.info("line %d", i)
    started = time.monotonic()
    logging.shutdown([weakref.ref(handler)])
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"{elapsed:.1f} s: flush and close each waited 3 s"  # close: 3 s + at most 1 s
    stats = handler.stats()
    assert stats.spilled_total == 50 and stats.pending == 0
    assert sorted(r.message for r in spilled_records(spill_dir)) == sorted(f"line {i}" for i in range(50))


FLUSH_AS_AN_ATEXIT_HOOK = """
import atexit, logging, mwaa_logging
handler = mwaa_logging.CloudWatchLogHandler(log_group_name="atexit-flush", log_stream_name="s")
atexit.register(handler.flush)  # called from C: no Python frame above flush()
logger = logging.getLogger("app")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.info("flushed at exit")
"""


def test_flush_registered_as_an_atexit_hook_runs(local_aws: LocalAWS, spill_dir: Path) -> None:
    """flush() looked at its caller's frame (to tell logging.shutdown); called from C there is none: it raised
    ValueError and the flush never ran."""
    environ = {**os.environ, **local_aws.env(), "PYTHONPATH": str(WORKER.parents[2])}
    result = subprocess.run([sys.executable, "-c", FLUSH_AS_AN_ATEXIT_HOOK], env=environ, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "Exception ignored" not in result.stderr, result.stderr
    assert user_lines(local_aws.messages("atexit-flush", "s")) == ["flushed at exit"]


def test_a_stream_refuses_a_message_that_is_not_text_and_keeps_delivering(local_aws: LocalAWS,
                                                                        spill_dir: Path) -> None:
    """write(b"...") was queued: every call and both spill targets failed on it, and it held up the lines around it
    until they were lost at exit."""
    stream = mwaa_logging.open_stream("typed", "s", endpoint_url=local_aws.url)
    stream.write("before")
    with pytest.raises(TypeError, match="str message, not bytes"):
        stream.write(b"raw bytes")  # type: ignore[arg-type]
    stream.write("after")
    assert stream.close(10)
    assert user_lines(local_aws.messages("typed", "s")) == ["before", "after"]


class _PausingRecord(logging.LogRecord):
    """A record whose ``created``, read inside emit() once :attr:`pause` is set, pauses there until told to go on (a
    thread that lost the GIL in the middle of emit())."""

    entered = threading.Event()
    proceed = threading.Event()
    pause = False

    @property  # type: ignore[override]
    def created(self) -> float:
        if self.pause and not type(self).entered.is_set():
            type(self).entered.set()
            assert type(self).proceed.wait(10)
        return self._created

    @created.setter
    def created(self, value: float) -> None:
        self._created = value


@pytest.mark.parametrize("api", ["handler", "stream"])
def test_a_record_racing_close_and_the_retiring_of_its_channel_is_delivered(local_aws: LocalAWS, spill_dir: Path,
                                                                            api: str) -> None:
    # emit() looked at `closed` before its lock-free append: a close() and the sender's retiring of the emptied channel
    # in between left the record in a channel nothing served (not delivered, not spilled, not counted by the process)
    _PausingRecord.entered.clear()
    _PausingRecord.proceed.clear()
    group = f"race-{api}"
    if api == "handler":
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name=group, log_stream_name="s",
                                                    endpoint_url=local_aws.url, send_interval=0.1)
        channel = handler._channel
        logger = make_logger(group, handler)
        logger.info("before")
        assert handler.flush(10)
        record = _PausingRecord(group, logging.INFO, __file__, 1, "the racing record", None, None)
        record.pause = True
        racer = threading.Thread(target=logger.handle, args=(record,))
        close = handler.close
    else:
        stream = mwaa_logging.open_stream(group, "s", endpoint_url=local_aws.url, send_interval=0.1)
        channel = stream._channel
        stream.write("before")
        assert stream.flush(10)

        class PausingTime(float):  # write() converts its timestamp after its check of `closed`
            def __int__(self) -> int:
                _PausingRecord.entered.set()
                assert _PausingRecord.proceed.wait(10)
                return int(float(self))

        racer = threading.Thread(target=stream.write, args=("the racing record", PausingTime(time.time() * 1000)))
        close = stream.close  # type: ignore[assignment]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mwaa_logging.WatchtowerWarning)
        racer.start()
        assert _PausingRecord.entered.wait(10)
        close(5)
        wait_until(lambda: channel not in channel.engine.channels(), timeout=10)  # retired: closed and empty
        _PausingRecord.proceed.set()
        racer.join(10)
    wait_until(lambda: local_aws.messages(group, "s") == ["before", "the racing record"], timeout=10)
    assert channel.flush(5)


def test_a_record_after_close_with_warnings_as_errors_is_still_delivered_by_the_next_close(
        local_aws: LocalAWS, spill_dir: Path) -> None:
    """With warnings made errors (pytest's filterwarnings = error), the warning raised before the record was
    counted and before the handler was marked open again: the next close() did nothing and the record stayed
    pending."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="late-strict", log_stream_name="s",
                                                endpoint_url=local_aws.url, send_interval=5)
    logger = make_logger("late-strict", handler)
    logger.info("before")
    handler.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.info("after close")
    handler.close()
    assert local_aws.messages("late-strict", "s") == ["before", "after close"]
    assert handler.stats().emitted_after_close == 1 and handler.stats().pending == 0
