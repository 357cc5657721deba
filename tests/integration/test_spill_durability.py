"""Spill targets that fail, vanish or cannot exist, with real files, the local endpoint's S3 and real processes:
every line ends in CloudWatch or a readable spill, or its loss is said with a count."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import mwaa_logging
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records

BUCKET = "spill-bucket"


def quiet_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return logger


def test_s3_refusing_every_put_is_said_and_counted_and_the_lines_are_on_local_disk(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the local fallback: the default directory
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", local_aws.url)
    local_aws.client("s3").create_bucket(Bucket=BUCKET)
    local_aws.faults.inject("denied", api="s3:PUT")  # no s3:PutObject on the spill bucket
    local_aws.faults.inject("hang")  # nothing reaches CloudWatch: close() spills everything
    caplog.set_level(logging.WARNING, logger="mwaa_logging")
    try:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="s",
                                                    endpoint_url=local_aws.url, spill_to=f"s3://{BUCKET}/p",
                                                    send_interval=0.1, read_timeout=60, close_timeout=0.5)
        logger = quiet_logger("s3-refused", handler)
        for i in range(20):
            logger.info("line %d", i)
        handler.close()
    finally:
        local_aws.faults.clear()
    stats = handler.stats()
    assert stats.balanced() and stats.spilled_total == 20 and stats.spill_failures == 1, stats
    assert sorted(r.message for r in spilled_records(tmp_path)) == sorted(f"line {i}" for i in range(20))
    said = [r.getMessage() for r in caplog.records if r.name == "mwaa_logging"]
    assert any(f"spill to s3://{BUCKET}/p failed" in m and "AccessDenied" in m
               and str(tmp_path / "mwaa-logging" / "spill") in m for m in said), said
