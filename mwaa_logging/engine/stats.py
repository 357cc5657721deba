"""Counters that add up: emitted = delivered + spilled + pending (+ duplicates are counted apart)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    """Mutable counters of one channel; the owner guards them with its lock."""

    emitted: int = 0
    delivered: int = 0
    spilled: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0
    put_calls: int = 0
    create_calls: int = 0
    bytes_sent: int = 0
    counted_bytes_delivered: int = 0
    #: Events stored twice: CloudWatch accepted them after we had already spilled them (close deadline during a
    #: call), or S3 confirmed a spill object after its deadline had sent its events to the next target.
    duplicates: int = 0
    #: Calls that failed without an answer, so CloudWatch may have stored them (retry may duplicate).
    ambiguous_failures: int = 0
    #: Events split into chunks (oversized messages) and chunks produced.
    split_events: int = 0
    split_chunks: int = 0
    truncated_events: int = 0
    #: Marker events the library wrote into streams after spills (counted in emitted too).
    markers: int = 0
    #: Spill writes that failed on the configured target and fell back.
    spill_failures: int = 0
    #: Records emitted after close() (delivered anyway).
    emitted_after_close: int = 0

    def add(self, other: Counters) -> None:
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, name, mine + theirs)

    def subtract(self, other: Counters) -> None:
        """Undo :meth:`add` of ``other``."""
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, Counter):
                mine.subtract(theirs)
                for key in [key for key, count in mine.items() if count == 0]:
                    del mine[key]
            else:
                setattr(self, name, mine - theirs)


@dataclass(frozen=True)
class Stats:
    """A snapshot of counters plus what is pending now."""

    emitted: int
    delivered: int
    spilled: dict[str, int]
    retries: int
    throttled: int
    put_calls: int
    create_calls: int
    bytes_sent: int
    counted_bytes_delivered: int
    duplicates: int
    ambiguous_failures: int
    split_events: int
    split_chunks: int
    truncated_events: int
    markers: int
    spill_failures: int
    emitted_after_close: int
    pending: int
    pending_bytes: int
    oldest_pending_age: float

    @property
    def spilled_total(self) -> int:
        return sum(self.spilled.values())

    @classmethod
    def of(cls, counters: Counters, pending: int, pending_bytes: int, oldest_pending_age: float) -> Stats:
        values: dict[str, Any] = {}
        for name in Counters.__dataclass_fields__:
            value = getattr(counters, name)
            values[name] = dict(value) if isinstance(value, Counter) else value
        return cls(**values, pending=pending, pending_bytes=pending_bytes,
                   oldest_pending_age=oldest_pending_age)

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["spilled_total"] = self.spilled_total
        return data

    def balanced(self) -> bool:
        """emitted == delivered + spilled + pending."""
        return self.emitted == self.delivered + self.spilled_total + self.pending
