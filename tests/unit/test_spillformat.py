"""Spill records: grouping per stream, and the gzip JSON Lines format round trip."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mwaa_logging.spill.layout import MAX_SEGMENT, in_stream_prefix, object_name, quote_name, stream_prefix
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


def test_what_json_cannot_hold_is_stored_as_close_as_it_can_be_with_the_reason() -> None:
    odd = [SpillRecord("g", "s\udc80", 2**70, "bad \ud800 text", "too_new", "x"),
           SpillRecord("g", "s", -(2**70), "ok", "too_old")]
    decoded = list(decode_records(encode_records(odd)))
    assert [(r.stream, r.timestamp, r.message, r.detail) for r in decoded] == [
        ("s\ufffd", 2**63 - 1, "bad \ufffd text", f"x; timestamp {2**70} out of range"),
        ("s", -(2**63), "ok", f"timestamp {-(2**70)} out of range")]


@pytest.mark.parametrize("name", ["a" * 512, "/" * 512, "é" * 300, "dag_id=x/" * 50])
def test_long_names_make_one_short_unique_path_segment(name: str) -> None:
    quoted = quote_name(name)
    assert "/" not in quoted and len(quoted.encode()) <= MAX_SEGMENT
    assert quoted != quote_name(name[:-1] + "~")  # same beginning, other name: another segment
    assert stream_prefix("g", name) == f"g/{quoted}/"


def test_short_names_keep_their_plain_quoted_form() -> None:
    assert quote_name("dag_id=d/run_id=r") == "dag_id%3Dd%2Frun_id%3Dr"
    assert quote_name("") == "%00"


@pytest.mark.parametrize("timestamp", [2**70, -(2**70), -1, 10**17])
def test_any_timestamp_names_an_object(timestamp: int) -> None:
    assert object_name("g", "s", timestamp).startswith("g/s/")


def test_bounded_gunzip_reads_every_member_as_gzip_does_and_stops_at_its_bound() -> None:
    import gzip

    import pytest

    from mwaa_logging.spillformat import gunzip_at_most

    members = gzip.compress(b"first\n" * 1000) + gzip.compress(b"second\n") + b"\0\0"  # appended exports, padding
    assert gunzip_at_most(members, 6007) == gzip.decompress(members)
    with pytest.raises(ValueError, match="expands beyond 6006 bytes"):
        gunzip_at_most(members, 6006)
    with pytest.raises(EOFError):
        gunzip_at_most(members[:30], 10**6)


def many_records(count: int) -> list[SpillRecord]:
    return [SpillRecord("g", "s", 1_700_000_000_000 + i, f"line {i} " + "x" * (i % 300), "max_latency",
                        spilled_at=1_700_000_300_000) for i in range(count)]


def test_data_cut_anywhere_gives_every_complete_record_before_the_cut_and_never_part_of_one() -> None:
    """A spill file or object cut short (a writer killed, a copy interrupted) was refused whole (EOFError)."""
    from mwaa_logging.spillformat import Decoded, salvage_records

    records = many_records(300)
    data = encode_records(records)
    for cut in range(1, len(data), 7):
        decoded = salvage_records(data[:cut])
        assert decoded.records == records[:len(decoded.records)], cut
        assert decoded.damage is not None and f"salvaged its first {len(decoded.records)} records" in decoded.damage
    assert salvage_records(data[:-8]).records == records  # only the trailer is missing: every record is whole
    assert salvage_records(data) == Decoded(records)


def test_a_tail_of_zero_bytes_never_written_is_an_end_not_data() -> None:
    """A file whose last blocks never reached the disk (a crash) or a preallocated copy cut short ends in zeros:
    zlib decodes them into garbage, here records that parse and read wrong ("line 99xxx" for "line 992 xxx")."""
    from mwaa_logging.spillformat import salvage_records

    records = many_records(2000)
    data = encode_records(records)
    for fraction in (0.3, 0.5, 0.8):
        kept = int(len(data) * fraction)
        decoded = salvage_records(data[:kept] + b"\0" * (len(data) - kept))
        assert decoded.records == records[:len(decoded.records)] == salvage_records(data[:kept]).records


def test_corrupt_gzip_data_is_refused_whole_and_said() -> None:
    """What zlib makes of the bytes before it notices a corruption cannot be told from records."""
    data = bytearray(encode_records(many_records(100)))
    data[-6] ^= 0xFF  # in the CRC-32 of the trailer: every byte before it reads, and none of it is sure
    with pytest.raises(ValueError, match=r"its gzip data is corrupt .*incorrect data check"):
        list(decode_records(bytes(data)))


#: Group and stream names have a character at least (validate_group_name, sanitize): the '' quote_name writes as %00
#: for safety is never a name, and '\x00' quotes to %00 too.
NAMES = st.text(min_size=1, max_size=300)


@settings(max_examples=300, deadline=None)
@given(group=NAMES, stream=NAMES, other=st.tuples(NAMES, NAMES), root=st.sampled_from(["", "spill/", "/var/s/"]))
def test_an_object_may_hold_exactly_the_stream_its_prefix_names(
    group: str, stream: str, other: tuple[str, str], root: str
) -> None:
    directory = (root + stream_prefix(group, stream)).rstrip("/")
    assert in_stream_prefix(directory, group, stream)
    if other != (group, stream):
        assert not in_stream_prefix(directory, *other)


def test_a_prefix_quoted_otherwise_still_names_its_stream_and_a_bare_directory_names_none() -> None:
    assert in_stream_prefix("spill/airflow-Task/dag_id=d%2Frun", "airflow-Task", "dag_id=d/run")  # '=' unquoted
    assert not in_stream_prefix("spill/g/other", "g", "s")
    assert not in_stream_prefix("s", "g", "s")
    assert not in_stream_prefix("", "", "")


def test_a_line_that_is_not_a_spill_record_is_said_and_the_others_are_read() -> None:
    """One bad line in intact gzip data refused the whole object: none of its valid lines were shown."""
    from mwaa_logging.spillformat import salvage_records

    good = [SpillRecord("g", "s", 1, "first", "max_latency"), SpillRecord("g", "s", 3, "third", "max_latency")]
    lines = gzip_lines(good)
    data = gzip.compress(lines[0] + b'{"not": "a record"}\n' + b"\n" + b"[1, 2]\n" + lines[1])
    decoded = salvage_records(data)
    assert decoded.records == good and decoded.damage is None
    assert decoded.bad_lines == ("line 2 is not a spill record: no 'timestamp' field",
                                 "line 4 is not a spill record: expected a JSON object, got list")
    with pytest.raises(ValueError, match=r"^line 2 is not a spill record: no 'timestamp' field$"):
        list(decode_records(data))  # the strict reader still refuses it


def test_a_line_that_is_not_a_spill_record_in_data_cut_short_is_said_and_the_records_after_it_are_read() -> None:
    """Data cut short took its first line that was not a record for the cut: a bad line 101 of 301 dropped the 199
    complete records after it (and the message called that complete line the incomplete one), so replay marked the
    object with 100 of its records put."""
    from mwaa_logging.spillformat import salvage_records

    records = many_records(300)
    lines = gzip_lines(records)
    data = gzip.compress(b"".join(lines[:100]) + b'{"note": "not a record"}\n' + b"".join(lines[100:]))
    bad = ("line 101 is not a spill record: no 'timestamp' field",)
    assert salvage_records(data[:-8]).records == records  # only the trailer is missing
    assert salvage_records(data[:-8]).bad_lines == bad
    for cut in range(len(data) // 2, len(data) - 8, 11):  # cuts after the bad line
        decoded = salvage_records(data[:cut])
        assert decoded.records == records[:len(decoded.records)], cut
        assert len(decoded.records) > 100 and decoded.bad_lines == bad, cut
        assert decoded.damage is not None and f"salvaged its first {len(decoded.records)} records" in decoded.damage


def test_only_the_line_cut_by_the_end_of_damaged_data_is_lost_and_said_so() -> None:
    from mwaa_logging.spillformat import salvage_records

    lines = gzip_lines(many_records(3))
    stored = gzip.compress(lines[0] + b"\n" + b'"no record"\n' + lines[1] + lines[2], compresslevel=0)
    decoded = salvage_records(stored[:-8 - 10])  # the trailer and the last 10 bytes of the last line are missing
    assert decoded.records == many_records(2)
    assert decoded.bad_lines == ("line 3 is not a spill record: expected a JSON object, got str",)
    assert decoded.damage == (f"its gzip data ends early (truncated); salvaged its first 2 records (complete), lost "
                              f"the line after them ({len(lines[2]) - 10} bytes, incomplete) and whatever followed it")


def gzip_lines(records: list[SpillRecord]) -> list[bytes]:
    return [line + b"\n" for line in gzip.decompress(encode_records(records)).splitlines()]
