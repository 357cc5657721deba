"""At a close deadline the spill is bounded: an S3 target gets a short wait and the rest goes to the local directory,
every stream goes in one write, and many streams' local files are made durable together, not one fsync each."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.engine.delivery import DEADLINE_SPILL_WAIT
from mwaa_logging.outcome import CallResult, Outcome
from mwaa_logging.protocols import PartialSpillError, SpillError
from mwaa_logging.spill import local
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spill.local import LocalSpillSink
from mwaa_logging.spillformat import SpillRecord
from tests.unit.engine_fakes import MemorySpill, ScriptedTransport, make_rig

THROTTLED = CallResult(Outcome.THROTTLED, error_code="ThrottlingException")


def records(streams: int, per_stream: int = 2) -> list[SpillRecord]:
    return [SpillRecord("g", f"s{s:04d}", 1_700_000_000_000 + i, f"line {i} of s{s:04d}", "close_deadline")
            for s in range(streams) for i in range(per_stream)]


class S3Client:
    """put_object stores at once, or blocks until ``release`` is set once ``block_after`` objects are stored."""

    def __init__(self, block_after: int | None = None) -> None:
        self.stored: dict[str, bytes] = {}
        self.block_after = block_after
        self.release = threading.Event()

    def put_object(self, *, Key: str, Body: bytes, **options: Any) -> None:
        if self.block_after is not None and len(self.stored) >= self.block_after:
            self.release.wait(30)
        self.stored[Key] = Body


def s3_sink(client: S3Client) -> S3SpillSink:
    return S3SpillSink("bucket", "p", client=client)  # type: ignore[arg-type]


def test_s3_write_before_a_deadline_returns_by_it_naming_what_s3_has_not_stored() -> None:
    client = S3Client(block_after=1)  # the first stream's object is stored, the second's PUT never answers
    sink = s3_sink(client)
    given = records(2)
    started = time.monotonic()
    with pytest.raises(PartialSpillError) as raised:
        sink.write_before(given, started + 0.2)
    assert time.monotonic() - started < 2.0
    assert raised.value.remaining == [r for r in given if r.stream == "s0001"]
    assert len(client.stored) == 1
    client.release.set()


def test_s3_write_before_a_deadline_that_s3_meets_stores_everything_and_past_it_nothing() -> None:
    client = S3Client()
    sink = s3_sink(client)
    assert sink.write_before(records(3), time.monotonic() + 30) == "s3://bucket/p"
    assert len(client.stored) == 3
    with pytest.raises(SpillError, match="deadline"):
        sink.write_before(records(1), time.monotonic() - 1)
    assert len(client.stored) == 3


def test_a_fallback_chain_gives_s3_until_the_deadline_and_the_local_directory_the_rest(tmp_path: Path) -> None:
    client = S3Client(block_after=0)
    chain = FallbackSpillSink([s3_sink(client), LocalSpillSink(tmp_path)])
    given = records(3)
    started = time.monotonic()
    assert chain.write_before(given, started + 0.2) == str(tmp_path)
    assert time.monotonic() - started < 2.0
    stored = [r for s in range(3) for r in LocalSpillSink(tmp_path).read_stream("g", f"s{s:04d}")]
    assert stored == given
    client.release.set()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fds fsynced during the test."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's; elsewhere every file is fsynced")
def test_many_streams_are_made_durable_together_not_one_fsync_each(tmp_path: Path, fsyncs: list[int]) -> None:
    sink = LocalSpillSink(tmp_path)
    given = records(50)
    assert sink.write(given) == str(tmp_path)
    assert fsyncs == []
    assert sorted(p.name.endswith(".jsonl.gz") for p in tmp_path.rglob("*") if p.is_file()) == [True] * 50
    assert [r for s in range(50) for r in sink.read_stream("g", f"s{s:04d}")] == given
    sink.write(records(1))  # one stream: its own fsync, as before
    assert len(fsyncs) == 1


def test_without_syncfs_each_file_is_fsynced(tmp_path: Path, fsyncs: list[int],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_syncfs", lambda: None)  # macOS, BSD, an old libc
    sink = LocalSpillSink(tmp_path)
    given = records(5)
    assert sink.write(given) == str(tmp_path)
    assert len(fsyncs) >= 5
    assert [r for s in range(5) for r in sink.read_stream("g", f"s{s:04d}")] == given


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's; elsewhere every file is fsynced")
def test_when_the_file_system_cannot_sync_no_file_of_the_write_is_left(tmp_path: Path, fsyncs: list[int],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(directory: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(local, "_sync_file_system", broken)
    with pytest.raises(SpillError, match="Input/output error"):
        LocalSpillSink(tmp_path).write(records(10))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


class DeadlineSpill(MemorySpill):
    """Records every write and the deadline it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, float | None]] = []

    def write(self, records: Sequence[SpillRecord]) -> str:
        self.writes.append((len(records), None))
        return super().write(records)

    def write_before(self, records: Sequence[SpillRecord], deadline: float) -> str:
        self.writes.append((len(records), deadline))
        return super().write(records)


def test_close_spills_every_stream_in_one_write_bounded_by_a_short_wait() -> None:
    spill = DeadlineSpill()
    rig = make_rig(ScriptedTransport(on_call=lambda call: THROTTLED), spill=spill, send_interval=0.1)
    for stream in ("a", "b", "c"):
        for i in range(2):
            rig.append(f"{stream}{i}", stream=stream)
    rig.run(0.3)
    closing = time.monotonic()
    assert rig.channel.close(timeout=0) is False
    ((count, deadline),) = spill.writes
    assert count == 6
    assert deadline is not None and closing + DEADLINE_SPILL_WAIT <= deadline <= time.monotonic() + DEADLINE_SPILL_WAIT
    assert {r.reason for r in spill.records} == {"close_deadline"}
    assert rig.channel.stats().balanced() and rig.channel.stats().pending == 0
