"""Spill targets that fail, vanish or cannot exist, with real files, the local endpoint's S3 and real processes:
every line ends in CloudWatch or a readable spill, or its loss is said with a count."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import mwaa_logging
from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.protocols import SpillError
from mwaa_logging.reader import _S3Reader, read_stream, spilled_events
from mwaa_logging.replay import LocalSource
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spill.local import LocalSpillSink, default_spill_directory
from mwaa_logging.spillformat import SpillRecord
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records
from tests.waiting import wait_until

BUCKET = "spill-bucket"


def quiet_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return logger


def s3_lines(local_aws: LocalAWS) -> list[str]:
    """Messages of every spill object in the bucket."""
    sink = S3SpillSink(BUCKET, "p", client=local_aws.client("s3"))
    return [record.message for obj in sink.list_objects() for record in sink.read_object(obj)]


def s3_spilling_handler(local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloudwatch: str,
                        **settings: object) -> tuple[mwaa_logging.CloudWatchLogHandler, logging.Logger]:
    """A handler spilling to ``s3://BUCKET/p`` (local fallback under ``tmp_path``) whose CloudWatch calls meet the
    ``cloudwatch`` fault."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", local_aws.url)
    local_aws.client("s3").create_bucket(Bucket=BUCKET)
    local_aws.faults.inject(cloudwatch)
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="s", endpoint_url=local_aws.url,
                                                spill_to=f"s3://{BUCKET}/p", send_interval=0.1, **settings)
    return handler, quiet_logger(f"s3-spill-{cloudwatch}", handler)


def spill_through_s3(local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloudwatch: str,
                     lines: list[str], s3_fault: str | None = None,
                     **settings: object) -> mwaa_logging.CloudWatchLogHandler:
    """Log ``lines`` through :func:`s3_spilling_handler` (S3 PutObject meeting ``s3_fault``: always if "denied",
    else once) and close it; the faults are gone afterwards."""
    try:
        handler, logger = s3_spilling_handler(local_aws, tmp_path, monkeypatch, cloudwatch, **settings)
        if s3_fault is not None:
            local_aws.faults.inject(s3_fault, api="s3:PUT", count=None if s3_fault == "denied" else 1)
        for line in lines:
            logger.info(line)
        handler.close()
    finally:
        local_aws.faults.clear()
    return handler


def test_s3_refusing_every_put_is_said_and_counted_and_the_lines_are_on_local_disk(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mwaa_logging")
    # nothing reaches CloudWatch: close() spills everything; no s3:PutObject on the spill bucket
    handler = spill_through_s3(local_aws, tmp_path, monkeypatch, "hang", [f"line {i}" for i in range(20)],
                               s3_fault="denied", read_timeout=60, close_timeout=0.5)
    stats = handler.stats()
    assert stats.balanced() and stats.spilled_total == 20 and stats.spill_failures == 1, stats
    assert sorted(r.message for r in spilled_records(tmp_path)) == sorted(f"line {i}" for i in range(20))
    said = [r.getMessage() for r in caplog.records if r.name == "mwaa_logging"]
    assert any(f"spill to s3://{BUCKET}/p failed" in m and "AccessDenied" in m
               and str(tmp_path / "mwaa-logging" / "spill") in m for m in said), said


def run_handler(env: dict[str, str], code: str) -> None:
    """Run ``code`` (which builds a handler and logs) in a process of its own with ``env``."""
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_lines_spilled_to_the_temp_dir_are_read_after_a_cache_directory_appears(
        local_aws: LocalAWS, tmp_path: Path) -> None:
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    env.update(local_aws.env(), HOME=str(home), TMPDIR=str(temp))
    local_aws.faults.inject("unavailable")
    run_handler(env, textwrap.dedent("""
        import logging
        from mwaa_logging import CloudWatchLogHandler
        handler = CloudWatchLogHandler(log_group_name="g", log_stream_name="s", close_timeout=0.3)
        logger = logging.getLogger("fresh-container")
        logger.addHandler(handler)
        for i in range(5):
            logger.warning("line %d", i)
        handler.close()
    """))
    local_aws.faults.clear()
    assert len(spilled_records(temp / f"mwaa-logging-spill-{os.getuid()}")) == 5  # no ~/.cache yet: the temp dir
    (home / ".cache").mkdir()  # then pip, or any tool, makes one
    read = subprocess.run([sys.executable, "-m", "mwaa_logging.cli", "read", "g", "s"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert [line.split(" ", 1)[1] for line in read.stdout.splitlines()] == [f"line {i}" for i in range(5)]


def test_a_handler_is_built_where_python_finds_no_usable_temp_directory(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only root file system (Kubernetes' readOnlyRootFilesystem) with no writable /tmp: tempfile raises;
    building the handler raised it too, so logging's configuration (Airflow's start) failed."""
    def no_usable_temp_directory() -> str:
        raise FileNotFoundError(errno.ENOENT, "No usable temporary directory found in ['/tmp', '/var/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", no_usable_temp_directory)
    monkeypatch.setenv("HOME", str(tmp_path / "read-only-home"))  # no ~/.cache either
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    assert default_spill_directory() == tmp_path / "tmp" / f"mwaa-logging-spill-{os.getuid()}"
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="s", endpoint_url=local_aws.url,
                                                spill_to=f"s3://{BUCKET}/p", close_timeout=5)
    quiet_logger("no-temp-dir", handler).info("delivered all the same")
    handler.close()
    assert handler.stats().delivered == 1
    assert local_aws.messages("g", "s") == ["delivered all the same"]


def test_lines_no_spill_target_can_store_at_exit_are_said_lost_with_their_count(
        local_aws: LocalAWS, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    (temp / f"mwaa-logging-spill-{os.getuid()}").write_text("a file where the default spill directory would go")
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    env.update(local_aws.env(), HOME=str(tmp_path / "no-home"), TMPDIR=str(temp))
    local_aws.faults.inject("unavailable")
    code = textwrap.dedent(f"""
        import logging
        from mwaa_logging import CloudWatchLogHandler
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
        handler = CloudWatchLogHandler(log_group_name="g", log_stream_name="s", spill_to={str(tmp_path / "spill")!r},
                                       close_timeout=0.5)
        with open({str(tmp_path / "spill")!r}, "w") as taken:  # after construction, which refuses it
            taken.write("a file where spill_to would go")
        logger = logging.getLogger("nowhere-to-spill")
        logger.propagate = False
        logger.addHandler(handler)
        for i in range(7):
            logger.warning("line %d", i)
    """)  # no close(): the interpreter's exit flush spills, and cannot
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "mwaa_logging ERROR 7 log events of log group g are lost" in run.stderr, run.stderr


@pytest.mark.parametrize(("group", "stream"), [("..", "s"), ("..", ".."), ("g", ".."), ("g", ".")])
def test_dot_names_are_spilled_inside_the_directory_replayable_and_read_back(tmp_path: Path, group: str,
                                                                             stream: str) -> None:
    """CloudWatch allows a group named '..' and streams named '.' or '..'; as path segments they wrote outside the
    spill directory (group '..', stream '..': two levels above it), where replay never looks."""
    directory = tmp_path / "a" / "spill"
    record = SpillRecord(group, stream, 1_700_000_000_000, "dotted", "max_latency")
    LocalSpillSink(directory).write([record])
    assert [p for p in tmp_path.rglob("*.jsonl.gz") if directory not in p.parents] == []
    assert len(list(LocalSource(directory).objects())) == 1
    read = read_stream(group, stream, spill_to=directory, include_cloudwatch=False)
    assert [e.message for e in read] == ["dotted"]


def test_an_object_a_replay_moves_while_the_reader_runs_is_still_read(local_aws: LocalAWS) -> None:
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "p", client=s3)
    for part in range(3):  # three objects of one stream
        sink.write([SpillRecord("g", "s", 1_700_000_000_000 + part * 10 + i, f"part {part} line {i}", "max_latency")
                    for i in range(5)])
    errors: list[tuple[str, Exception]] = []
    events = spilled_events([_S3Reader(sink)], "g", "s", max_cached_records=0,
                            on_error=lambda where, error: errors.append((where, error)))
    read = [next(events).message]  # listed, and the first object read
    for obj in list(sink.stream_objects("g", "s")):
        sink.mark_replayed(obj)  # `mwaa-logging replay` runs meanwhile
    read += [event.message for event in events]
    assert errors == []
    assert read == [f"part {part} line {i}" for part in range(3) for i in range(5)]


def test_an_object_deleted_between_the_readers_two_reads_is_said_and_the_rest_read(local_aws: LocalAWS) -> None:
    """A spill larger than what the reader caches is read twice; an object gone by the second read (a lifecycle
    rule, someone's cleanup) is reported to on_error. When it was the last one, the reader raised IndexError."""
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "p", client=s3)
    for part in range(2):
        sink.write([SpillRecord("g", "s", 1_700_000_000_000 + part * 10 + i, f"part {part} line {i}", "max_latency")
                    for i in range(5)])
    errors: list[str] = []
    events = spilled_events([_S3Reader(sink)], "g", "s", max_cached_records=0,
                            on_error=lambda where, error: errors.append(where))
    read = [next(events).message]
    last = list(sink.stream_objects("g", "s"))[-1]
    s3.delete_object(Bucket=BUCKET, Key=last.key)
    read += [event.message for event in events]
    assert errors == [last.url]
    assert read == [f"part 0 line {i}" for i in range(5)]


def test_a_burst_above_the_cap_reaches_cloudwatch_when_the_disk_cannot_take_a_spill(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full or read-only, CloudWatch healthy, a task logging 20 MB at once (cap 1 MiB): each failed memory-cap
    spill held the stream back 5 s, so the 20,000 lines took a minute to arrive (100,000: none in 13 s)."""
    (tmp_path / "mwaa-logging").write_text("a file where the default spill directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="burst",
                                                endpoint_url=local_aws.url, spill_to=str(tmp_path / "spill"),
                                                max_buffer_bytes=1_048_576)
    (tmp_path / "spill").write_text("a file where spill_to would go")  # after construction, which refuses it
    logger = quiet_logger("burst-on-a-full-disk", handler)
    for i in range(20_000):
        logger.info("%06d %s", i, "x" * 1_000)
    started = time.monotonic()
    assert handler.flush(timeout=30)
    assert time.monotonic() - started < 15
    stats = handler.stats()
    assert (stats.delivered, stats.spilled_total, stats.pending) == (20_000, 0, 0), stats
    assert stats.spill_failures >= 1
    assert len(local_aws.messages("g", "burst")) == 20_000
    handler.close()


def test_a_line_with_a_lone_surrogate_is_spilled_to_s3_with_the_others_once(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 spill encoded lines without the U+FFFD fallback: one such line sent every line of the write (also
    those already in S3) to the local directory."""
    handler = spill_through_s3(local_aws, tmp_path, monkeypatch, "denied",
                               [*(f"line {i}" for i in range(3)), "bytes \udc80 decoded with surrogateescape"])
    stats = handler.stats()
    assert stats.spilled_total == 4 and stats.spill_failures == 0 and stats.duplicates == 0, stats
    assert sorted(s3_lines(local_aws)) == sorted([*(f"line {i}" for i in range(3)),
                                                  "bytes \ufffd decoded with surrogateescape"])
    assert spilled_records(tmp_path) == []


def test_a_spill_object_whose_answer_is_lost_is_written_again_not_also_to_local_disk(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 stored the object and the connection closed before its answer: the PUT was given up (botocore retries
    are off for spills), so the lines went to the local directory too."""
    handler = spill_through_s3(local_aws, tmp_path, monkeypatch, "denied", [f"line {i}" for i in range(3)],
                               s3_fault="lost_reply")
    stats = handler.stats()
    assert stats.spilled_total == 3 and stats.spill_failures == 0, stats
    assert sorted(s3_lines(local_aws)) == [f"line {i}" for i in range(3)]
    assert spilled_records(tmp_path) == []


def test_an_s3_put_whose_answer_was_lost_then_refused_is_looked_up_not_also_written_to_local_disk(
        local_aws: LocalAWS, tmp_path: Path) -> None:
    """S3 stored the object and its answer was lost, then refused the two retries 503: the PUT was given up without
    looking the key up (the 503 forgot the answer-less attempt), so the 10 records went to the local directory too,
    stored twice and uncounted (replaying both locations puts every line twice)."""
    from botocore.config import Config

    client = local_aws.client("s3", config=Config(retries={"total_max_attempts": 1}))  # as the handler's S3 client
    client.create_bucket(Bucket=BUCKET)
    sink = FallbackSpillSink([S3SpillSink(BUCKET, "p", client=client, retry_pause=0.0),
                              LocalSpillSink(tmp_path / "local")])
    local_aws.faults.inject("lost_reply", api="s3:PUT", count=1)
    local_aws.faults.inject("unavailable", api="s3:PUT", count=2)
    try:
        before = s3_puts(local_aws)
        location = sink.write([SpillRecord("g", "s", 1_700_000_000_000 + i, f"line {i}", "max_latency")
                               for i in range(10)])
        assert s3_puts(local_aws) - before == 3
    finally:
        local_aws.faults.clear()
    assert location.startswith(f"s3://{BUCKET}/p/g/s/")
    assert s3_lines(local_aws) == [f"line {i}" for i in range(10)]
    assert spilled_records(tmp_path / "local") == []


@pytest.mark.parametrize(("fault", "times"), [("latency", None), ("lost_reply", 1)])
def test_an_s3_spill_stored_after_the_close_deadline_is_counted_and_said_as_duplicates(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        fault: str, times: int | None) -> None:
    """S3 answers after the spill deadline (1 s), or stores the object and the connection closes before its answer:
    the lines are in S3 and in the local directory. The lost answer was given up, uncounted and unsaid."""
    caplog.set_level(logging.WARNING, logger="mwaa_logging")
    try:
        handler, logger = s3_spilling_handler(local_aws, tmp_path, monkeypatch, "hang", read_timeout=60)
        local_aws.faults.inject(fault, api="s3:PUT", count=times, delay=2.0)
        for i in range(3):
            logger.info("line %d", i)
        handler.close(0.5)
        assert sorted(r.message for r in spilled_records(tmp_path)) == [f"line {i}" for i in range(3)]
        wait_until(lambda: handler.stats().duplicates == 3, timeout=15, state=handler.stats)
    finally:
        local_aws.faults.clear()
    assert sorted(s3_lines(local_aws)) == [f"line {i}" for i in range(3)]
    said = [r.getMessage() for r in caplog.records if r.name == "mwaa_logging"]
    assert any("was stored after the spill deadline: its 3 events had gone on to the next spill target" in m
               for m in said), said


def s3_puts(local_aws: LocalAWS) -> int:
    return local_aws.stats().calls.get("s3:PUT", 0)


@pytest.mark.parametrize(("timeouts", "stored"), [(1, True), (None, False)])
def test_an_s3_put_that_times_out_is_retried_once(local_aws: LocalAWS, timeouts: int | None, stored: bool) -> None:
    """Each retry of a timed-out PUT costs the client's whole read timeout while the sender (every handler of the
    process) waits: 3 attempts held it 31 s. Not retried at all, a PUT S3 was still storing went to the next target
    too. One retry of the same key: one object, or, if that times out too, the records move on."""
    from botocore.config import Config

    client = local_aws.client("s3", config=Config(read_timeout=0.5, retries={"total_max_attempts": 1}))
    client.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "p", client=client, retry_pause=0.0)
    local_aws.faults.inject("latency", api="s3:PUT", delay=1.5, count=timeouts)
    try:
        before = s3_puts(local_aws)
        records = [SpillRecord("g", "s", 1, "line", "max_latency", "", 1)]
        if stored:
            assert sink.write(records).startswith(f"s3://{BUCKET}/p/g/s/")
        else:
            with pytest.raises(SpillError, match="Read timeout"):
                sink.write(records)
        assert s3_puts(local_aws) - before == 2
    finally:
        local_aws.faults.clear()


class _RefusedThread(threading.Thread):
    def start(self) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")


def refuse_s3_spill_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 sink cannot start threads, as in Python 3.12's atexit hooks (only its own: the endpoint's server
    starts one per request)."""
    import mwaa_logging.aws.s3spill as s3spill

    monkeypatch.setattr(s3spill, "threading", SimpleNamespace(Thread=_RefusedThread, Lock=threading.Lock))


def test_an_s3_spill_at_a_deadline_works_where_no_thread_can_start(
        local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.12 refuses new threads in atexit hooks, where close deadlines spill: every such spill went to the
    local directory (lost with the container on MWAA) and S3 was marked failed."""
    refuse_s3_spill_threads(monkeypatch)
    client = local_aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "p", client=client)
    records = [SpillRecord("g", "s", i, f"line {i}", "close_deadline", "", 1) for i in range(3)]
    assert sink.write_before(records, time.monotonic() + 5).startswith(f"s3://{BUCKET}/p/g/s/")
    assert [r.message for obj in sink.list_objects() for r in sink.read_object(obj)] == [f"line {i}" for i in range(3)]


def test_an_s3_spill_on_the_calling_thread_starts_no_retry_after_its_deadline(
        local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no thread can start, the retries of a refused PUT (503 after 2 s) ran on past the deadline: a close()
    with close_timeout=1 took 10.7 s."""
    from botocore.config import Config

    refuse_s3_spill_threads(monkeypatch)
    client = local_aws.client("s3", config=Config(retries={"total_max_attempts": 1}))  # as the handler's S3 client
    client.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "p", client=client, retry_pause=0.0)
    local_aws.faults.inject("unavailable", api="s3:PUT", delay=1.0)
    try:
        before = s3_puts(local_aws)
        with pytest.raises(SpillError):
            sink.write_before([SpillRecord("g", "s", 1, "line", "close_deadline", "", 1)], time.monotonic() + 0.5)
        assert s3_puts(local_aws) - before == 1
    finally:
        local_aws.faults.clear()



def test_an_s3_spill_on_the_calling_thread_starts_no_lookup_after_its_deadline(
        local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no thread can start, a PUT whose answer was lost and whose retry S3 refused (503 after 1 s, past the
    deadline) is not looked up then: the lookup would keep the closing thread waiting past its deadline too (if
    S3 stored the object, its records are kept twice then, uncounted: the price of returning by the deadline)."""
    from botocore.config import Config

    refuse_s3_spill_threads(monkeypatch)
    client = local_aws.client("s3", config=Config(retries={"total_max_attempts": 1}))
    client.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "p", client=client, retry_pause=0.0)
    local_aws.faults.inject("lost_reply", api="s3:PUT", count=1)
    local_aws.faults.inject("unavailable", api="s3:PUT", delay=1.0)
    try:
        calls = dict(local_aws.stats().calls)
        with pytest.raises(SpillError):
            sink.write_before([SpillRecord("g", "s", 1, "line", "close_deadline", "", 1)], time.monotonic() + 0.5)
        made = {api: count - calls.get(api, 0) for api, count in local_aws.stats().calls.items()}
        assert {api: count for api, count in made.items() if api.startswith("s3:") and count} == {"s3:PUT": 2}
    finally:
        local_aws.faults.clear()
