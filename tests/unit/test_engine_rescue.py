"""An unexpected exception while the engine handles a channel's events loses none of them: what the failing work
had taken out of the inbox, a buffer or flight is spilled with reason ``internal_error`` (or put back when no
spill target takes it), and the counters still add up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from mwaa_logging.engine import channel as channel_module
from mwaa_logging.outcome import CallResult, Outcome
from mwaa_logging.spillformat import SpillRecord
from tests.unit.engine_fakes import MemorySpill, Rig, ScriptedTransport, make_rig

LONG = "x" * 2_000  # more than max_message_size=1024 below: the sender splits it


def assert_settled(rig: Rig) -> None:
    stats = rig.channel.stats()
    assert stats.balanced() and stats.pending == 0, stats
    assert (rig.channel.settling, rig.channel.settling_bytes, rig.channel.held) == (0, 0, set())


@pytest.fixture
def splitting_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(channel_module, "split_message", boom)


def test_lines_drained_with_a_message_that_cannot_be_split_are_spilled_not_lost(splitting_fails: None) -> None:
    rig = make_rig(send_interval=0.1, max_message_size=1024)
    for message in ("short-1", LONG, "short-3"):
        rig.append(message)
    rig.run(0.3)
    assert [r.message for r in rig.spill.records] == ["short-1", LONG, "short-3"]
    assert {(r.reason, r.detail) for r in rig.spill.records} == {("internal_error", "RuntimeError: boom")}
    stats = rig.channel.stats()
    assert (stats.emitted, stats.spilled, stats.split_events) == (3, {"internal_error": 3}, 0)
    assert_settled(rig)
    rig.append("after")  # the sender goes on
    rig.run(0.3)
    assert "after" in rig.transport.delivered_messages()
    assert_settled(rig)


def test_close_spills_what_cannot_be_buffered_and_does_not_raise(splitting_fails: None) -> None:
    rig = make_rig(send_interval=60, max_message_size=1024)
    rig.append("buffered")
    rig.run()
    rig.append(LONG)
    assert rig.channel.close(timeout=0) is False
    assert sorted((r.message, r.reason) for r in rig.spill.records) == [
        ("buffered", "close_deadline"), (LONG, "internal_error")]
    assert_settled(rig)


def test_rescued_lines_no_target_can_take_stay_queued_until_one_can(splitting_fails: None) -> None:
    spill, fallback = MemorySpill(fail=True), MemorySpill(fail=True)
    rig = make_rig(spill=spill, fallback_spill=fallback, send_interval=0.1, max_message_size=1024)
    rig.append("short")
    rig.append(LONG)
    rig.run(0.3)
    stats = rig.channel.stats()
    assert stats.balanced() and (stats.pending, stats.spilled_total) == (2, 0)
    assert len(rig.channel.inbox) == 2  # back in the queue, in order, drained again on the next pass
    spill.fail = False
    rig.run(1.5)
    assert [r.message for r in spill.records] == ["short", LONG]
    assert_settled(rig)


class CreateStreamFails(ScriptedTransport):
    def create_log_stream(self, group: str, stream: str) -> CallResult:
        raise RuntimeError("create exploded")


def test_a_batch_whose_answer_cannot_be_settled_is_spilled_not_stranded() -> None:
    missing = CallResult(Outcome.NO_RESOURCE, "ResourceNotFoundException", "The specified log stream does not exist.")
    rig = make_rig(CreateStreamFails([missing]), send_interval=0.1)
    for i in range(5):
        rig.append(f"m{i}")
    rig.run(0.3)
    assert [r.message for r in rig.spill.records] == [f"m{i}" for i in range(5)]
    assert {r.reason for r in rig.spill.records} == {"internal_error"}
    assert rig.channel.buffers["s"].in_flight is None
    assert rig.channel.flush(timeout=0)
    assert_settled(rig)


class RaisingSpill(MemorySpill):
    def write(self, records: Sequence[SpillRecord]) -> str:
        raise RuntimeError("not a SpillError")


def test_a_spill_target_that_raises_anything_falls_back_to_the_next() -> None:
    fallback = MemorySpill()
    rig = make_rig(ScriptedTransport([CallResult(Outcome.INVALID, "Bad", "no")]), spill=RaisingSpill(),
                   fallback_spill=fallback, send_interval=0.1)
    rig.append("keep me")
    rig.run(0.3)
    assert [(r.message, r.reason) for r in fallback.records] == [("keep me", "invalid")]
    assert rig.channel.stats().spill_failures == 1
    assert_settled(rig)
