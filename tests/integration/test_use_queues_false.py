"""``use_queues=False``: as with watchtower, a record is delivered when ``emit()`` returns.

MWAA's DAG processing handler builds watchtower with it because those processes may end without a flush; a
process killed right after logging must not lose what it logged.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mwaa_logging
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records

Synced = tuple[logging.Logger, mwaa_logging.CloudWatchLogHandler]


def only_to(handler: logging.Handler, name: str) -> logging.Logger:
    """The logger ``name``, logging INFO and above to ``handler`` alone."""
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


@pytest.fixture
def sync_logger(local_aws: LocalAWS, spill_dir: Path) -> Iterator[Synced]:
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="sync", log_stream_name="s", endpoint_url=local_aws.url, use_queues=False,
        close_timeout=2, read_timeout=1, spill_to=str(spill_dir))
    logger = only_to(handler, "use-queues-false")
    yield logger, handler
    logger.handlers[:] = []
    handler.close(timeout=5)


def test_each_record_is_delivered_when_emit_returns(local_aws: LocalAWS, sync_logger: Synced) -> None:
    logger, _ = sync_logger
    for i in range(5):
        logger.info("line %d", i)
        assert local_aws.messages("sync", "s") == [f"line {n}" for n in range(i + 1)]


def test_a_process_killed_right_after_logging_loses_nothing(local_aws: LocalAWS, spill_dir: Path) -> None:
    script = textwrap.dedent("""
        import logging, os, signal
        import mwaa_logging
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="killed", log_stream_name="dag-file",
                                                    use_queues=False, send_interval=10)
        logger = logging.getLogger("dag-processing")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        for i in range(20):
            logger.info("line %d", i)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: no flush, no atexit
    """)
    env = {**os.environ, **local_aws.env(), "MWAA_LOGGING_SPILL_TO": str(spill_dir)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert local_aws.messages("killed", "dag-file") == [f"line {i}" for i in range(20)]


def test_an_outage_holds_one_record_not_every_one(local_aws: LocalAWS, sync_logger: Synced) -> None:
    logger, handler = sync_logger
    logger.info("before")
    local_aws.faults.inject("hang")
    started = time.monotonic()
    logger.info("first during the outage")  # waits its close_timeout (2 s), then returns: the record stays queued
    first = time.monotonic() - started
    started = time.monotonic()
    for i in range(20):
        logger.info("queued %d", i)  # the backlog is not settled: these do not wait
    rest = time.monotonic() - started
    assert 1.5 < first < 5 and rest < 1.5, (first, rest)
    local_aws.faults.clear()
    assert handler.flush(30)
    logger.info("after")  # the backlog settled: waiting again
    assert local_aws.messages("sync", "s")[-1] == "after"
    expected = ["before", "first during the outage", *(f"queued {i}" for i in range(20)), "after"]
    assert sorted(local_aws.messages("sync", "s")) == sorted(expected)


def timed_emits(logger: logging.Logger, count: int, pause: float = 0.0) -> list[float]:
    durations = []
    for i in range(count):
        started = time.monotonic()
        logger.info("line %d", i)
        durations.append(time.monotonic() - started)
        time.sleep(pause)
    return durations


def test_spills_at_max_latency_during_an_outage_do_not_make_emit_wait_again(local_aws: LocalAWS,
                                                                            spill_dir: Path) -> None:
    """The backlog a timed-out wait left counted as settled once max_latency spilled it: the next record waited a
    close_timeout again, once per max_latency for as long as the outage lasted."""
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="sync-latency", log_stream_name="s", endpoint_url=local_aws.url, use_queues=False,
        close_timeout=1, read_timeout=1, max_latency=1.5, spill_to=str(spill_dir))
    logger = only_to(handler, "use-queues-false.latency")
    local_aws.faults.inject("hang")
    try:
        durations = timed_emits(logger, 25, pause=0.2)  # 5 s: spills at max_latency meanwhile
        assert handler.stats().spilled.get("max_latency", 0) > 0
    finally:
        local_aws.faults.clear()
        logger.handlers[:] = []
        handler.close(timeout=5)
    assert [d > 0.5 for d in durations].count(True) == 1, durations


@pytest.mark.parametrize("cause", ["logging's lock held", "channel's lock busy", "no sender thread", "wait fails"])
def test_emit_does_not_wait_where_waiting_cannot_end_well(
        local_aws: LocalAWS, sync_logger: Synced, monkeypatch: pytest.MonkeyPatch, cause: str) -> None:
    """Each record is still queued once and delivered; emit() returns at once, and the next record waits again."""
    logger, handler = sync_logger
    channel = handler._channel
    local_aws.faults.inject("hang")  # a wait would last its close_timeout (2 s)
    started = time.monotonic()
    if cause == "logging's lock held":  # dictConfig, logging.shutdown: the sender logs through that lock
        with logging._lock:  # type: ignore[attr-defined]
            logger.info("the record")
    elif cause == "channel's lock busy":  # as for a signal handler that interrupted its holder
        holder_done = threading.Event()
        with channel.lock:
            waiter = threading.Thread(target=lambda: (logger.info("the record"), holder_done.set()))
            waiter.start()
            assert holder_done.wait(1.0)
        waiter.join()
    elif cause == "no sender thread":  # Python 3.12's atexit in a forked child: the wait would make the calls
        with monkeypatch.context() as patch:
            patch.setattr(channel.engine, "sender_missing", lambda: True)
            logger.info("the record")
    else:
        with monkeypatch.context() as patch:
            patch.setattr(channel, "flush", lambda timeout=None: 1 / 0)
            logger.info("the record")
    assert time.monotonic() - started < 1.0
    local_aws.faults.clear()
    logger.info("next")  # waited for: delivered when emit returns
    assert local_aws.messages("sync", "s") == ["the record", "next"]


def test_a_throttle_holds_one_record_per_backlog_not_every_record(local_aws: LocalAWS, spill_dir: Path) -> None:
    """After a timed-out wait, each delivery re-armed the waits: under a throttle, with the backlog of 8 streams
    taking longer than close_timeout, nearly every record waited its close_timeout (57 of 69 emits, 0.94 s each)."""
    local_aws.set_quota(put_tps=4)
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="sync-throttle", log_stream_name="{thread_name}", endpoint_url=local_aws.url,
        use_queues=False, close_timeout=1, spill_to=str(spill_dir))
    logger = only_to(handler, "use-queues-false.throttle")
    waits: list[float] = []

    def worker() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            started = time.monotonic()
            logger.info("a line")
            waits.append(time.monotonic() - started)
            time.sleep(0.05)

    threads = [threading.Thread(target=worker, name=f"t{i}") for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handler.flush(30)
    finally:
        logger.handlers[:] = []
        handler.close(timeout=5)
    long_waits = sum(wait > 0.9 for wait in waits)
    assert len(waits) > 200 and long_waits < len(waits) / 4, (len(waits), long_waits)
    stored = sum(len(local_aws.messages("sync-throttle", f"t{i}")) for i in range(8))
    assert stored + handler.stats().spilled_total == len(waits)


def test_a_child_forked_after_an_outage_waits_for_its_own_records(local_aws: LocalAWS, sync_logger: Synced) -> None:
    """The parent's 'behind' state reached the child, whose counters start again: it never waited, and lost what it
    logged before it was killed."""
    logger, handler = sync_logger
    logger.info("parent before")
    local_aws.faults.inject("hang")
    logger.info("parent during the outage")  # times out: the parent is behind
    local_aws.faults.clear()
    assert handler.flush(30)
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(5):
                logger.info("child %d", i)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)  # killed without a flush, as a DAG file processor at its timeout
    os.waitpid(pid, 0)
    assert sorted(m for m in local_aws.messages("sync", "s") if m.startswith("child")) == [f"child {i}"
                                                                                            for i in range(5)]


@pytest.mark.parametrize(("close_timeout", "given", "least", "most"), [
    (6, None, 0.0, 4.0),  # 1 s, then the local spill; not another 6 s
    (1, 3, 2.9, 10.0),  # only close() without a timeout (logging.shutdown's) is cut short: a caller's is kept
])
def test_close_after_a_timed_out_wait_spills_soon_instead_of_waiting_again(
        local_aws: LocalAWS, spill_dir: Path, close_timeout: float, given: float | None, least: float,
        most: float) -> None:
    """A DAG file processor's first record waited close_timeout while CloudWatch hung, and its exit waited a full
    close_timeout again: each file took 2 x close_timeout to parse (each processor is a new process)."""
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name=f"sync-close-{close_timeout}", log_stream_name="s", endpoint_url=local_aws.url,
        use_queues=False, close_timeout=close_timeout, read_timeout=30, spill_to=str(spill_dir))
    logger = only_to(handler, f"use-queues-false.close-{close_timeout}")
    local_aws.faults.inject("hang", api="PutLogEvents")
    try:
        started = time.monotonic()
        logger.info("waits, then times out")
        waited = time.monotonic() - started
        logger.info("queued only")
        started = time.monotonic()
        handler.close(given)
        closing = time.monotonic() - started
    finally:
        logger.handlers[:] = []
        local_aws.faults.clear()
    assert waited >= close_timeout - 0.5, waited
    assert least <= closing < most, closing
    assert handler.stats().spilled_total == 2 and handler.stats().pending == 0


def test_a_process_exiting_after_a_timed_out_wait_spills_soon_instead_of_waiting_again(local_aws: LocalAWS,
                                                                                       spill_dir: Path) -> None:
    """The exit flush (a multiprocessing child's too, where logging.shutdown() does not run) waited a full
    close_timeout again after the record's own wait had timed out."""
    script = textwrap.dedent("""
        import logging, time
        import mwaa_logging
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="sync-exit", log_stream_name="dag-file",
                                                    use_queues=False, close_timeout=6, read_timeout=30)
        logger = logging.getLogger("dag-processing")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.info("waits, then times out")
        logger.info("queued only")
        print(time.monotonic(), flush=True)
    """)
    env = {**os.environ, **local_aws.env(), "MWAA_LOGGING_SPILL_TO": str(spill_dir)}
    local_aws.faults.inject("hang", api="PutLogEvents")
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        exited = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
    finally:
        local_aws.faults.clear()
    assert done.returncode == 0, done.stderr
    exiting = exited - float(done.stdout.split()[-1])
    assert exiting < 4, exiting  # BEHIND_CLOSE_WAIT, then the local spill; not another 6 s
    assert sorted(r.message for r in spilled_records(spill_dir)) == ["queued only", "waits, then times out"]
