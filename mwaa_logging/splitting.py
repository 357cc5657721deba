"""Splitting messages larger than one CloudWatch event into marked chunks, and putting them back.

A message of more than ``max_bytes`` UTF-8 bytes becomes ``n`` chunks, each one event::

    [mwaa-logging split 5f0c2a9e1b7d4c36 01/12] <payload bytes 1..k>
    [mwaa-logging split 5f0c2a9e1b7d4c36 02/12] <payload bytes k+1..>

The index is zero-padded to the width of the total, so every header of one split has the same
length. Payloads are cut on UTF-8 character boundaries (lone surrogates count as 3 bytes, as
``surrogatepass`` encodes them), so each chunk is valid text and the concatenated payloads are the
original message. Pure: no I/O.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

from mwaa_logging.events import MESSAGE, SEQ, SIZE, TIMESTAMP, LogEvent, counted_size
from mwaa_logging.limits import EVENT_OVERHEAD_BYTES, MAX_EVENT_MESSAGE_BYTES

__all__ = [
    "CHUNK_PREFIX",
    "Chunk",
    "Reassembler",
    "new_split_id",
    "parse_chunk",
    "reassemble",
    "reassemble_messages",
    "reassemble_pairs",
    "split_event",
    "split_message",
    "split_oversized",
    "truncate_message",
]

T = TypeVar("T")

#: Every chunk message starts with this.
CHUNK_PREFIX = "[mwaa-logging split "
_CHUNK_RE = re.compile(r"\[mwaa-logging split ([0-9A-Za-z]{1,32}) ([0-9]{1,9})/([0-9]{1,9})\] ")
_SPLIT_ID_RE = re.compile(r"[0-9A-Za-z]{1,32}")
#: A payload must hold at least one character (4 UTF-8 bytes at most).
_MIN_PAYLOAD_BYTES = 4


@dataclass(frozen=True, slots=True)
class Chunk:
    """One parsed chunk: ``index`` counts from 1 to ``total``."""

    split_id: str
    index: int
    total: int
    payload: str


def new_split_id() -> str:
    """A random 16-hex-digit id (64 bits: collisions within one stream are not a concern)."""
    return secrets.token_hex(8)


def _header(split_id: str, index: int, total: int, width: int) -> str:
    return f"{CHUNK_PREFIX}{split_id} {index:0{width}d}/{total:0{width}d}] "


def _encode(message: str) -> bytes:
    return message.encode("utf-8", "surrogatepass")


def _char_boundary(data: bytes, end: int) -> int:
    """The largest index <= ``end`` that does not fall inside a UTF-8 sequence of ``data``."""
    while end < len(data) and data[end] & 0xC0 == 0x80:
        end -= 1
    return end


def _cut_points(data: bytes, budget: int) -> list[int]:
    """Greedy cut offsets ``[0, ..., len(data)]``: each piece as long as ``budget`` allows."""
    points = [0]
    start = 0
    while len(data) - start > budget:
        start = _char_boundary(data, start + budget)
        points.append(start)
    points.append(len(data))
    return points


def split_message(
    message: str, *, max_bytes: int = MAX_EVENT_MESSAGE_BYTES, split_id: str | None = None
) -> list[str]:
    """``[message]`` if it fits in ``max_bytes`` UTF-8 bytes, else marked chunks that each fit.

    Chunks are as full as possible (only the last may be shorter than needed) and never empty.
    ``split_id`` defaults to :func:`new_split_id`.
    """
    data = _encode(message)
    if len(data) <= max_bytes:
        return [message]
    split_id = new_split_id() if split_id is None else split_id
    if not _SPLIT_ID_RE.fullmatch(split_id):
        raise ValueError(f"split_id must be 1-32 letters or digits, got {split_id!r}")
    width = 1
    while True:
        budget = max_bytes - len(_header(split_id, 1, 1, width))
        if budget < _MIN_PAYLOAD_BYTES:
            raise ValueError(f"max_bytes={max_bytes} leaves no room for a payload after the chunk header")
        points = _cut_points(data, budget)
        total = len(points) - 1
        if len(str(total)) <= width:
            break
        width = len(str(total))  # wider numbers shrink the budget: count again
    return [
        _header(split_id, index, total, width) + data[start:end].decode("utf-8", "surrogatepass")
        for index, (start, end) in enumerate(pairwise(points), start=1)
    ]


def split_event(
    event: LogEvent, *, max_bytes: int = MAX_EVENT_MESSAGE_BYTES, split_id: str | None = None
) -> list[LogEvent]:
    """``[event]`` if its message fits, else one event per chunk (same timestamp and seq, in order)."""
    if event[SIZE] - EVENT_OVERHEAD_BYTES <= max_bytes:
        return [event]
    return [
        (event[TIMESTAMP], chunk, counted_size(chunk), event[SEQ])
        for chunk in split_message(event[MESSAGE], max_bytes=max_bytes, split_id=split_id)
    ]


def split_oversized(
    events: Iterable[LogEvent], *, max_bytes: int = MAX_EVENT_MESSAGE_BYTES
) -> list[LogEvent]:
    """``events`` with every message above ``max_bytes`` replaced by its chunks (order kept)."""
    limit = max_bytes + EVENT_OVERHEAD_BYTES
    result: list[LogEvent] = []
    for event in events:
        if event[SIZE] <= limit:
            result.append(event)
        else:
            result.extend(split_event(event, max_bytes=max_bytes))
    return result


def parse_chunk(message: str) -> Chunk | None:
    """The chunk ``message`` is, or ``None`` for an ordinary message."""
    if not message.startswith(CHUNK_PREFIX):
        return None
    match = _CHUNK_RE.match(message)
    if match is None:
        return None
    index, total = int(match[2]), int(match[3])
    if not 1 <= index <= total:
        return None
    return Chunk(match[1], index, total, message[match.end() :])


def truncate_message(message: str, max_bytes: int, *, marker: str | None = None) -> str:
    """``message`` cut to at most ``max_bytes`` UTF-8 bytes, on a character boundary, with a marker.

    The marker (default ``" [mwaa-logging truncated from N bytes]"``) is part of the budget; it is
    left out when ``max_bytes`` cannot hold it. Only for the opt-in truncate policy: the default is
    to split, which loses nothing.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    data = _encode(message)
    if len(data) <= max_bytes:
        return message
    if marker is None:
        marker = f" [mwaa-logging truncated from {len(data)} bytes]"
    keep = max_bytes - len(_encode(marker))
    if keep < 0:
        marker, keep = "", max_bytes
    return data[: _char_boundary(data, keep)].decode("utf-8", "surrogatepass") + marker


class _Group(Generic[T]):
    """The chunks of one split seen so far; stands in the output queue at its first chunk's place."""

    __slots__ = ("first", "items", "payloads", "split_id", "total")

    def __init__(self, split_id: str, first: T, total: int) -> None:
        self.split_id = split_id
        self.first = first
        self.total = total
        self.payloads: dict[int, str] = {}
        self.items: dict[int, T] = {}

    @property
    def complete(self) -> bool:
        return len(self.payloads) == self.total


class Reassembler(Generic[T]):
    """Turns a time-ordered stream of items (log lines, events, records) back into whole messages.

    ``message_of(item)`` reads an item's message; ``with_message(item, message)`` builds the item
    that carries a reassembled message, at the place (and with the timestamp) of the first chunk
    that arrived. Chunks of one split may arrive in any order, interleaved with other lines, and
    more than once (at-least-once delivery): duplicates are dropped. Output keeps input order, so
    lines after an open split wait until it completes; a split still open at :meth:`finish`, or
    once more than ``max_held`` items wait behind it, is released as its chunks, markers included.
    """

    def __init__(
        self,
        message_of: Callable[[T], str],
        with_message: Callable[[T, str], T],
        *,
        max_held: int = 100_000,
        remember_completed: int = 65_536,
    ) -> None:
        self._message_of = message_of
        self._with_message = with_message
        self._max_held = max_held
        self._remember = remember_completed
        self._queue: deque[_Group[T] | tuple[T]] = deque()
        self._open: dict[str, _Group[T]] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()

    def feed(self, item: T) -> list[T]:
        """Take one item; return the items now ready, in order."""
        message = self._message_of(item)
        if not self._queue and not message.startswith(CHUNK_PREFIX):
            return [item]
        chunk = parse_chunk(message)
        if chunk is None:
            self._queue.append((item,))
        elif chunk.split_id in self._completed:
            return []  # a duplicate of a chunk already reassembled
        else:
            group = self._open.get(chunk.split_id)
            if group is None:
                group = self._open[chunk.split_id] = _Group(chunk.split_id, item, chunk.total)
                self._queue.append(group)
            if chunk.total != group.total:
                self._queue.append((item,))  # not part of this split after all: pass it on as is
            elif chunk.index not in group.payloads:
                group.payloads[chunk.index] = chunk.payload
                group.items[chunk.index] = item
                if group.complete:
                    self._close(chunk.split_id)
        return self._drain(force=False)

    def finish(self) -> list[T]:
        """End of input: return everything still held, open splits as their chunks."""
        return self._drain(force=True)

    def _close(self, split_id: str) -> None:
        del self._open[split_id]
        self._completed[split_id] = None
        if len(self._completed) > self._remember:
            self._completed.popitem(last=False)

    def _drain(self, *, force: bool) -> list[T]:
        ready: list[T] = []
        queue = self._queue
        while queue:
            head = queue[0]
            if isinstance(head, tuple):
                ready.append(head[0])
            elif head.complete:
                whole = "".join(head.payloads[index] for index in range(1, head.total + 1))
                ready.append(self._with_message(head.first, whole))
            elif force or len(queue) > self._max_held:
                ready.extend(head.items[index] for index in sorted(head.items))
                del self._open[head.split_id]
            else:
                break
            queue.popleft()
        return ready


def reassemble(
    items: Iterable[T],
    message_of: Callable[[T], str],
    with_message: Callable[[T, str], T],
    *,
    max_held: int = 100_000,
) -> Iterator[T]:
    """Lazily reassemble split messages in ``items`` (see :class:`Reassembler`)."""
    reassembler = Reassembler(message_of, with_message, max_held=max_held)
    for item in items:
        yield from reassembler.feed(item)
    yield from reassembler.finish()


def reassemble_messages(messages: Iterable[str], *, max_held: int = 100_000) -> Iterator[str]:
    """:func:`reassemble` for plain message strings."""
    return reassemble(messages, lambda message: message, lambda _, whole: whole, max_held=max_held)


def reassemble_pairs(
    pairs: Iterable[tuple[int, str]], *, max_held: int = 100_000
) -> Iterator[tuple[int, str]]:
    """:func:`reassemble` for ``(timestamp, message)`` pairs."""
    return reassemble(pairs, lambda pair: pair[1], lambda pair, whole: (pair[0], whole), max_held=max_held)
