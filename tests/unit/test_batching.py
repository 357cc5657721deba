"""Batching obeys every PutLogEvents rule, loses nothing and keeps (timestamp, seq) order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mwaa_logging.batching import (
    batch_end,
    cut_batches,
    partition_by_age,
    partition_rejected,
    rejected_slices,
    sort_events,
    sort_key,
)
from mwaa_logging.events import MESSAGE, SEQ, SIZE, TIMESTAMP, LogEvent, make_event
from mwaa_logging.limits import (
    EVENT_OVERHEAD_BYTES,
    MAX_AGE_MS,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_EVENT_MESSAGE_BYTES,
    MAX_FUTURE_MS,
    TIME_LIMIT_MARGIN_MS,
)
from mwaa_logging.outcome import RejectedInfo
from mwaa_logging.spillformat import SpillReason

T0 = 1_700_000_000_000
DAY_MS = 24 * 3600 * 1000
TOO_OLD = SpillReason.REJECTED_TOO_OLD.value
EXPIRED = SpillReason.REJECTED_EXPIRED.value
TOO_NEW = SpillReason.REJECTED_TOO_NEW.value


def assert_valid_batches(
    events: Sequence[LogEvent],
    batches: list[list[LogEvent]],
    *,
    max_bytes: int = MAX_BATCH_BYTES,
    max_count: int = MAX_BATCH_EVENTS,
    max_span_ms: int = MAX_BATCH_SPAN_MS,
) -> None:
    for batch in batches:
        assert batch, "empty batch"
        assert sum(event[SIZE] for event in batch) <= max_bytes
        assert len(batch) <= max_count
        assert batch[-1][TIMESTAMP] - batch[0][TIMESTAMP] < max_span_ms
    flat = [event for batch in batches for event in batch]
    # Every event exactly once (by identity, so equal duplicates count separately) ...
    assert Counter(map(id, flat)) == Counter(map(id, events))
    # ... in (timestamp, seq) order, equal keys in input order (stable).
    assert [id(e) for e in flat] == [id(e) for e in sorted(events, key=sort_key)]
    # Greedy: no batch could have taken the first event of the next one.
    for batch, following in pairwise(batches):
        extra = following[0]
        assert (
            sum(event[SIZE] for event in batch) + extra[SIZE] > max_bytes
            or len(batch) + 1 > max_count
            or extra[TIMESTAMP] - batch[0][TIMESTAMP] >= max_span_ms
        )


def cut_with_batch_end(events: Sequence[LogEvent], **limits: int) -> list[list[LogEvent]]:
    ordered = sort_events(events)
    batches = []
    start = 0
    while start < len(ordered):
        end = batch_end(ordered, start, **limits)
        assert end > start
        batches.append(ordered[start:end])
        start = end
    return batches


@st.composite
def sized_events(draw: st.DrawFn, max_size: int, max_span: int, max_len: int = 60) -> list[LogEvent]:
    """Events with synthetic sizes (batching only reads ``size``), clustered timestamps, duplicates."""
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, max_span), st.integers(1, max_size), st.integers(0, 30)),
            max_size=max_len,
        )
    )
    events = [(T0 + offset, "m", size, seq) for offset, size, seq in raw]
    if events:
        repeats = draw(st.lists(st.sampled_from(events), max_size=5))
        events.extend(repeats)  # the very same objects again: at-least-once requeues
        events.extend((*event,) for event in repeats)  # equal copies (new tuples: tuple(t) would be t)
    return events


small_limits = st.fixed_dictionaries(
    {
        "max_bytes": st.integers(30, 400),
        "max_count": st.integers(1, 12),
        "max_span_ms": st.integers(1, 50),
    }
)


@settings(max_examples=300)
@given(data=st.data(), limits=small_limits)
def test_cut_batches_obeys_every_rule_with_tight_limits(data: st.DataObject, limits: dict[str, int]) -> None:
    events = data.draw(sized_events(max_size=limits["max_bytes"], max_span=200))
    batches = cut_batches(events, **limits)
    assert_valid_batches(events, batches, **limits)
    assert batches == cut_with_batch_end(events, **limits)


@settings(max_examples=100, deadline=None)
@given(events=sized_events(max_size=MAX_BATCH_BYTES, max_span=3 * DAY_MS, max_len=200))
def test_cut_batches_obeys_every_rule_with_real_limits(events: list[LogEvent]) -> None:
    batches = cut_batches(events)
    assert_valid_batches(events, batches)
    assert batches == cut_with_batch_end(events)


def batch_end_reference(sizes: Sequence[int], start: int, max_bytes: int, max_count: int) -> int:
    """The longest run from ``start`` within both limits, one event at a time."""
    end, total = start, 0
    while end < len(sizes) and end - start < max_count and total + sizes[end] <= max_bytes:
        total += sizes[end]
        end += 1
    return end


@settings(max_examples=200, deadline=None)
@given(
    # many small events, then larger ones: batch_end's estimate of how many fit overshoots and undershoots
    small=st.lists(st.integers(1, 30), min_size=1, max_size=1_200),
    large=st.lists(st.integers(1, 3_000), max_size=400),
    max_bytes=st.integers(3_000, 60_000),
    max_count=st.integers(1, 2_000),
    data=st.data(),
)
def test_batch_end_takes_exactly_what_fits_in_long_runs(
    small: list[int], large: list[int], max_bytes: int, max_count: int, data: st.DataObject
) -> None:
    sizes = small + large
    start = data.draw(st.integers(0, len(sizes) - 1))
    events = [(T0, "m", size, seq) for seq, size in enumerate(sizes)]
    assert batch_end(events, start, max_bytes=max_bytes, max_count=max_count) == batch_end_reference(
        sizes, start, max_bytes, max_count
    )


messages = st.text(
    alphabet=st.characters(codec="utf-8") | st.characters(categories=["Cs"]), min_size=1, max_size=40
)


@settings(max_examples=200)
@given(
    items=st.lists(st.tuples(st.integers(0, 3 * DAY_MS), messages), max_size=40),
    max_bytes=st.integers(200, 600),
)
def test_real_messages_with_multibyte_and_surrogates(items: list[tuple[int, str]], max_bytes: int) -> None:
    events = [make_event(T0 + offset, message, seq) for seq, (offset, message) in enumerate(items)]
    for event in events:
        assert event[SIZE] == len(event[MESSAGE].encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD_BYTES
    limits = {"max_bytes": max_bytes, "max_count": 5, "max_span_ms": DAY_MS}
    batches = cut_batches(reversed(events), **limits)
    assert_valid_batches(events, batches, **limits)


def test_full_batch_of_exactly_max_bytes() -> None:
    per_event = MAX_BATCH_BYTES // 4
    events = [make_event(T0, "a" * (per_event - EVENT_OVERHEAD_BYTES), seq) for seq in range(5)]
    batches = cut_batches(events)
    assert [len(batch) for batch in batches] == [4, 1]
    assert sum(event[SIZE] for event in batches[0]) == MAX_BATCH_BYTES


def test_one_byte_over_max_bytes_starts_a_new_batch() -> None:
    events = [(T0, "m", MAX_BATCH_BYTES - 100, 0), (T0, "m", 101, 1)]
    assert [len(batch) for batch in cut_batches(events)] == [1, 1]
    events[1] = (T0, "m", 100, 1)
    assert [len(batch) for batch in cut_batches(events)] == [2]


def test_ten_thousand_events_per_batch() -> None:
    events = [make_event(T0, "x", seq) for seq in range(2 * MAX_BATCH_EVENTS + 1)]
    assert [len(batch) for batch in cut_batches(events)] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 1]


def test_span_must_stay_strictly_below_24_hours() -> None:
    events = [make_event(T0, "a", 0), make_event(T0 + DAY_MS - 1, "b", 1), make_event(T0 + DAY_MS, "c", 2)]
    assert [[e[MESSAGE] for e in batch] for batch in cut_batches(events)] == [["a", "b"], ["c"]]


def test_largest_single_message_fits_alone_and_one_more_byte_does_not() -> None:
    largest = make_event(T0, "a" * MAX_EVENT_MESSAGE_BYTES, 0)
    assert largest[SIZE] == MAX_BATCH_BYTES
    assert cut_batches([largest]) == [[largest]]
    too_big = make_event(T0, "é" * (MAX_EVENT_MESSAGE_BYTES // 2) + "a", 7)
    assert too_big[SIZE] == MAX_BATCH_BYTES + 1
    with pytest.raises(ValueError, match=r"seq=7.*1048577 bytes"):
        cut_batches([largest, too_big])
    with pytest.raises(ValueError, match="seq=7"):
        batch_end([too_big], 0)
    # batch_end stops before an oversized event that is not the first.
    assert batch_end([make_event(T0, "x", 1), too_big], 0) == 1


def test_sort_is_by_timestamp_then_seq_and_stable() -> None:
    a, b, c = (5, "a", 27, 2), (5, "b", 27, 1), (4, "c", 27, 9)
    duplicate = (*b,)  # equal to b, another object (two equal literals may be one constant)
    ordered = sort_events([a, b, duplicate, c])
    assert [id(e) for e in ordered] == [id(c), id(b), id(duplicate), id(a)]
    assert sort_key(a) == (5, 2)


def test_bad_arguments_are_refused() -> None:
    assert cut_batches([]) == []
    with pytest.raises(ValueError, match="out of range"):
        batch_end([], 0)
    with pytest.raises(ValueError, match="positive"):
        cut_batches([make_event(T0, "x", 0)], max_count=0)
    with pytest.raises(ValueError, match="non-positive size"):
        cut_batches([(T0, "", 0, 0)])


def test_partition_by_age_edges_include_the_margin() -> None:
    now = T0
    oldest_ok = now - MAX_AGE_MS + TIME_LIMIT_MARGIN_MS
    newest_ok = now + MAX_FUTURE_MS - TIME_LIMIT_MARGIN_MS
    events = [
        make_event(newest_ok + 1, "new", 0),
        make_event(oldest_ok - 1, "old", 1),
        make_event(oldest_ok, "oldest ok", 2),
        make_event(newest_ok, "newest ok", 3),
        make_event(now, "now", 4),
    ]
    sendable, too_old, too_new = partition_by_age(events, now)
    assert [e[MESSAGE] for e in sendable] == ["oldest ok", "newest ok", "now"]
    assert [e[MESSAGE] for e in too_old] == ["old"]
    assert [e[MESSAGE] for e in too_new] == ["new"]
    # A shorter retention is passed as max_age_ms.
    _, too_old, _ = partition_by_age(events, now, max_age_ms=DAY_MS, margin_ms=0)
    assert {e[MESSAGE] for e in too_old} == {"old", "oldest ok"}


def expected_reason(index: int, info: RejectedInfo) -> str | None:
    """The reference model: one reason per index; too old > expired > too new."""
    if info.too_old_end is not None and index < info.too_old_end:
        return TOO_OLD
    if info.expired_end is not None and index < info.expired_end:
        return EXPIRED
    if info.too_new_start is not None and index >= info.too_new_start:
        return TOO_NEW
    return None


optional_index = st.none() | st.integers(-2, 14)


@settings(max_examples=400)
@given(
    batch_len=st.integers(0, 12),
    info=st.builds(RejectedInfo, too_new_start=optional_index, too_old_end=optional_index,
                   expired_end=optional_index),
)
def test_rejected_slices_match_the_reference_model(batch_len: int, info: RejectedInfo) -> None:
    slices = rejected_slices(batch_len, info)
    reasons: dict[int, str] = {}
    position = 0
    for start, end, reason in slices:
        assert position <= start < end <= batch_len  # non-empty, sorted, disjoint, in range
        position = end
        reasons.update(dict.fromkeys(range(start, end), reason))
    expected = {i: expected_reason(i, info) for i in range(batch_len)}
    assert reasons == {i: reason for i, reason in expected.items() if reason is not None}
    batch = [make_event(T0 + i, f"m{i}", i) for i in range(batch_len)]
    accepted, rejected = partition_rejected(batch, info)
    assert [e[SEQ] for e in accepted] == [i for i in range(batch_len) if i not in reasons]
    assert [(e[SEQ], reason) for e, reason in rejected] == sorted(reasons.items())


def test_rejected_slices_typical_response() -> None:
    info = RejectedInfo(too_old_end=2, expired_end=3, too_new_start=8)
    assert rejected_slices(10, info) == [(0, 2, TOO_OLD), (2, 3, EXPIRED), (8, 10, TOO_NEW)]
    assert rejected_slices(10, RejectedInfo(too_old_end=4, expired_end=3)) == [(0, 4, TOO_OLD)]
    assert rejected_slices(10, RejectedInfo()) == []
    assert rejected_slices(10, None) == []
    assert partition_rejected([make_event(T0, "x", 0)], None) == ([make_event(T0, "x", 0)], [])
