"""A spill that stores some records and fails on the rest: what was stored is counted spilled (once), only what was
not is kept, and a chain of targets says which records are still to be stored and where the others went."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from mwaa_logging.engine.channel import Held
from mwaa_logging.engine.delivery import spill_everything, spill_held
from mwaa_logging.events import MESSAGE
from mwaa_logging.protocols import PartialSpillError, SpillError
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spillformat import SpillRecord
from tests.unit.engine_fakes import MemorySpill, make_rig


class PickySpill:
    """Stores the records ``takes`` accepts; fails on the others as a spill target that stored some does."""

    def __init__(self, takes: Callable[[SpillRecord], bool], name: str = "picky://spill") -> None:
        self.takes = takes
        self.description = name
        self.records: list[SpillRecord] = []

    def write(self, records: Sequence[SpillRecord]) -> str:
        stored = [r for r in records if self.takes(r)]
        rest = [r for r in records if not self.takes(r)]
        self.records.extend(stored)
        if rest and stored:
            raise PartialSpillError("disk full", rest, f"{self.description}/stored")
        if rest:
            raise SpillError("disk full")
        return self.description


class RaisingSpill:
    description = "raising://spill"

    def write(self, records: Sequence[SpillRecord]) -> str:
        raise TypeError("an encoder bug, not a SpillError")


def recs(stream: str, n: int) -> list[SpillRecord]:
    return [SpillRecord("g", stream, 1_000 + i, f"{stream} {i}", "max_latency") for i in range(n)]


def test_the_chain_treats_any_exception_of_a_target_as_its_failure() -> None:
    kept = MemorySpill()
    chain = FallbackSpillSink([RaisingSpill(), kept])  # type: ignore[list-item]
    assert chain.write(recs("a", 3)) == kept.description
    assert [r.message for r in kept.records] == ["a 0", "a 1", "a 2"]
    assert chain.failures[RaisingSpill.description] == 1
    assert "TypeError" in (chain.last_error or "") or "encoder bug" in (chain.last_error or "")


def test_a_chain_whose_last_target_stored_some_says_what_is_left_and_where_the_rest_is() -> None:
    first = PickySpill(lambda r: False, "first://")  # fails on everything
    last = PickySpill(lambda r: r.stream == "a", "last://")
    chain = FallbackSpillSink([first, last])
    records = recs("a", 2) + recs("b", 3)
    with pytest.raises(PartialSpillError) as raised:
        chain.write(records)
    assert raised.value.remaining == records[2:]
    assert raised.value.location == "last:///stored"
    assert [r.message for r in last.records] == ["a 0", "a 1"]


def test_a_partial_then_a_partial_names_every_location_that_stored_something() -> None:
    first = PickySpill(lambda r: r.stream == "a", "first://")
    last = PickySpill(lambda r: r.stream == "b", "last://")
    chain = FallbackSpillSink([first, last])
    records = recs("a", 1) + recs("b", 1) + recs("c", 1)
    with pytest.raises(PartialSpillError) as raised:
        chain.write(records)
    assert raised.value.remaining == records[2:]
    assert raised.value.location == "first:///stored + last:///stored"


def test_a_chain_where_nothing_was_stored_raises_a_plain_spill_error() -> None:
    chain = FallbackSpillSink([PickySpill(lambda r: False), RaisingSpill()])  # type: ignore[list-item]
    with pytest.raises(SpillError, match="every spill target failed") as raised:
        chain.write(recs("a", 2))
    assert not isinstance(raised.value, PartialSpillError)


def test_streams_stored_before_the_disk_filled_are_spilled_once_and_only_the_rest_is_kept() -> None:
    """A close deadline spills streams a and b: a's file is written, b's fails, the fallback directory (same disk)
    fails too. a's events were put back with b's, counted nowhere, and delivered (or spilled) again."""
    spill = PickySpill(lambda r: r.stream == "a")
    rig = make_rig(spill=spill, fallback_spill=MemorySpill(fail=True))  # type: ignore[arg-type]
    for i in range(3):
        rig.append(f"a {i}", "a")
    for i in range(4):
        rig.append(f"b {i}", "b")
    rig.channel.drain_inbox()
    spill_everything(rig.channel, "close_timeout")
    stats = rig.channel.stats()
    assert dict(stats.spilled) == {"close_timeout": 3}
    assert stats.pending == 4 and stats.balanced()
    assert rig.channel.buffers["a"].count == 0 and rig.channel.buffers["a"].spilled_unmarked == 3
    assert rig.channel.buffers["a"].marker_where == {"picky://spill/stored"}
    assert rig.channel.buffers["b"].count == 4 and rig.channel.buffers["b"].spilled_unmarked == 0
    rig.append("a later", "a")
    rig.run(10)  # CloudWatch takes what is left
    sent = rig.transport.delivered_messages()
    assert sorted(m for m in sent if not m.startswith("[mwaa-logging]")) == ["a later"] + [f"b {i}" for i in range(4)]
    assert sum(m.startswith("[mwaa-logging] 3 log events") for m in sent) == 1  # a's marker, once
    assert [r.message for r in spill.records] == ["a 0", "a 1", "a 2"]
    stats = rig.channel.stats()
    assert stats.pending == 0 and stats.delivered == 6 and stats.balanced()


def test_a_held_whose_records_were_partly_stored_keeps_only_the_rest() -> None:
    spill = PickySpill(lambda r: r.message in ("s 0", "s 2"))
    rig = make_rig(spill=spill, fallback_spill=MemorySpill(fail=True))  # type: ignore[arg-type]
    for i in range(4):
        rig.append(f"s {i}")
    rig.channel.drain_inbox()
    buffer = rig.channel.buffers["s"]
    with rig.channel.lock:
        events, size = buffer.ready + buffer.pending, buffer.bytes
        buffer.ready, buffer.pending = [], []
        rig.channel.pending_bytes -= size
        buffer.bytes = buffer.count = 0
        held = rig.channel.hold(Held(buffer, events, size))
    spill_held(rig.channel, [held], "memory_cap")
    stats = rig.channel.stats()
    assert dict(stats.spilled) == {"memory_cap": 2} and stats.pending == 2 and stats.balanced()
    assert [e[MESSAGE] for e in buffer.ready] == ["s 1", "s 3"]
    assert buffer.count == 2 and buffer.bytes == sum(e[2] for e in buffer.ready)
    assert rig.channel.held == set()


def test_queued_events_of_several_streams_partly_stored_keep_only_the_rest() -> None:
    spill = PickySpill(lambda r: r.stream == "a")
    rig = make_rig(spill=spill, fallback_spill=MemorySpill(fail=True))  # type: ignore[arg-type]
    rig.append("a 0", "a")
    rig.append("b 0", "b")
    rig.append("a 1", "a")
    with rig.channel.lock:
        queued = list(rig.channel.inbox)
        rig.channel.inbox.clear()
        size = rig.channel.queued_bytes
        rig.channel.queued_bytes = 0
        rig.channel.counters.emitted += len(queued)  # as drain_inbox does: emitted once taken out
        held = rig.channel.hold(Held(None, queued, size))  # type: ignore[arg-type]
    spill_held(rig.channel, [held], "internal_error")
    stats = rig.channel.stats()
    assert dict(stats.spilled) == {"internal_error": 2} and stats.pending == 1 and stats.balanced(), stats
    assert [q[MESSAGE] for q in rig.channel.inbox] == ["b 0"]
    assert rig.channel.queued_bytes == queued[1][2]
