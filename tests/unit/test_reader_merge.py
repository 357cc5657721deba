"""The reader's pure parts: merge order, duplicate rules, reassembly across sources, GetLogEvents paging."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st

from mwaa_logging.reader import (
    CLOUDWATCH,
    CONNECT_RETRIES,
    ReadEvent,
    cloudwatch_events,
    drop_duplicates,
    event_order,
    merge_sources,
    reassemble_events,
    spilled_events,
)
from mwaa_logging.spillformat import Decoded, SpillRecord
from mwaa_logging.splitting import split_message

S3 = "s3://b/p/g/s/obj.jsonl.gz"


S3_AGAIN = "s3://b/p/g/s/other.jsonl.gz"


def cw(ts: int, message: str, ingestion_time: int | None = None) -> ReadEvent:
    return ReadEvent(ts, message, CLOUDWATCH, ingestion_time=ingestion_time)


def sp(ts: int, message: str, where: str = S3, spilled_at: int | None = None) -> ReadEvent:
    return ReadEvent(ts, message, where, reason="max_latency", spilled_at=spilled_at)


def pairs(events: Any) -> list[tuple[int, str, str]]:
    return [(e.timestamp, e.message, e.source) for e in events]


def test_merge_orders_by_timestamp_and_puts_cloudwatch_first_on_ties() -> None:
    merged = merge_sources([cw(1, "a"), cw(3, "c"), cw(3, "d")], [sp(2, "b"), sp(3, "x"), sp(4, "e")])
    assert pairs(merged) == [(1, "a", CLOUDWATCH), (2, "b", S3), (3, "c", CLOUDWATCH), (3, "d", CLOUDWATCH),
                             (3, "x", S3), (4, "e", S3)]


def test_within_a_millisecond_spilled_lines_sit_between_those_delivered_before_and_after_the_spill() -> None:
    """A memory-cap spill during an outage takes the oldest lines of a millisecond; the rest are delivered
    after it, the lines delivered before the outage stay first (ingestion time against spill time)."""
    before = ReadEvent(7, "line 0", CLOUDWATCH, ingestion_time=1_000)
    after = [ReadEvent(7, f"line {i}", CLOUDWATCH, ingestion_time=9_000) for i in (3, 4)]
    spilled = [ReadEvent(7, f"line {i}", S3, reason="memory_cap", spilled_at=5_000) for i in (1, 2)]
    merged = [e.message for e in merge_sources([before, *after, cw(8, "next")], spilled)]
    assert merged == ["line 0", "line 1", "line 2", "line 3", "line 4", "next"]


def test_spill_objects_of_one_millisecond_merge_by_spill_time() -> None:
    spill = FakeSpill({
        "late": [SpillRecord("g", "s", 5, f"late {i}", "close_deadline", spilled_at=9) for i in range(2)],
        "early": [SpillRecord("g", "s", 5, f"early {i}", "memory_cap", spilled_at=3) for i in range(2)],
    })
    found = [(e.message, e.spilled_at) for e in spilled_events([spill], "g", "s")]  # type: ignore[list-item]
    assert found == [("early 0", 3), ("early 1", 3), ("late 0", 9), ("late 1", 9)]


def test_exact_dedupe_drops_whole_deliveries_repeated() -> None:
    """An ambiguous retry stores a batch again (another ingestion time), a batch both delivered and spilled, a
    spill stored twice in two objects: one copy each."""
    events = [cw(1, "a", 10), cw(1, "b", 10), cw(1, "a", 25), cw(1, "b", 25), sp(1, "a"),
              cw(2, "a", 10), sp(2, "a"), sp(3, "z"), sp(3, "z", S3_AGAIN)]
    assert pairs(drop_duplicates(events, "exact")) == [
        (1, "a", CLOUDWATCH), (1, "b", CLOUDWATCH), (2, "a", CLOUDWATCH), (3, "z", S3)]


TABLE = ["+---+", "| a |", "+---+", "| b |", "+---+", "retry", "retry"]


def test_exact_dedupe_keeps_lines_logged_twice_in_one_millisecond() -> None:
    """An ASCII table logged in one millisecond repeats its border: it comes back whole, also when its batch was
    stored twice, or spilled into two objects."""
    sent = [cw(1, line, 10) for line in TABLE]
    retried = [cw(1, line, 30) for line in TABLE]
    assert [e.message for e in drop_duplicates([*sent, cw(2, "next", 10)], "exact")] == [*TABLE, "next"]
    assert pairs(drop_duplicates([*sent, *retried], "exact")) == pairs(sent)
    spilled = [sp(1, line) for line in TABLE] + [sp(1, line, S3_AGAIN) for line in TABLE]
    assert pairs(drop_duplicates(spilled, "exact")) == pairs(spilled[:7])
    assert pairs(drop_duplicates(merge_sources(sent, spilled), "exact")) == pairs(sent)  # CloudWatch's copies


def test_exact_dedupe_prefers_cloudwatch_copies_and_keeps_the_merged_order() -> None:
    """A line both spilled and delivered (spilled first: a replay racing the read) is kept as CloudWatch's copy;
    a line only some delivery holds twice is made up from the spilled copies."""
    events = [sp(1, "x", spilled_at=5), cw(1, "y", 10), cw(1, "x", 20),
              sp(1, "z", spilled_at=25), sp(1, "z", spilled_at=25), cw(1, "z", 30)]
    assert pairs(drop_duplicates(merge_sources(events), "exact")) == [
        (1, "y", CLOUDWATCH), (1, "x", CLOUDWATCH), (1, "z", S3), (1, "z", CLOUDWATCH)]


def test_across_sources_keeps_genuine_repeats_and_drops_spilled_copies() -> None:
    # CloudWatch holds "+---+" twice at t=1 (a table border logged twice): both stay.
    # The spill holds one copy of a delivered line, and one line CloudWatch never got.
    border = "+---+"
    events = [cw(1, border), cw(1, border), sp(1, border), sp(1, "lost"), cw(2, "x"), sp(2, "x"), sp(2, "x")]
    assert pairs(drop_duplicates(events, "across_sources")) == [
        (1, border, CLOUDWATCH), (1, border, CLOUDWATCH), (1, "lost", S3), (2, "x", CLOUDWATCH), (2, "x", S3)]
    assert len(list(drop_duplicates(events, "off"))) == len(events)
    with pytest.raises(ValueError, match="dedupe"):
        list(drop_duplicates(events, "sometimes"))  # type: ignore[arg-type]


def test_split_event_is_whole_when_its_chunks_came_from_both_sources_twice() -> None:
    message = "é" * 3000 + "end"
    chunks = split_message(message, max_bytes=1000, split_id="abc123")
    assert len(chunks) > 4
    delivered = [cw(5, c) for c in chunks[::2]]
    spilled = [sp(5, c) for c in chunks[1::2]] + [sp(5, chunks[0])]  # one chunk both delivered and spilled
    stream = [cw(4, "before"), *delivered, cw(6, "after")]
    events = reassemble_events(drop_duplicates(merge_sources(stream, [*spilled, sp(5, "between")]), "off"))
    assert pairs(events) == [(4, "before", CLOUDWATCH), (5, message, CLOUDWATCH), (5, "between", S3),
                             (6, "after", CLOUDWATCH)]


lines = st.lists(st.tuples(st.integers(0, 20), st.sampled_from("abcdef")), max_size=60)


@given(lines, st.lists(st.sampled_from(["cw", "spill", "both", "cw-twice"]), min_size=60, max_size=60))
def test_exact_merge_yields_every_distinct_line_once_in_order(
    logged: list[tuple[int, str]], placement: list[str]
) -> None:
    """Each line is sent in a call (or spilled in an object) of its own: identical lines of one millisecond show
    once, the cost of ``exact``. Stored twice (an ambiguous retry) or also spilled, a line still shows once."""
    cloud: list[ReadEvent] = []
    spill: list[ReadEvent] = []
    for call, ((ts, message), where) in enumerate(zip(logged, placement, strict=False)):
        if where in ("cw", "both", "cw-twice"):
            cloud.append(cw(ts, message, call))
        if where == "cw-twice":
            cloud.append(cw(ts, message, 1000 + call))
        if where in ("spill", "both"):
            spill.append(sp(ts, message, f"s3://b/p/g/s/{call}.jsonl.gz"))
    cloud.sort(key=event_order)
    spill.sort(key=event_order)
    result = [(e.timestamp, e.message) for e in drop_duplicates(merge_sources(cloud, spill), "exact")]
    assert set(result) == set(logged)
    assert [ts for ts, _ in result] == sorted(ts for ts, _ in result)
    assert len(result) == len(set(result))


#: One delivery: the lines of one PutLogEvents call (or one spill object), where it was stored first, and where
#: it was stored again (an ambiguous retry: CloudWatch again; spilled too; a spill object written twice).
deliveries = st.lists(
    st.tuples(st.lists(st.sampled_from(["+---+", "| a |", "retry"]), min_size=1, max_size=8),
              st.sampled_from(["cw", "spill"]),
              st.lists(st.sampled_from(["cw", "spill"]), max_size=3)),
    min_size=1, max_size=5)


@given(deliveries, st.randoms(use_true_random=False))
def test_exact_keeps_each_line_of_a_millisecond_as_often_as_one_delivery_holds_it(
    sent: list[tuple[list[str], str, list[str]]], rng: Any
) -> None:
    stored: list[tuple[str, list[str]]] = [(where, lines) for lines, first, again in sent
                                           for where in (first, *again)]
    times = rng.sample(range(1_000), len(stored))  # when each copy was stored: any interleaving
    cloud: list[ReadEvent] = []
    spill: list[ReadEvent] = []
    for n, ((where, lines), at) in enumerate(zip(stored, times, strict=True)):
        if where == "cw":
            cloud += [cw(7, line, at) for line in lines]
        else:
            spill += [sp(7, line, f"s3://b/p/g/s/{n}.jsonl.gz", spilled_at=at) for line in lines]
    cloud.sort(key=event_order)
    spill.sort(key=event_order)
    merged = list(merge_sources(cloud, spill))
    kept = list(drop_duplicates(merged, "exact"))

    most = Counter[str]()
    for lines, _, _ in sent:
        for line, count in Counter(lines).items():
            most[line] = max(most[line], count)
    assert Counter(e.message for e in kept) == most
    positions = [next(i for i, m in enumerate(merged) if m is e) for e in kept]
    assert positions == sorted(positions)  # in merged order
    in_cloudwatch = Counter(e.message for e in cloud)
    assert Counter(e.message for e in kept if e.spilled) == most - in_cloudwatch  # CloudWatch copies first
    assert Counter(e.message for e in drop_duplicates(merged, "off")) == Counter(e.message for e in merged)


class FakeLogs:
    """GetLogEvents pages by token; ``script`` lists what each call does."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def get_log_events(self, **params: Any) -> dict[str, Any]:
        self.calls.append(dict(params))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step  # type: ignore[no-any-return]


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetLogEvents")


def page(token: str, *events: tuple[int, str]) -> dict[str, Any]:
    return {"events": [{"timestamp": t, "message": m, "ingestionTime": t + 1} for t, m in events],
            "nextForwardToken": token, "nextBackwardToken": "b"}


def test_paging_follows_tokens_through_empty_pages_until_the_token_repeats() -> None:
    fake = FakeLogs([page("t1", (1, "a"), (2, "b")), page("t2"), page("t3", (3, "c")), page("t3")])
    events = list(cloudwatch_events(fake, "g", "s", start_time=1, end_time=10))  # type: ignore[arg-type]
    got = [(e.timestamp, e.message, e.ingestion_time) for e in events]
    assert got == [(1, "a", 2), (2, "b", 3), (3, "c", 4)]
    assert [c.get("nextToken") for c in fake.calls] == [None, "t1", "t2", "t3"]
    assert all(c["startFromHead"] is True and c["startTime"] == 1 and c["endTime"] == 10 for c in fake.calls)


def test_throttling_is_retried_with_growing_capped_backoff() -> None:
    fake = FakeLogs([client_error("ThrottlingException", 400)] * 3
                    + [page("t1", (1, "a")), client_error("ServiceUnavailableException", 503), page("t1")])
    slept: list[float] = []
    events = list(cloudwatch_events(fake, "g", "s", sleep=slept.append, jitter=lambda: 0.999))  # type: ignore[arg-type]
    assert [e.message for e in events] == ["a"]
    assert len(slept) == 4
    assert slept[:3] == sorted(slept[:3]) and slept[0] < slept[2] <= 10.0
    assert slept[3] == slept[0]  # a success resets the backoff


def test_missing_stream_reads_empty_and_other_errors_raise() -> None:
    assert list(cloudwatch_events(FakeLogs([client_error("ResourceNotFoundException", 400)]), "g", "s")) == []  # type: ignore[arg-type]
    with pytest.raises(ClientError):
        list(cloudwatch_events(FakeLogs([client_error("AccessDeniedException", 400)]), "g", "s"))  # type: ignore[arg-type]
    throttled = FakeLogs([client_error("ThrottlingException", 400)] * 3)
    with pytest.raises(ClientError):
        list(cloudwatch_events(throttled, "g", "s", max_retries=2, sleep=lambda _: None))  # type: ignore[arg-type]
    assert len(throttled.calls) == 3


def test_an_endpoint_that_cannot_be_reached_is_said_after_a_short_retry_not_the_throttling_budget() -> None:
    # a wrong --endpoint-url or a down endpoint took ~27 s to be said (8 retries with backoff up to 10 s)
    refused = FakeLogs([EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")] * 9)
    slept: list[float] = []
    with pytest.raises(EndpointConnectionError):
        list(cloudwatch_events(refused, "g", "s", sleep=slept.append, jitter=lambda: 0.999))  # type: ignore[arg-type]
    assert len(refused.calls) == 1 + CONNECT_RETRIES and sum(slept) < 2.0
    blip = FakeLogs([EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"), page("t1", (1, "a")), page("t1")])
    assert [e.message for e in cloudwatch_events(blip, "g", "s", sleep=lambda _: None)] == ["a"]  # type: ignore[arg-type]


class FakeSpill:
    """A spill reader over in-memory objects; counts loads."""

    def __init__(self, objects: dict[str, list[SpillRecord]]) -> None:
        self.objects = objects
        self.loads: Counter[str] = Counter()

    def stream_objects(self, group: str, stream: str) -> Any:
        for location, records in self.objects.items():
            def load(location: str = location, records: list[SpillRecord] = records) -> Decoded:
                self.loads[location] += 1
                return Decoded(list(records))
            yield location, load


def rec(ts: int, message: str, stream: str = "s") -> SpillRecord:
    return SpillRecord("g", stream, ts, message, "max_latency")


@pytest.mark.parametrize("cache", [0, 3, 1000])
def test_spilled_objects_merge_in_time_order_with_bounded_caching(cache: int) -> None:
    spill = FakeSpill({
        "b-late": [rec(50, "late-1"), rec(40, "late-0")],  # unsorted inside, listed first
        "a-early": [rec(10, "e0"), rec(45, "e1"), rec(60, "e2"), rec(5, "other", stream="t")],
        "c-overlap": [rec(30, "o0"), rec(45, "o1")],
        "d-outside": [rec(500, "outside")],
    })
    events = list(spilled_events([spill], "g", "s", end_time=100, max_cached_records=cache))  # type: ignore[list-item]
    assert [(e.timestamp, e.message, e.source) for e in events] == [
        (10, "e0", "a-early"), (30, "o0", "c-overlap"), (40, "late-0", "b-late"), (45, "e1", "a-early"),
        (45, "o1", "c-overlap"), (50, "late-1", "b-late"), (60, "e2", "a-early")]
    assert spill.loads["d-outside"] == 1  # nothing inside the window: never loaded again
    reloaded = sum(1 for name in ("a-early", "b-late", "c-overlap") if spill.loads[name] == 2)
    assert reloaded == {0: 3, 3: 2, 1000: 0}[cache]


def test_an_unreadable_spill_object_is_reported_or_raised() -> None:
    class Broken(FakeSpill):
        description = "broken"

        def stream_objects(self, group: str, stream: str) -> Any:
            yield "good", lambda: Decoded([rec(1, "kept")])
            yield "bad", lambda: (_ for _ in ()).throw(OSError("gone"))

    errors: list[tuple[str, str]] = []
    events = list(spilled_events([Broken({})], "g", "s",  # type: ignore[list-item]
                                 on_error=lambda where, error: errors.append((where, str(error)))))
    assert [e.message for e in events] == ["kept"] and errors == [("bad", "gone")]
    with pytest.raises(OSError, match="gone"):
        list(spilled_events([Broken({})], "g", "s"))  # type: ignore[list-item]
