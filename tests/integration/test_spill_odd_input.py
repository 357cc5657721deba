"""Lines that are hard to store still end up spilled and readable: lone surrogates, stream names longer than a
file name may be once quoted, timestamps beyond what JSON integers and file names can carry."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mwaa_logging
from mwaa_logging.reader import read_stream
from mwaa_logging.spill.layout import MAX_SEGMENT
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records

#: A valid 255-character Airflow stream name: every '=' and '/' becomes three characters when quoted.
LONG_STREAM = ("dag_id=" + "d" * 60 + "/run_id=manual__2026-12-07T04_00_00+00_00/task_id=" + "t" * 90
               + "/attempt=1.log")[:255]


def test_hard_lines_are_spilled_whole_and_read_back(local_aws: LocalAWS, tmp_path: Path) -> None:
    local_aws.faults.inject("hang")  # nothing reaches CloudWatch: close() spills what is left at its deadline
    try:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="odd", log_stream_name=LONG_STREAM,
                                                    endpoint_url=local_aws.url, spill_to=str(tmp_path),
                                                    send_interval=0.1, read_timeout=60, close_timeout=1)
        logger = logging.getLogger("odd-input")
        logger.handlers[:], logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
        logger.info("surrogate \udce9 from latin-1 bytes")
        for name, created in (("far future", 1e17), ("far past", -1e17)):
            record = logger.makeRecord("odd-input", logging.INFO, __file__, 1, name, None, None)
            record.created = created
            logger.handle(record)
        logger.info("plain")
        started = time.monotonic()
        handler.close()  # must not raise
        assert time.monotonic() - started < 1 + 1.0
    finally:
        local_aws.faults.clear()
    stats = handler.stats()
    assert stats.balanced() and stats.pending == 0 and stats.spilled_total == 4, stats
    records = spilled_records(tmp_path)
    assert {r.stream for r in records} == {LONG_STREAM}  # the full name inside, whatever the file is called
    assert all(len(part.encode()) <= MAX_SEGMENT + len(".jsonl.gz.tmp")
               for path in tmp_path.rglob("*") for part in path.relative_to(tmp_path).parts)
    by_message = {r.message: r for r in records}
    assert set(by_message) == {"surrogate \ufffd from latin-1 bytes", "far future", "far past", "plain"}
    assert by_message["far future"].reason == "too_new" and "out of range" in by_message["far future"].detail
    assert by_message["far past"].reason == "too_old"
    read = [e.message for e in read_stream("odd", LONG_STREAM, spill_to=tmp_path, include_cloudwatch=False)]
    assert sorted(read) == sorted(by_message)


def test_records_whose_created_is_not_a_time_are_delivered_at_arrival_with_the_reason(local_aws: LocalAWS,
                                                                                      tmp_path: Path) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="odd", log_stream_name="created",
                                                endpoint_url=local_aws.url, spill_to=str(tmp_path))
    logger = logging.getLogger("odd-created")
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    before = int(time.time() * 1000)
    for created in (float("nan"), float("inf"), None, "2024-01-01"):
        record = logger.makeRecord("odd-created", logging.INFO, __file__, 1, "created %s", (created,), None)
        record.created = created  # type: ignore[assignment]
        logger.handle(record)
    logger.info("normal")
    assert handler.flush(timeout=float("inf"))  # an infinite timeout waits, it does not overflow
    handler.close(timeout=float("inf"))
    stored = local_aws.events("odd", "created")
    assert [m.split(" [")[0] for _, m in stored] == ["created nan", "created inf", "created None",
                                                     "created 2024-01-01", "normal"]
    assert all("is not a time; logged at arrival" in m for _, m in stored[:4])
    assert all(t >= before for t, _ in stored)
    assert handler.stats().balanced() and not handler.stats().spilled
