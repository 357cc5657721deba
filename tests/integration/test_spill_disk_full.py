"""A close-deadline spill of several streams that stores one stream's file and then fails on the next one (a disk
that filled up; here a file stands where the next stream's folder goes), in the target and in the fallback
directory (on the same disk): the stored stream is counted spilled and stored once, only the rest is kept and sent
later. Its events were all put back, counted nowhere, and then sent to CloudWatch too (or spilled again)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import mwaa_logging
from mwaa_logging.engine.delivery import MARKER_PREFIX
from mwaa_logging.spill.layout import stream_prefix
from mwaa_logging.testing.local_aws import LocalAWS
from mwaa_logging.testing.store import ResourceNotFound
from tests.integration.spill_reading import spilled_records

GROUP = "disk-full"


def block(directory: Path, stream: str) -> Path:
    """A file where ``stream``'s folder of spill files would go: writing its file fails, as on a full disk."""
    in_the_way = directory / stream_prefix(GROUP, stream).rstrip("/")
    in_the_way.parent.mkdir(parents=True, exist_ok=True)
    in_the_way.write_text("in the way")
    return in_the_way


def logger_of(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"disk-full.{name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def messages(local_aws: LocalAWS, stream: str) -> list[str]:
    try:
        return local_aws.messages(GROUP, stream)
    except ResourceNotFound:  # never created: nothing was sent to it
        return []


def close_with_the_disk_full(local_aws: LocalAWS, handler: logging.Handler, blocked: list[Path],
                             where_stored: Path) -> None:
    a, b = logger_of("a", handler), logger_of("b", handler)
    for i in range(3):
        a.info("A line %d", i)
    for i in range(4):
        b.info("B line %d", i)
    handler.close(0.5)  # type: ignore[call-arg]
    stats = handler.stats()  # type: ignore[attr-defined]
    assert stats.spilled == {"close_deadline": 3} and stats.pending == 4 and stats.balanced(), stats
    assert sorted(r.message for r in spilled_records(where_stored)) == [f"A line {i}" for i in range(3)]
    for path in blocked:  # an operator frees the disk; the handler tries b's lines again
        path.unlink()
    local_aws.faults.clear()
    assert handler.flush(timeout=15)  # type: ignore[call-arg]
    stats = handler.stats()  # type: ignore[attr-defined]
    assert stats.pending == 0 and stats.balanced(), stats
    in_cloudwatch = [m for s in ("disk-full.a", "disk-full.b") for m in messages(local_aws, s)
                     if not m.startswith(MARKER_PREFIX)]
    spilled = [r.message for r in spilled_records(where_stored)]
    everywhere = sorted(in_cloudwatch + spilled)
    assert everywhere == [f"A line {i}" for i in range(3)] + [f"B line {i}" for i in range(4)], everywhere


def test_a_stream_stored_before_the_disk_filled_is_not_stored_or_sent_again(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spill, cache = tmp_path / "spill", tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # the fallback directory
    blocked = [block(spill, "disk-full.b"), block(cache / "mwaa-logging" / "spill", "disk-full.b")]
    local_aws.faults.inject("hang")
    try:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name=GROUP, log_stream_name="{logger_name}",
                                                    endpoint_url=local_aws.url, spill_to=str(spill),
                                                    send_interval=0.1, read_timeout=60)
        close_with_the_disk_full(local_aws, handler, blocked, spill)
    finally:
        local_aws.faults.clear()


def test_behind_s3_a_stream_stored_before_the_disk_filled_is_stored_once(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """spill_to=s3://, S3 refusing PutObject: the chain's local directory stored a and failed on b, the chain said
    "every spill target failed" (no record stored), and the channel's fallback (the same directory) stored a again."""
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # the chain's local target and the fallback directory
    local_aws.client("s3").create_bucket(Bucket="spill")
    blocked = [block(cache / "mwaa-logging" / "spill", "disk-full.b")]
    local_aws.faults.inject("hang")
    local_aws.faults.inject("denied", api="s3:PUT")
    try:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name=GROUP, log_stream_name="{logger_name}",
                                                    endpoint_url=local_aws.url, spill_to="s3://spill/p",
                                                    send_interval=0.1, read_timeout=60)
        close_with_the_disk_full(local_aws, handler, blocked, cache)
    finally:
        local_aws.faults.clear()
    assert not list(cache.rglob("*.tmp"))
