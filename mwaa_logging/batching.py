"""Cutting events into PutLogEvents batches, and reading PutLogEvents rejections. Pure: no I/O.

A batch obeys every PutLogEvents rule: events in (timestamp, seq) order, at least one event,
sum of counted sizes <= 1,048,576 bytes, at most 10,000 events, and a time span strictly below 24 h.
Events larger than one batch must be split first (:mod:`mwaa_logging.splitting`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from operator import itemgetter

from mwaa_logging.events import SEQ, SIZE, TIMESTAMP, LogEvent
from mwaa_logging.limits import (
    MAX_AGE_MS,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_FUTURE_MS,
    TIME_LIMIT_MARGIN_MS,
)
from mwaa_logging.outcome import RejectedInfo
from mwaa_logging.spillformat import SpillReason

__all__ = [
    "batch_end",
    "cut_batches",
    "partition_by_age",
    "partition_rejected",
    "rejected_slices",
    "sort_events",
    "sort_key",
]

# Two stable sorts on int keys beat one sort on (timestamp, seq) tuples.
_by_timestamp = itemgetter(TIMESTAMP)
_by_seq = itemgetter(SEQ)
_size = itemgetter(SIZE)
#: Events summed before :func:`batch_end` estimates how many more fit; also the margin added to that estimate.
_FIRST_CHUNK = 256


def sort_key(event: LogEvent) -> tuple[int, int]:
    """The order PutLogEvents needs: by timestamp, ties kept in emission order."""
    return (event[TIMESTAMP], event[SEQ])


def sort_events(events: Iterable[LogEvent]) -> list[LogEvent]:
    """Events sorted by (timestamp, seq); stable, so exact duplicates keep their relative order."""
    ordered = sorted(events, key=_by_seq)
    ordered.sort(key=_by_timestamp)
    return ordered


def _check_limits(max_bytes: int, max_count: int, max_span_ms: int) -> None:
    if max_bytes < 1 or max_count < 1 or max_span_ms < 1:
        raise ValueError(
            f"batch limits must be positive: max_bytes={max_bytes}, max_count={max_count}, "
            f"max_span_ms={max_span_ms}"
        )


def _oversized(event: LogEvent, index: int, max_bytes: int) -> ValueError:
    return ValueError(
        f"event {index} (timestamp={event[TIMESTAMP]}, seq={event[SEQ]}) counts {event[SIZE]} bytes, "
        f"more than a batch may hold ({max_bytes}); split it first"
    )


def batch_end(
    events: Sequence[LogEvent],
    start: int,
    *,
    max_bytes: int = MAX_BATCH_BYTES,
    max_count: int = MAX_BATCH_EVENTS,
    max_span_ms: int = MAX_BATCH_SPAN_MS,
) -> int:
    """Exclusive end of the largest valid batch of sorted ``events`` that begins at ``start``.

    The batch holds at least one event; raises :class:`ValueError` if ``events[start]`` alone is
    larger than ``max_bytes`` or ``start`` is out of range.
    """
    _check_limits(max_bytes, max_count, max_span_ms)
    if not 0 <= start < len(events):
        raise ValueError(f"start {start} out of range for {len(events)} events")
    first = events[start]
    if first[SIZE] > max_bytes:
        raise _oversized(first, start, max_bytes)
    span_limit = first[TIMESTAMP] + max_span_ms  # a batch holds timestamps < span_limit
    stop = min(len(events), start + max_count)
    # In C: the first event at or past the span limit (events are sorted), then running byte totals.
    stop = bisect_left(events, span_limit, start, stop, key=_by_timestamp)
    # Totals are summed a chunk at a time, each chunk sized from the average so far, so a full 1 MiB batch of
    # ~230-byte lines sums ~4,700 sizes rather than all 10,000 that max_count allows.
    end, total, chunk = start, 0, _FIRST_CHUNK
    while end < stop:
        upto = min(stop, end + chunk)
        totals = list(accumulate(map(_size, events[end:upto]), initial=total))
        if totals[-1] > max_bytes:
            return end + bisect_right(totals, max_bytes) - 1  # totals[0] (what fits so far) is not an event
        end, total = upto, totals[-1]
        chunk = _FIRST_CHUNK + (max_bytes - total) * (end - start) // max(total, 1)
    return stop


def cut_batches(
    events: Iterable[LogEvent],
    *,
    max_bytes: int = MAX_BATCH_BYTES,
    max_count: int = MAX_BATCH_EVENTS,
    max_span_ms: int = MAX_BATCH_SPAN_MS,
) -> list[list[LogEvent]]:
    """Sort ``events`` by (timestamp, seq) and pack them greedily into valid batches.

    Same result as repeated :func:`batch_end`, computed with prefix sums and binary search so that
    100k events take a few milliseconds. Raises :class:`ValueError` for an event larger than
    ``max_bytes`` (split it first) or with a non-positive size.
    """
    _check_limits(max_bytes, max_count, max_span_ms)
    ordered = sort_events(events)
    if not ordered:
        return []
    sizes = list(map(_size, ordered))
    biggest, smallest = max(sizes), min(sizes)
    if biggest > max_bytes or smallest < 1:
        bad = sizes.index(biggest if biggest > max_bytes else smallest)
        if biggest > max_bytes:
            raise _oversized(ordered[bad], bad, max_bytes)
        raise ValueError(f"event {bad} has a non-positive size {sizes[bad]}")
    # ends[k] = bytes of ordered[:k]; strictly increasing because every size is >= 1.
    ends = list(accumulate(sizes, initial=0))
    timestamps = list(map(_by_timestamp, ordered))
    count = len(ordered)
    batches: list[list[LogEvent]] = []
    start = 0
    while start < count:
        end = min(
            count,
            start + max_count,
            bisect_right(ends, ends[start] + max_bytes, start + 1) - 1,
            bisect_left(timestamps, timestamps[start] + max_span_ms, start + 1),
        )
        batches.append(ordered[start:end])
        start = end
    return batches


def partition_by_age(
    events: Iterable[LogEvent],
    now_ms: int,
    *,
    max_age_ms: int = MAX_AGE_MS,
    max_future_ms: int = MAX_FUTURE_MS,
    margin_ms: int = TIME_LIMIT_MARGIN_MS,
) -> tuple[list[LogEvent], list[LogEvent], list[LogEvent]]:
    """Split ``events`` (order kept) into ``(sendable, too_old, too_new)`` as seen at ``now_ms``.

    Too new: timestamp > now + max_future - margin. Too old: timestamp < now - max_age + margin.
    The margin keeps us clear of CloudWatch's edges despite clock skew. Pass the group's retention
    as ``max_age_ms`` when it is shorter than 14 days.
    """
    oldest = now_ms - max_age_ms + margin_ms
    newest = now_ms + max_future_ms - margin_ms
    sendable: list[LogEvent] = []
    too_old: list[LogEvent] = []
    too_new: list[LogEvent] = []
    for event in events:
        if event[TIMESTAMP] < oldest:
            too_old.append(event)
        elif event[TIMESTAMP] > newest:
            too_new.append(event)
        else:
            sendable.append(event)
    return sendable, too_old, too_new


def rejected_slices(batch_len: int, info: RejectedInfo | None) -> list[tuple[int, int, str]]:
    """Index ranges ``(start, end, reason)`` of a sent batch that CloudWatch rejected.

    ``rejectedLogEventsInfo`` indexes the sorted batch: ``[0, too_old_end)`` too old,
    ``[0, expired_end)`` expired (older than the group's retention), ``[too_new_start, len)`` too
    new. Each event gets one reason: too old wins over expired, and both win over too new. The
    ranges returned are non-empty, disjoint, clamped to the batch and sorted; ``None`` gives none.
    """
    slices: list[tuple[int, int, str]] = []
    if info is None:
        return slices
    too_old_end = _clamp(info.too_old_end, 0, batch_len)
    expired_end = _clamp(info.expired_end, 0, batch_len)
    if too_old_end > 0:
        slices.append((0, too_old_end, SpillReason.REJECTED_TOO_OLD.value))
    if expired_end > too_old_end:
        slices.append((too_old_end, expired_end, SpillReason.REJECTED_EXPIRED.value))
    old_end = max(too_old_end, expired_end)
    if info.too_new_start is not None:
        too_new_start = max(_clamp(info.too_new_start, 0, batch_len), old_end)
        if too_new_start < batch_len:
            slices.append((too_new_start, batch_len, SpillReason.REJECTED_TOO_NEW.value))
    return slices


def partition_rejected(
    batch: Sequence[LogEvent], info: RejectedInfo | None
) -> tuple[list[LogEvent], list[tuple[LogEvent, str]]]:
    """Split a sent batch into ``(accepted, [(rejected_event, reason), ...])``, order kept."""
    accepted: list[LogEvent] = []
    rejected: list[tuple[LogEvent, str]] = []
    position = 0
    for start, end, reason in rejected_slices(len(batch), info):
        accepted.extend(batch[position:start])
        rejected.extend((event, reason) for event in batch[start:end])
        position = end
    accepted.extend(batch[position:])
    return accepted, rejected


def _clamp(index: int | None, low: int, high: int) -> int:
    if index is None:
        return low
    return min(max(index, low), high)
