"""A chain of spill targets: a target that raises anything has failed, and the next one is tried."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from mwaa_logging.protocols import PartialSpillError, SpillError
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spillformat import SpillRecord
from tests.unit.engine_fakes import MemorySpill


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


def test_a_chain_where_nothing_was_stored_raises_a_plain_spill_error() -> None:
    chain = FallbackSpillSink([PickySpill(lambda r: False), RaisingSpill()])  # type: ignore[list-item]
    with pytest.raises(SpillError, match="every spill target failed") as raised:
        chain.write(recs("a", 2))
    assert not isinstance(raised.value, PartialSpillError)
