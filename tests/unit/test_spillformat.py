"""Spill records: grouping per stream, and the gzip JSON Lines format round trip."""

from __future__ import annotations

from mwaa_logging.spillformat import SpillRecord, decode_records, encode_records, records_by_stream


def record(stream: str, timestamp: int, message: str) -> SpillRecord:
    return SpillRecord("g", stream, timestamp, message, "max_latency", "ThrottlingException")


def test_records_are_grouped_per_stream_in_time_order_ties_kept_as_given() -> None:
    given = [record("b", 5, "b5"), record("a", 9, "a9"), record("b", 1, "b1"), record("a", 9, "a9 again"),
             record("a", 3, "a3")]
    grouped = records_by_stream(given)
    assert list(grouped) == [("g", "b"), ("g", "a")]  # streams in the order first seen
    assert [r.message for r in grouped[("g", "b")]] == ["b1", "b5"]
    assert [r.message for r in grouped[("g", "a")]] == ["a3", "a9", "a9 again"]


def test_encoded_records_decode_to_the_same_records() -> None:
    given = [record("s", 1, "plain"), record("s", 2, 'quotes " and \\ and ünïcödé'), record("s", 3, ""),
             SpillRecord("g", "s", 4, "stamped", "memory_cap", spilled_at=1_700_000_300_123)]
    assert list(decode_records(encode_records(given))) == given


def test_a_line_written_before_spilled_at_existed_reads_without_it() -> None:
    old = b'{"logGroupName":"g","logStreamName":"s","timestamp":1,"message":"m","reason":"max_latency"}\n'
    assert list(decode_records(old)) == [SpillRecord("g", "s", 1, "m", "max_latency")]
