"""A log stream's event list that takes whole batches cheaply and builds event objects only when read."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, NamedTuple, SupportsIndex


class StoredLogEvent(NamedTuple):
    """A stored event, duck-typed to moto's ``LogEvent`` (the attributes and methods moto reads).

    A tuple is much cheaper to build than moto's model, which also registers every instance in a
    process-wide list that is never emptied.
    """

    timestamp: int
    message: str
    ingestion_time: int
    event_id: int

    def to_response_dict(self) -> dict[str, Any]:
        return {"ingestionTime": self.ingestion_time, "message": self.message, "timestamp": self.timestamp}

    def to_filter_dict(self) -> dict[str, Any]:
        return {
            "eventId": str(self.event_id),
            "ingestionTime": self.ingestion_time,
            "message": self.message,
            "timestamp": self.timestamp,
        }


class _Batch(NamedTuple):
    timestamps: Sequence[int]
    messages: Sequence[str]
    ingestion_time: int
    first_id: int


class EventLog(list[Any]):
    """Drop-in for moto's ``LogStream.events`` list.

    :meth:`add_batch` keeps the batch as two plain lists (no per-event object, nothing for the
    garbage collector to walk); any list operation first turns pending batches into
    :class:`StoredLogEvent` items, in order. :meth:`pairs` reads everything without building them.
    """

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self._pending: list[_Batch] = []
        self._pending_count = 0
        self._lock = threading.RLock()

    def add_batch(
        self, timestamps: Sequence[int], messages: Sequence[str], ingestion_time: int, first_id: int
    ) -> None:
        with self._lock:
            self._pending.append(_Batch(timestamps, messages, ingestion_time, first_id))
            self._pending_count += len(timestamps)

    def materialize(self) -> None:
        """Turn pending batches into event objects (once)."""
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, []
            for batch in pending:
                ids = range(batch.first_id, batch.first_id + len(batch.timestamps))
                list.extend(self, map(
                    StoredLogEvent._make,
                    zip(batch.timestamps, batch.messages, repeat(batch.ingestion_time), ids),
                ))
            self._pending_count = 0

    def pairs(self) -> list[tuple[int, str]]:
        """Every ``(timestamp, message)`` in arrival order, without building event objects."""
        with self._lock:
            result = [(event.timestamp, event.message) for event in list.__iter__(self)]
            for batch in self._pending:
                result.extend(zip(batch.timestamps, batch.messages, strict=True))
            return result

    # -- list API: settle pending batches first ---------------------------------------------
    def __len__(self) -> int:
        return list.__len__(self) + self._pending_count

    def __iter__(self) -> Iterator[Any]:
        self.materialize()
        return list.__iter__(self)

    def __reversed__(self) -> Iterator[Any]:
        self.materialize()
        return list.__reversed__(self)

    def __getitem__(self, index: Any) -> Any:
        self.materialize()
        return list.__getitem__(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        self.materialize()
        list.__setitem__(self, index, value)

    def __delitem__(self, index: Any) -> None:
        self.materialize()
        list.__delitem__(self, index)

    def __contains__(self, item: object) -> bool:
        self.materialize()
        return list.__contains__(self, item)

    def __iadd__(self, other: Iterable[Any]) -> EventLog:  # type: ignore[override,misc]
        self.materialize()
        list.extend(self, other)
        return self

    def __add__(self, other: list[Any]) -> list[Any]:  # type: ignore[override]
        self.materialize()
        return list.__add__(self, other)

    def __eq__(self, other: object) -> bool:
        self.materialize()
        return list.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self.materialize()
        return list.__repr__(self)

    def append(self, item: Any) -> None:
        self.materialize()
        list.append(self, item)

    def extend(self, items: Iterable[Any]) -> None:
        self.materialize()
        list.extend(self, items)

    def insert(self, index: SupportsIndex, item: Any) -> None:
        self.materialize()
        list.insert(self, index, item)

    def pop(self, index: SupportsIndex = -1) -> Any:
        self.materialize()
        return list.pop(self, index)

    def remove(self, item: Any) -> None:
        self.materialize()
        list.remove(self, item)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._pending_count = 0
            list.clear(self)

    def copy(self) -> list[Any]:
        self.materialize()
        return list.copy(self)

    def index(self, item: Any, *args: Any) -> int:
        self.materialize()
        return list.index(self, item, *args)

    def count(self, item: Any) -> int:
        self.materialize()
        return list.count(self, item)

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self.materialize()
        list.sort(self, *args, **kwargs)

    def reverse(self) -> None:
        self.materialize()
        list.reverse(self)
