"""Splitting is lossless, every chunk fits, and reassembly undoes it in any delivery order."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mwaa_logging.batching import cut_batches
from mwaa_logging.events import MESSAGE, SEQ, SIZE, TIMESTAMP, make_event
from mwaa_logging.limits import MAX_BATCH_BYTES, MAX_EVENT_MESSAGE_BYTES
from mwaa_logging.splitting import (
    CHUNK_PREFIX,
    Chunk,
    Reassembler,
    new_split_id,
    parse_chunk,
    reassemble,
    reassemble_messages,
    reassemble_pairs,
    split_event,
    split_message,
    split_oversized,
    truncate_message,
)

T0 = 1_700_000_000_000
Pair = tuple[int, str]


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# Any code point, lone surrogates included (what surrogateescape/surrogatepass decoding produces).
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)


def assert_valid_split(message: str, chunks: list[str], max_bytes: int) -> None:
    if utf8_len(message) <= max_bytes:
        assert chunks == [message]
        return
    parsed = [parse_chunk(chunk) for chunk in chunks]
    assert all(chunk is not None for chunk in parsed)
    ids = {chunk.split_id for chunk in parsed if chunk is not None}
    assert len(ids) == 1
    assert [(c.index, c.total) for c in parsed if c is not None] == [
        (i, len(chunks)) for i in range(1, len(chunks) + 1)
    ]
    payloads = [c.payload for c in parsed if c is not None]
    assert "".join(payloads) == message
    assert all(payloads), "empty chunk"
    assert all(utf8_len(chunk) <= max_bytes for chunk in chunks)
    # Every chunk but the last is as full as the next character allows.
    for chunk, following in zip(chunks, payloads[1:], strict=False):
        assert utf8_len(chunk) + utf8_len(following[0]) > max_bytes
    # All headers of one split have the same length.
    assert len({len(chunk) - len(payload) for chunk, payload in zip(chunks, payloads, strict=True)}) == 1


@settings(max_examples=400)
@given(message=any_text, max_bytes=st.integers(40, 120))
def test_split_then_reassemble_is_identity(message: str, max_bytes: int) -> None:
    chunks = split_message(message, max_bytes=max_bytes, split_id="c0ffee")
    assert_valid_split(message, chunks, max_bytes)
    assert list(reassemble_messages(chunks)) == [message]


@settings(max_examples=30, deadline=None)
@given(message=any_text, max_bytes=st.integers(44, 60))
def test_number_width_grows_with_the_chunk_count(message: str, max_bytes: int) -> None:
    long_message = message * 40 + "x" * 3000  # hundreds of chunks at these budgets
    chunks = split_message(long_message, max_bytes=max_bytes, split_id="ab")
    assert len(chunks) >= 100
    assert_valid_split(long_message, chunks, max_bytes)
    assert chunks[0].startswith(f"{CHUNK_PREFIX}ab {1:0{len(str(len(chunks)))}d}/{len(chunks)}] ")


def test_width_is_recounted_when_ten_chunks_need_a_second_digit() -> None:
    # 9 chunks at a 1-digit header would carry 9 * payload bytes; one byte more needs a 10th chunk,
    # whose 2-digit header shrinks every payload by 2 bytes.
    header = len("[mwaa-logging split ab 1/9] ")
    max_bytes = header + 20
    fits_nine = "x" * (9 * 20)
    assert len(split_message(fits_nine, max_bytes=max_bytes, split_id="ab")) == 9
    needs_ten = fits_nine + "y"
    chunks = split_message(needs_ten, max_bytes=max_bytes, split_id="ab")
    assert len(chunks) == 11  # 181 bytes at 18 payload bytes each
    assert chunks[0].startswith("[mwaa-logging split ab 01/11] ")
    assert_valid_split(needs_ten, chunks, max_bytes)


def test_exact_event_limit_is_not_split_and_one_byte_more_is() -> None:
    fits = "a" * MAX_EVENT_MESSAGE_BYTES
    assert split_message(fits, split_id="ab") == [fits]
    too_big = "é" * (MAX_EVENT_MESSAGE_BYTES // 2) + "a"  # 1,048,551 bytes
    assert utf8_len(too_big) == MAX_EVENT_MESSAGE_BYTES + 1
    chunks = split_message(too_big, split_id="ab")
    assert len(chunks) == 2
    assert_valid_split(too_big, chunks, MAX_EVENT_MESSAGE_BYTES)
    # The chunks go out as events that each fit a batch alone, and come back whole.
    events = split_event(make_event(T0, too_big, 3), split_id="ab")
    assert [event[SIZE] <= MAX_BATCH_BYTES for event in events] == [True, True]
    batches = cut_batches(events)
    assert [event[MESSAGE] for batch in batches for event in batch] == chunks
    assert list(reassemble_pairs((e[TIMESTAMP], e[MESSAGE]) for e in events)) == [(T0, too_big)]


def test_split_never_cuts_inside_a_character() -> None:
    # 4-byte emoji, 3-byte lone surrogates and 2-byte letters around every possible cut.
    message = ("\U0001f600\udcff\u00e9a" * 50)[:-1]
    for max_bytes in range(len("[mwaa-logging split ab 001/100] ") + 4, 80):
        chunks = split_message(message, max_bytes=max_bytes, split_id="ab")
        assert_valid_split(message, chunks, max_bytes)
        for chunk in chunks:
            chunk.encode("utf-8", "surrogatepass")  # well-formed


def test_bad_split_arguments() -> None:
    with pytest.raises(ValueError, match="no room"):
        split_message("x" * 100, max_bytes=30, split_id="ab")
    with pytest.raises(ValueError, match="split_id"):
        split_message("x" * 100, max_bytes=60, split_id="not hex!")


def test_new_split_id_is_random_hex() -> None:
    ids = {new_split_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{16}", split_id) for split_id in ids)


def test_parse_chunk_refuses_lookalikes() -> None:
    assert parse_chunk("[mwaa-logging split ab 2/3] x") == Chunk("ab", 2, 3, "x")
    assert parse_chunk("[mwaa-logging split ab 02/03] ") == Chunk("ab", 2, 3, "")
    lookalikes = [
        "plain",
        "[mwaa-logging split ab 4/3] x",
        "[mwaa-logging split ab 0/3] x",
        "[mwaa-logging split a b 1/3] x",
        "[mwaa-logging split ab 1/3]x",
        " [mwaa-logging split ab 1/2] x",
        "[mwaa-logging split ab \u0661/\u0662] x",  # Arabic-Indic digits
    ]
    for message in lookalikes:
        assert parse_chunk(message) is None, message


def test_split_oversized_keeps_order_and_small_events() -> None:
    small = make_event(T0, "small", 1)
    big = make_event(T0, "b" * 500, 2)
    result = split_oversized([small, big, small], max_bytes=200)
    assert result[0] == small and result[-1] == small
    middle = result[1:-1]
    assert len(middle) == 4  # 500 bytes in payloads of 200 - 43 header bytes
    assert all(e[TIMESTAMP] == T0 and e[SEQ] == 2 and e[SIZE] <= 200 + 26 for e in middle)
    assert list(reassemble_messages(e[MESSAGE] for e in result)) == ["small", "b" * 500, "small"]
    assert split_event(small) == [small]


# --- reassembly of interleaved, shuffled, duplicated streams -----------------------------------


@st.composite
def delivered_streams(draw: st.DrawFn) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(original lines, what a reader sees): splits interleaved, chunks moved, chunks repeated."""
    originals = draw(st.lists(st.tuples(st.integers(0, 5), any_text.filter(bool)), max_size=8))
    originals = [(T0 + offset, message) for offset, message in sorted(originals, key=lambda p: p[0])]
    stream: list[tuple[int, str]] = []
    for timestamp, message in originals:
        for chunk in split_message(message, max_bytes=50, split_id=new_split_id()):
            stream.append((timestamp, chunk))
    rnd = draw(st.randoms(use_true_random=False))
    # Shuffle within equal timestamps (a merge of CloudWatch and a spill file may do that) ...
    for timestamp in {t for t, _ in stream}:
        positions = [i for i, (t, _) in enumerate(stream) if t == timestamp]
        moved = [stream[i] for i in positions]
        rnd.shuffle(moved)
        for i, pair in zip(positions, moved, strict=True):
            stream[i] = pair
    # ... and deliver some chunks again, anywhere later (at-least-once).
    for _ in range(draw(st.integers(0, 4))):
        if stream:
            pair = stream[rnd.randrange(len(stream))]
            if parse_chunk(pair[1]) is not None:
                stream.insert(rnd.randrange(stream.index(pair) + 1, len(stream) + 1), pair)
    return originals, stream


@settings(max_examples=300)
@given(case=delivered_streams())
def test_reassembly_restores_every_message_once(case: tuple[list[Pair], list[Pair]]) -> None:
    originals, stream = case
    result = list(reassemble_pairs(stream))
    # Same messages, once each; ordinary lines keep their relative order.
    assert sorted(result) == sorted(originals)
    plain = [pair for pair in stream if parse_chunk(pair[1]) is None]
    assert [pair for pair in result if pair in plain] == plain
    assert [t for t, _ in result] == sorted(t for t, _ in result)


def test_reassembled_message_takes_the_place_of_its_first_chunk() -> None:
    first, second = split_message("x" * 64, max_bytes=60, split_id="aa")
    stream = [(1, "before"), (2, second), (3, "between"), (4, first), (5, "after")]
    assert list(reassemble_pairs(stream)) == [(1, "before"), (2, "x" * 64), (3, "between"), (5, "after")]


def test_incomplete_split_is_released_with_markers_at_the_end() -> None:
    chunks = split_message("y" * 200, max_bytes=50, split_id="bb")
    stream = ["a", chunks[2], "b", chunks[0], chunks[0], "c"]
    assert list(reassemble_messages(stream)) == ["a", chunks[0], chunks[2], "b", "c"]


def test_duplicate_chunks_after_completion_are_dropped() -> None:
    chunks = split_message("z" * 120, max_bytes=50, split_id="cc")
    stream = [*chunks, "line", *chunks, chunks[1]]
    assert list(reassemble_messages(stream)) == ["z" * 120, "line"]


def test_held_lines_are_released_when_a_split_never_completes() -> None:
    chunks = split_message("w" * 120, max_bytes=50, split_id="dd")
    reassembler: Reassembler[str] = Reassembler(lambda m: m, lambda _, whole: whole, max_held=3)
    assert reassembler.feed(chunks[0]) == []
    assert reassembler.feed("1") == []
    assert reassembler.feed("2") == []
    assert reassembler.feed("3") == [chunks[0], "1", "2", "3"]
    assert reassembler.feed("4") == ["4"]
    # The late chunks start over and are released as they are at the end: nothing is lost.
    assert reassembler.feed(chunks[1]) == []
    assert reassembler.finish() == [chunks[1]]


def test_reassemble_works_on_any_record_type() -> None:
    events = split_event(make_event(T0, "v" * 300, 9), max_bytes=100)
    lines = [make_event(T0 - 1, "early", 8), *events, make_event(T0 + 1, "late", 10)]
    result = list(reassemble(lines, lambda e: e[MESSAGE], lambda e, whole: (e[TIMESTAMP], whole, e[SIZE], e[SEQ])))
    assert [(e[TIMESTAMP], e[MESSAGE], e[SEQ]) for e in result] == [
        (T0 - 1, "early", 8), (T0, "v" * 300, 9), (T0 + 1, "late", 10)
    ]


def test_a_chunk_with_a_different_total_passes_through() -> None:
    stream = [
        "[mwaa-logging split ee 1/2] a",
        "[mwaa-logging split ee 1/3] b",
        "[mwaa-logging split ee 2/2] c",
    ]
    assert list(reassemble_messages(stream)) == ["ac", "[mwaa-logging split ee 1/3] b"]


# --- truncation (opt-in policy) -----------------------------------------------------------------


@settings(max_examples=300)
@given(message=any_text, max_bytes=st.integers(1, 200))
def test_truncate_fits_and_keeps_a_prefix(message: str, max_bytes: int) -> None:
    result = truncate_message(message, max_bytes)
    assert utf8_len(result) <= max_bytes
    if utf8_len(message) <= max_bytes:
        assert result == message
    else:
        marker = f" [mwaa-logging truncated from {utf8_len(message)} bytes]"
        if utf8_len(marker) > max_bytes:
            marker = ""
        assert result.endswith(marker)
        kept = result[: len(result) - len(marker)]
        assert message.startswith(kept)
        assert utf8_len(kept) + utf8_len(message[len(kept)]) > max_bytes - utf8_len(marker)


def test_truncate_with_custom_marker_and_tiny_budget() -> None:
    assert truncate_message("é" * 10, 5, marker="…") == "é…"
    # A budget too small for the marker still truncates, without it.
    assert truncate_message("x" * 100, 10) == "x" * 10
    assert truncate_message("\U0001f600" * 3, 5) == "\U0001f600"
    with pytest.raises(ValueError, match="positive"):
        truncate_message("x", 0)


def test_ordinary_lines_pass_through_unchanged() -> None:
    lines = [f"line {i}" for i in range(100_000)]
    random.Random(0).shuffle(lines)
    assert list(reassemble_messages(lines)) == lines
