"""read_stream over HTTP: CloudWatch pages + S3 and local spill, merged, deduplicated, splits whole."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from mwaa_logging import CloudWatchLogHandler
from mwaa_logging.aws.clients import make_logs_client
from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.batching import cut_batches
from mwaa_logging.events import MESSAGE, TIMESTAMP, make_event
from mwaa_logging.reader import CLOUDWATCH, read_stream
from mwaa_logging.replay import LocalSource, Replayer
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spill.local import LocalSpillSink
from mwaa_logging.spillformat import SpillRecord
from mwaa_logging.splitting import split_message
from mwaa_logging.testing.local_aws import LocalAWS

GROUP, STREAM = "airflow-env-Task", "dag_id=d/run_id=r/task_id=t/attempt=1.log"


@pytest.fixture
def aws(aws_in_env: LocalAWS) -> LocalAWS:
    aws_in_env.client("s3").create_bucket(Bucket="spill")
    logs = aws_in_env.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    return aws_in_env


def put(aws: LocalAWS, events: list[tuple[int, str]]) -> None:
    logs = aws.client("logs")
    for batch in cut_batches(make_event(t, m, seq) for seq, (t, m) in enumerate(events)):
        logs.put_log_events(logGroupName=GROUP, logStreamName=STREAM,
                            logEvents=[{"timestamp": e[TIMESTAMP], "message": e[MESSAGE]} for e in batch])


def record(ts: int, message: str) -> SpillRecord:
    return SpillRecord(GROUP, STREAM, ts, message, "max_latency", "ThrottlingException")


def test_one_log_from_cloudwatch_s3_and_local_spill(aws: LocalAWS, tmp_path: Path) -> None:
    base = int(time.time() * 1000) - 3_600_000
    logged = [(base + i * 10, f"line {i:05d}") for i in range(12_000)]
    big = "x" * 700_000 + "é" * 300_000 + "end"  # > 1 MB: the sender splits it into chunks
    chunks = split_message(big, split_id="feedbeef")
    assert len(chunks) == 2
    big_ts = base + 55_555
    # CloudWatch has most lines, one chunk, and (ambiguous retry: a batch stored again by a later call) a few
    # lines twice.
    delivered = [e for i, e in enumerate(logged) if i % 7 != 3]
    put(aws, [*delivered, (big_ts, chunks[0])])
    time.sleep(0.01)  # a retry's ingestion time is another millisecond
    put(aws, logged[100:110])
    # S3 took the lines CloudWatch never got, the other chunk, and (close deadline) a few delivered lines.
    s3 = S3SpillSink("spill", "env", client=aws.client("s3"))
    missing = [e for i, e in enumerate(logged) if i % 7 == 3]
    s3.write([record(t, m) for t, m in missing[: len(missing) // 2]] + [record(big_ts, chunks[1])])
    s3.write([record(t, m) for t, m in logged[200:205]])
    # The local fallback took the rest.
    local = LocalSpillSink(tmp_path)
    local.write([record(t, m) for t, m in missing[len(missing) // 2:]])

    events = list(read_stream(GROUP, STREAM, logs_client=make_logs_client(endpoint_url=aws.url),
                              spill_to=FallbackSpillSink([s3, local]), s3_client=aws.client("s3")))
    expected = sorted([*logged, (big_ts, big)])
    assert [(e.timestamp, e.message) for e in events] == expected
    sources = {e.message: e.source for e in events}
    assert sources["line 00000"] == CLOUDWATCH
    assert sources["line 00003"].startswith("s3://spill/env/") and sources["line 00003"].endswith(".jsonl.gz")
    assert sources[missing[-1][1]].startswith(str(tmp_path))
    assert sources[big] == CLOUDWATCH  # a whole event takes its first chunk's source
    assert next(e for e in events if e.message == "line 00003").reason == "max_latency"

    window = list(read_stream(GROUP, STREAM, spill_to=["s3://spill/env", str(tmp_path)],
                              start_time=base + 1000, end_time=base + 2000))
    assert [(e.timestamp, e.message) for e in window] == [p for p in logged if base + 1000 <= p[0] < base + 2000]


def test_reading_after_replay_shows_each_line_once(aws: LocalAWS, tmp_path: Path) -> None:
    base = int(time.time() * 1000) - 60_000
    put(aws, [(base + i, f"delivered {i}") for i in range(10)])
    spilled = [record(base + 100 + i, f"spilled {i}") for i in range(10)]
    LocalSpillSink(tmp_path).write(spilled)
    before = [e.message for e in read_stream(GROUP, STREAM, spill_to=tmp_path)]
    transport_client = make_logs_client(endpoint_url=aws.url)
    from mwaa_logging.aws.transport import BotocoreTransport
    from mwaa_logging.budget import BudgetConfig
    from mwaa_logging.budgets.process import ProcessBudget

    summary = Replayer(BotocoreTransport(transport_client), ProcessBudget(BudgetConfig(rate=100))).run(
        LocalSource(tmp_path))
    assert summary.events_put == 10
    after = list(read_stream(GROUP, STREAM, spill_to=tmp_path))
    assert [e.message for e in after] == before
    assert {e.source for e in after} == {CLOUDWATCH}


def test_missing_stream_with_spill_only(aws: LocalAWS, tmp_path: Path) -> None:
    LocalSpillSink(tmp_path).write([SpillRecord("gone", "s", 5, "only in spill", "auth")])
    events = list(read_stream("gone", "s", spill_to=f"file://{tmp_path}"))
    assert [(e.timestamp, e.message, e.reason) for e in events] == [(5, "only in spill", "auth")]


def test_an_unreachable_spill_bucket_does_not_hide_the_rest(aws: LocalAWS, tmp_path: Path) -> None:
    import socket

    from mwaa_logging.aws.clients import make_s3_client

    base = int(time.time() * 1000) - 60_000
    put(aws, [(base, "in cloudwatch")])
    LocalSpillSink(tmp_path).write([record(base + 1, "in local spill")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    errors: list[str] = []
    events = read_stream(GROUP, STREAM, spill_to=["s3://spill/env", tmp_path],
                         s3_client=make_s3_client(endpoint_url=dead),
                         on_spill_error=lambda where, error: errors.append(where))
    assert [e.message for e in events] == ["in cloudwatch", "in local spill"]
    assert errors == ["s3://spill/env"]


def test_airflow_shows_the_log_and_a_note_when_the_spill_bucket_cannot_be_listed(aws: LocalAWS) -> None:
    """The API server's role may lack s3:ListBucket on the spill bucket: the CloudWatch lines still show."""
    from mwaa_logging.airflow.reading import NOTE_SOURCE, read_events

    base = int(time.time() * 1000) - 60_000
    put(aws, [(base, "in cloudwatch"), (base + 1, "also in cloudwatch")])
    events = list(read_events(make_logs_client(endpoint_url=aws.url), GROUP, STREAM, "s3://no-such-bucket/spill"))
    assert [e.message for e in events[:2]] == ["in cloudwatch", "also in cloudwatch"]
    (note,) = events[2:]
    assert note.source == NOTE_SOURCE and "s3://no-such-bucket/spill" in note.message and "NoSuchBucket" in note.message


def test_lines_of_one_millisecond_read_back_in_logged_order_across_a_memory_cap_spill(
    aws: LocalAWS, tmp_path: Path
) -> None:
    """CloudWatch hangs; the buffer cap spills the oldest lines of one millisecond, the rest are delivered
    after the hang: read back, the spilled ones come first, as logged (CloudWatch puts them after)."""
    from mwaa_logging import open_stream
    from tests.waiting import wait_until

    stream = open_stream(GROUP, "same-ms", endpoint_url=aws.url, spill_to=str(tmp_path),
                         max_buffer_bytes=1_048_576, send_interval=0.2, read_timeout=30)
    try:
        stream.write("warm-up")
        assert stream.flush(10)
        aws.faults.inject("hang")
        stamp = int(time.time() * 1000)
        for i in range(30):
            stream.write(f"seq {i:03d} " + "x" * 100_000, timestamp_ms=stamp)
        wait_until(lambda: stream.stats().spilled_total > 0, timeout=10, state=stream.stats)
        aws.faults.clear()
        assert stream.flush(20)
    finally:
        stream.close(5)
    stats = stream.stats()
    assert stats.delivered > 1 and stats.spilled == {"memory_cap": stats.spilled_total}, stats
    read = [e.message[:7] for e in read_stream(GROUP, "same-ms", spill_to=tmp_path) if e.message.startswith("seq")]
    assert read == [f"seq {i:03d}" for i in range(30)]
    # CloudWatch holds the newest lines of that millisecond; the oldest were spilled before them
    assert [m[:7] for m in aws.messages(GROUP, "same-ms") if m.startswith("seq")] == read[stats.spilled_total:]


def test_the_handlers_s3_setting_also_finds_lines_that_fell_back_to_local_disk(
    aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With spill_to=s3://..., lines S3 could not take are in the default local directory; reading with the
    same setting returns them too."""
    from mwaa_logging.spill.local import default_spill_directory

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a default directory of this test's own
    (tmp_path / "cache").mkdir()

    base = int(time.time() * 1000) - 60_000
    put(aws, [(base, "delivered")])
    S3SpillSink("spill", "env", client=aws.client("s3")).write([record(base + 1, "in s3")])
    LocalSpillSink(default_spill_directory()).write([record(base + 2, "fell back to disk")])
    found = [e.message for e in read_stream(GROUP, STREAM, spill_to="s3://spill/env", s3_client=aws.client("s3"))]
    assert found == ["delivered", "in s3", "fell back to disk"]
    sinks_only = [e.message for e in read_stream(GROUP, STREAM, s3_client=aws.client("s3"),
                                                 spill_to=S3SpillSink("spill", "env", client=aws.client("s3")))]
    assert sinks_only == ["delivered", "in s3"]  # sinks name exactly where to look


def test_mwaa_logging_read_prints_the_merged_log_from_a_shell(aws: LocalAWS, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI over the real endpoint: CloudWatch, S3 and a directory as one log; a window; JSON; what it
    could not read is said on stderr with exit 1, the rest still printed."""
    import json
    import subprocess
    import sys
    from datetime import datetime, timezone

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the default spill directory: empty
    (tmp_path / "cache").mkdir()
    base = (int(time.time()) - 60) * 1000  # a whole second, within what CloudWatch accepts
    second = datetime.fromtimestamp(base / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    put(aws, [(base, "delivered 0"), (base + 2, "delivered 2")])
    S3SpillSink("spill", "env", client=aws.client("s3")).write([record(base + 1, "in s3")])
    LocalSpillSink(tmp_path).write([record(base + 3, "on disk")])

    def read(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mwaa_logging.cli", "read", GROUP, STREAM,
                               "--endpoint-url", aws.url, "--s3-endpoint-url", aws.url, *options],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **aws.env()})

    done = read("--spill-to", "s3://spill/env", "--spill-to", str(tmp_path))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [f"{second}.000Z delivered 0", f"{second}.001Z in s3",
                                        f"{second}.002Z delivered 2", f"{second}.003Z on disk"]
    window = read("--spill-to", "s3://spill/env", "--start", f"{second}.001Z", "--end", str(base + 3),
                  "--json")
    spilled, delivered = (json.loads(line) for line in window.stdout.splitlines())
    assert spilled.pop("source").startswith("s3://spill/env/")
    assert spilled == {"timestamp": base + 1, "message": "in s3", "reason": "max_latency"}
    assert delivered == {"timestamp": base + 2, "message": "delivered 2", "source": "cloudwatch"}
    missing = read("--spill-to", "s3://no-such-bucket/x")
    assert missing.returncode == 1 and "no-such-bucket" in missing.stderr
    assert missing.stdout.splitlines() == [f"{second}.000Z delivered 0", f"{second}.002Z delivered 2"]
    nothing = read("--spill-to", "s3://spill/env", "--start", str(base + 10_000))  # or a typo'd stream name
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert nothing.stderr.startswith(f"mwaa-logging read: no lines in {GROUP}/{STREAM} (searched: CloudWatch, "
                                     "s3://spill/env")  # and the default spill directories that exist
    unreadable = read("--spill-to", "s3://no-such-bucket/x", "--start", str(base + 10_000))
    assert unreadable.returncode == 1 and "no lines in" in unreadable.stderr
    assert "searched: CloudWatch" in unreadable.stderr
    assert "no-such-bucket" not in unreadable.stderr.split("no lines in", 1)[1]  # said as unreadable, not searched
    bad = read("--start", "yesterday")
    assert bad.returncode == 2 and "neither ISO 8601 nor milliseconds" in bad.stderr


def test_a_stream_name_over_512_characters_is_written_and_read_back_by_the_name_given(
    aws: LocalAWS, tmp_path: Path
) -> None:
    """CloudWatch refuses stream names over 512 characters (the local endpoint too): the handler writes to a
    shortened name and every reader finds it from the name the handler was given, delivered or spilled."""
    import logging

    from mwaa_logging import CloudWatchLogHandler, open_stream
    from mwaa_logging.streamnames import sanitize

    logger_name = "etl." + "x" * 600
    handler = CloudWatchLogHandler(log_group_name=GROUP, log_stream_name="{logger_name}", endpoint_url=aws.url,
                                   spill_to=str(tmp_path))
    logger = logging.getLogger(logger_name)
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        for i in range(5):
            logger.info("line %d", i)
        assert handler.flush(10)
    finally:
        logger.removeHandler(handler)
        handler.close(5)
    assert handler.stats().delivered == 5 and not handler.stats().spilled, handler.stats()
    assert [e.message for e in read_stream(GROUP, logger_name)] == [f"line {i}" for i in range(5)]

    spilled_name = "spilled:" + "y" * 700  # ':' is replaced as well
    aws.faults.inject("hang")
    stream = open_stream(GROUP, spilled_name, endpoint_url=aws.url, spill_to=str(tmp_path), read_timeout=30)
    try:
        stream.write("kept on disk")
    finally:
        stream.close(0.5)
        aws.faults.clear()
    assert stream.stats().spilled_total == 1, stream.stats()
    assert len(sanitize(spilled_name)) == 512
    assert [e.message for e in read_stream(GROUP, spilled_name, spill_to=tmp_path)] == ["kept on disk"]


TABLE = ["+---+", "| a |", "+---+", "| b |", "+---+", "retry", "retry"]


def table_logger(aws: LocalAWS, stream: str, spill_to: Path) -> tuple[CloudWatchLogHandler, logging.Logger]:
    """A handler that sends only when flushed (send_interval=60): lines logged before a flush go in one call."""
    handler = CloudWatchLogHandler(log_group_name=GROUP, log_stream_name=stream, endpoint_url=aws.url,
                                   spill_to=str(spill_to), send_interval=60)
    logger = logging.getLogger(f"reader-test.{stream}")
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.INFO
    return handler, logger


def log_in_one_millisecond(logger: logging.Logger, lines: list[str]) -> None:
    created = time.time()
    for line in lines:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, (), None)
        record.created = created
        logger.handle(record)


def test_an_ascii_table_logged_in_one_millisecond_reads_back_whole(aws: LocalAWS, tmp_path: Path) -> None:
    """Lines logged twice in one millisecond (a table's border, a repeated message) are lines, not duplicates."""
    handler, logger = table_logger(aws, "table", tmp_path)
    try:
        log_in_one_millisecond(logger, TABLE)
        assert handler.flush(10)
    finally:
        handler.close()
    assert aws.messages(GROUP, "table") == TABLE
    assert [e.message for e in read_stream(GROUP, "table", spill_to=tmp_path)] == TABLE


def test_a_batch_an_ambiguous_retry_stored_twice_reads_back_once(aws: LocalAWS, tmp_path: Path) -> None:
    """The endpoint stores a call and drops its answer: the handler sends the batch again, CloudWatch holds it
    twice (another ingestion time); read back, it is there once, its repeated lines too."""
    handler, logger = table_logger(aws, "retried", tmp_path)
    try:
        logger.info("the stream exists")
        assert handler.flush(10)
        aws.faults.inject("lost_reply", count=1)
        log_in_one_millisecond(logger, TABLE)
        assert handler.flush(30)
    finally:
        handler.close()
    stats = handler.stats()
    assert stats.ambiguous_failures == 1 and not stats.spilled, stats
    assert aws.messages(GROUP, "retried") == ["the stream exists", *TABLE, *TABLE]
    assert [e.message for e in read_stream(GROUP, "retried", spill_to=tmp_path)] == ["the stream exists", *TABLE]


def deliver_then_spill_at_close(aws: LocalAWS, stream: str, spilled: list[str]) -> CloudWatchLogHandler:
    """A handler without spill_to that delivers "ok", then logs ``spilled`` while CloudWatch refuses every call,
    and is closed (they are spilled at its deadline)."""
    handler = CloudWatchLogHandler(log_group_name=GROUP, log_stream_name=stream, endpoint_url=aws.url,
                                   close_timeout=1)
    logger = logging.getLogger(f"reader-test.{stream}")
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.INFO
    try:
        logger.info("ok")
        assert handler.flush(10)
        aws.faults.inject("unavailable")
        for line in spilled:
            logger.info(line)
    finally:
        handler.close(1)
    return handler


def test_without_spill_to_the_reader_finds_what_a_handler_without_it_spilled(
    aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler without spill_to spills to the default local directory: read_stream without spill_to searches it,
    as `mwaa-logging read` and the Airflow reader do, and naming that directory does not read it twice."""
    import io

    from mwaa_logging.airflow.reading import read_events
    from mwaa_logging.cli import build_parser
    from mwaa_logging.readback import run
    from mwaa_logging.spill.local import default_spill_directory

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a default directory of this test's own
    (tmp_path / "cache").mkdir()
    handler = deliver_then_spill_at_close(aws, "default-spill", [f"spilled {i}" for i in range(3)])
    assert handler.stats().spilled == {"close_deadline": 3}, handler.stats()
    assert aws.messages(GROUP, "default-spill") == ["ok"]
    everything = ["ok", "spilled 0", "spilled 1", "spilled 2"]

    assert [e.message for e in read_stream(GROUP, "default-spill")] == everything
    assert [e.message for e in read_stream(GROUP, "default-spill", spill_to=default_spill_directory())] == everything
    assert [e.message for e in read_stream(GROUP, "default-spill", spill_to=[])] == ["ok"]  # nothing searched
    out = io.StringIO()
    assert run(build_parser("read").parse_args(["read", GROUP, "default-spill"]), out, io.StringIO()) == 0
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()] == everything
    client = make_logs_client(endpoint_url=aws.url)
    assert [e.message for e in read_events(client, GROUP, "default-spill")] == everything


def test_without_spill_to_the_reader_searches_where_the_environment_makes_handlers_spill(
    aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler reads MWAA_LOGGING_SPILL_TO; read_stream and `mwaa-logging read` without a spill location searched
    only the default directory, and missed what such a handler spilled."""
    import io

    from mwaa_logging.cli import build_parser
    from mwaa_logging.readback import run

    spill = tmp_path / "configured"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MWAA_LOGGING_SPILL_TO", str(spill))
    handler = deliver_then_spill_at_close(aws, "env-spill", ["spilled"])
    assert handler.stats().spilled == {"close_deadline": 1} and any(spill.rglob("*.jsonl.gz"))
    assert [e.message for e in read_stream(GROUP, "env-spill")] == ["ok", "spilled"]
    out = io.StringIO()
    assert run(build_parser("read").parse_args(["read", GROUP, "env-spill"]), out, io.StringIO()) == 0
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()] == ["ok", "spilled"]
    monkeypatch.setenv("MWAA_LOGGING_SPILL_TO", str(tmp_path / "not-made-yet"))  # made at the first spill
    out = io.StringIO()
    assert run(build_parser("read").parse_args(["read", GROUP, "env-spill"]), out, io.StringIO()) == 0
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()] == ["ok"]
    monkeypatch.setenv("MWAA_LOGGING_SPILL_TO", "ftp://nowhere")
    err = io.StringIO()
    assert run(build_parser("read").parse_args(["read", GROUP, "env-spill"]), io.StringIO(), err) == 2
    assert "MWAA_LOGGING_SPILL_TO" in err.getvalue()
