"""Engine behaviour on an injected clock: when it sends, how it retries, what it spills and why."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from mwaa_logging.batching import sort_key
from mwaa_logging.engine.channel import CHECK_SENDER_MASK, Channel, StreamBuffer
from mwaa_logging.engine.delivery import MARKER_PREFIX, retry_due
from mwaa_logging.engine.stats import Stats
from mwaa_logging.events import MESSAGE, SIZE
from mwaa_logging.limits import MAX_BATCH_BYTES, MAX_EVENT_MESSAGE_BYTES
from mwaa_logging.outcome import CallResult, Outcome, RejectedInfo
from mwaa_logging.spillformat import SpillRecord
from mwaa_logging.splitting import parse_chunk, reassemble_messages
from tests.unit.engine_fakes import OK, Call, MemorySpill, Rig, ScriptedTransport, make_rig
from tests.waiting import wait_until

THROTTLED = CallResult(Outcome.THROTTLED, error_code="ThrottlingException", message="Rate exceeded")
UNAVAILABLE = CallResult(Outcome.TRANSIENT, error_code="ServiceUnavailableException")


def assert_balanced(rig) -> None:  # type: ignore[no-untyped-def]
    stats = rig.channel.stats()
    assert stats.emitted == stats.delivered + stats.spilled_total + stats.pending, stats


def test_partial_batch_waits_for_send_interval_then_goes_in_one_call() -> None:
    rig = make_rig(send_interval=2.0)
    for i in range(10):
        rig.append(f"line {i}")
    rig.run(1.9)
    assert rig.transport.puts == []
    rig.run(0.2)
    assert len(rig.transport.puts) == 1
    assert rig.transport.delivered_messages() == [f"line {i}" for i in range(10)]
    assert rig.channel.stats().delivered == 10
    assert_balanced(rig)


def test_full_batch_goes_at_once_and_calls_are_minimal() -> None:
    rig = make_rig(send_interval=60.0)
    for i in range(25_000):
        rig.append(f"event {i:06d}")
    rig.run()
    # 20,000 events fill two 10k-event batches; the 5,000 remaining wait for the interval.
    assert [len(c.events) for c in rig.transport.puts] == [10_000, 10_000]
    rig.run(60.1, step=1.0)
    assert [len(c.events) for c in rig.transport.puts] == [10_000, 10_000, 5_000]
    assert_balanced(rig)


def test_batches_are_valid_and_sorted_even_when_timestamps_arrive_out_of_order() -> None:
    rig = make_rig(send_interval=0.5)
    for i in range(300):
        rig.append("x" * 5_000, ts_offset_ms=-(i % 7) * 1000)
    rig.run(1.0)
    for call in rig.transport.puts:
        assert sum(e[SIZE] for e in call.events) <= MAX_BATCH_BYTES
        assert call.events == sorted(call.events, key=sort_key)
    assert sum(len(c.events) for c in rig.transport.puts) == 300


def timed_rig(script: list[CallResult], then: CallResult = OK) -> tuple[Rig, list[float]]:
    """A rig (send interval 0.1 s, every backoff at its ceiling) whose PutLogEvents calls are answered from
    ``script``, then with ``then``; also the clock time of every call."""
    times: list[float] = []

    def answer(call: Call) -> CallResult:
        times.append(rig.clock.now)
        return script.pop(0) if script else then

    rig = make_rig(ScriptedTransport(on_call=answer), send_interval=0.1, random_value=0.999)
    return rig, times


def test_throttle_backs_off_with_jitter_then_delivers_in_order() -> None:
    rig, times = timed_rig([THROTTLED, THROTTLED, THROTTLED])
    for i in range(50):
        rig.append(f"m{i}")
    rig.run(20, step=0.01)
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # full jitter: retry n waits random() * min(20, 0.2 * 2**(n-1)) at least (the budget may add more)
    for gap, ceiling in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert gap >= ceiling * 0.999 - 0.011
    assert [e[MESSAGE] for e in rig.transport.puts[-1].events] == [f"m{i}" for i in range(50)]
    stats = rig.channel.stats()
    assert (stats.throttled, stats.retries, stats.delivered, stats.spilled_total) == (3, 3, 50, 0)


def test_transient_failures_are_retried_and_ambiguous_ones_counted() -> None:
    ambiguous = CallResult(Outcome.TRANSIENT, error_code="ReadTimeoutError", ambiguous=True)
    transport = ScriptedTransport([UNAVAILABLE, ambiguous])
    rig = make_rig(transport, send_interval=0.1)
    rig.append("hello")
    rig.run(5)
    stats = rig.channel.stats()
    assert (stats.delivered, stats.retries, stats.ambiguous_failures) == (1, 2, 1)
    assert len(transport.puts) == 3


def test_missing_group_and_stream_are_created_on_demand_only() -> None:
    missing_group = CallResult(Outcome.NO_RESOURCE, "ResourceNotFoundException",
                               "The specified log group does not exist.")
    transport = ScriptedTransport([missing_group])
    rig = make_rig(transport, send_interval=0.1, group="grp")
    rig.append("first")
    rig.append("second", stream="other")
    rig.run(1)
    ops = [c.op for c in transport.calls]
    assert ops.count("create_group") == 1
    assert ops.count("create_stream") == 1  # only the stream that was reported missing
    assert rig.channel.stats().delivered == 2


def test_a_stream_created_after_throttles_is_retried_without_a_backoff() -> None:
    # a new stream whose first calls were throttled: once created, the batch goes with the next token (the
    # budget paces 1 call/s after the throttles), not after a 5th backoff (0.999 x 1.6 s)
    missing_stream = CallResult(Outcome.NO_RESOURCE, "ResourceNotFoundException",
                                "The specified log stream does not exist.")
    rig, times = timed_rig([THROTTLED, THROTTLED, THROTTLED, missing_stream])
    rig.append("first line of a new stream")
    rig.run(20, step=0.01)
    assert [c.op for c in rig.transport.calls].count("create_stream") == 1
    assert len(times) == 5 and times[4] - times[3] < 1.5
    assert rig.channel.stats().delivered == 1


MISSING_STREAM = CallResult(Outcome.NO_RESOURCE, "ResourceNotFoundException",
                            "The specified log stream does not exist.")


def new_streams(rig: Rig, count: int) -> list[str]:
    """``count`` new streams, each given its first line; their names."""
    streams = [f"task-{i}" for i in range(count)]
    for stream in streams:
        rig.append(f"first line of {stream}", stream=stream)
    return streams


def first_lines(streams: list[str]) -> list[str]:
    return sorted(f"first line of {stream}" for stream in streams)


class CreatingTransport(ScriptedTransport):
    """A put to a stream not created yet is refused as missing; CreateLogStream is throttled ``throttles`` times."""

    def __init__(self, throttles: int = 0) -> None:
        super().__init__(on_call=self._put)
        self.throttles = throttles
        self.stored: list[str] = []

    def _put(self, call: Call) -> CallResult:
        if (call.group, call.stream) not in self.streams:
            return MISSING_STREAM
        self.stored += [e[MESSAGE] for e in call.events]
        return OK

    def create_log_stream(self, group: str, stream: str) -> CallResult:
        if self.throttles:
            self.throttles -= 1
            self.calls.append(Call("create_stream", group, stream))
            return THROTTLED
        return super().create_log_stream(group, stream)


def test_streams_waiting_for_a_create_token_do_not_put_again_meanwhile() -> None:
    """New streams beyond the CreateLogStream budget each retried PutLogEvents (refused: no stream) after every
    backoff while they waited for a create token: 1,000 new streams made 3,200 puts, against the account's
    PutLogEvents quota. A stream now waits for its token and creates first: one refused put, one that lands."""
    transport = CreatingTransport()
    rig = make_rig(transport, send_interval=0.1)
    streams = new_streams(rig, 300)  # ~6 s of the default 50/s CreateLogStream budget
    rig.run(30, step=0.05)
    assert sorted(transport.stored) == first_lines(streams)
    assert [c.op for c in transport.calls].count("create_stream") == len(streams)
    assert len(transport.puts) == 2 * len(streams)
    assert_balanced(rig)


def test_the_put_budget_gets_the_time_after_the_creates_that_came_before_the_put() -> None:
    """The sender read the time, made the creates a stream owed (network calls), then took a PutLogEvents token with
    that reading: a host budget takes a reading more than a second older than another process's for another clock
    and starts over with a full bucket (55 resets in a 16-process run, 105 calls in 9 s against a 10/s limit)."""
    class SlowCreates(CreatingTransport):
        def create_log_stream(self, group: str, stream: str) -> CallResult:
            clock.advance(2.0)  # a create that took two seconds
            return super().create_log_stream(group, stream)

    transport = SlowCreates(throttles=3)  # the creates are owed: made in a later pass, before the put
    rig = make_rig(transport, send_interval=0.1)
    clock = rig.clock
    budget = rig.channel.budgets.put
    acquired = budget.acquire
    stale: list[tuple[float, float]] = []

    def checked(now: float, tokens: float = 1.0) -> float:
        if now < clock():
            stale.append((now, clock()))
        return acquired(now, tokens)

    budget.acquire = checked  # type: ignore[method-assign]
    streams = new_streams(rig, 3)
    rig.run(5, step=0.05)
    assert sorted(transport.stored) == first_lines(streams)
    assert stale == []


def test_streams_waiting_for_create_tokens_take_turns_instead_of_all_asking_at_every_token() -> None:
    """Each waiting stream retried at the budget's next token: every token cost as many budget checks as streams
    were waiting (363 per create for 1,000 streams; Redis round trips in the fleet scope)."""
    transport = CreatingTransport()
    rig = make_rig(transport, send_interval=0.1)
    budget = rig.channel.budgets.create_stream
    acquired = budget.acquire
    checks: list[float] = []

    def counted(now: float, tokens: float = 1.0) -> float:
        checks.append(now)
        return acquired(now, tokens)

    budget.acquire = counted  # type: ignore[method-assign]
    streams = new_streams(rig, 300)
    rig.run(30, step=0.05)
    assert sorted(transport.stored) == first_lines(streams)
    assert len(checks) <= 3 * len(streams)


def test_streams_waiting_after_a_create_throttle_are_served_once_the_budget_recovers() -> None:
    """Turns a whole wait apart were measured at the throttle's 1 call/s floor: 300 streams got turns 1 s apart,
    kept them after the budget recovered, and 271 first lines were spilled at max_latency."""
    transport = CreatingTransport(throttles=1)
    rig = make_rig(transport, send_interval=0.1, max_latency=30)
    streams = new_streams(rig, 300)
    rig.run(30, step=0.05)
    assert sorted(transport.stored) == first_lines(streams)
    assert rig.channel.stats().spilled_total == 0


def test_flushes_do_not_stall_streams_waiting_for_create_tokens() -> None:
    """Before each flush deadline every waiting stream got its last call at once; refused a token, each went to the
    end of the queue: with a flush every few seconds, creates happened only at those last calls (248 of 1,000
    streams in 40 s at a 20/s quota)."""
    transport = CreatingTransport()
    rig = make_rig(transport, send_interval=0.1)
    streams = new_streams(rig, 500)  # 10 s of the 50/s CreateLogStream budget
    flushes = 0
    while len(transport.stored) < len(streams) and flushes < 8:  # the application flushes every 3 s
        thread, _result = flush_in_thread(rig, timeout=3.0)
        rig.run(3.0, step=0.05)
        thread.join(10)
        flushes += 1
    assert len(transport.stored) == len(streams) and flushes <= 5  # ~10 s at 50 creates/s, as without flushes
    assert rig.channel.stats().spilled_total == 0


MISSING_GROUP = CallResult(Outcome.NO_RESOURCE, "ResourceNotFoundException", "The specified log group does not exist.")


class MissingGroupTransport(CreatingTransport):
    """The group does not exist until created; CreateLogGroup is throttled ``group_throttles`` times."""

    def __init__(self, group_throttles: int) -> None:
        super().__init__()
        self.group_throttles = group_throttles

    def _put(self, call: Call) -> CallResult:
        if call.group not in self.groups:
            return MISSING_GROUP
        return super()._put(call)

    def create_log_group(self, group: str, tags: Any = None) -> CallResult:
        if self.group_throttles:
            self.group_throttles -= 1
            self.calls.append(Call("create_group", group))
            return THROTTLED
        return super().create_log_group(group, tags)

    def create_log_stream(self, group: str, stream: str) -> CallResult:
        if group not in self.groups:
            self.calls.append(Call("create_stream", group, stream))
            return MISSING_GROUP
        return super().create_log_stream(group, stream)


def test_a_throttled_create_log_group_still_gets_its_retention_and_is_made_once_per_stream_at_most() -> None:
    """After a throttled CreateLogGroup the retention call found no token and was never made (logs kept for good,
    unsaid); and every retry of a stream that had found the group missing made CreateLogGroup again (579 calls for
    one group)."""
    transport = MissingGroupTransport(group_throttles=2)
    rig = make_rig(transport, send_interval=0.1, log_group_retention_days=7)
    streams = new_streams(rig, 50)
    rig.run(30, step=0.05)
    assert sorted(transport.stored) == first_lines(streams)
    ops = [c.op for c in transport.calls]
    assert ops.count("retention") >= 1
    assert ops.count("create_group") <= len(streams) + 2
    assert rig.channel.stats().spilled_total == 0


def test_a_create_that_keeps_failing_makes_one_last_call_before_a_deadline_not_one_per_token() -> None:
    """In the last 2 s before a flush deadline a stream owing a create was due again at once after each failure:
    the sender looped (151 CreateLogStream calls and 1 s of CPU in one close) and other streams starved."""

    class FailingCreates(CreatingTransport):
        def create_log_stream(self, group: str, stream: str) -> CallResult:
            self.calls.append(Call("create_stream", group, stream))
            return UNAVAILABLE

    transport = FailingCreates()
    rig = make_rig(transport, send_interval=0.1)
    rig.append("line")

    def creates() -> int:
        return [c.op for c in transport.calls].count("create_stream")

    while creates() < 8:  # the backoff grows past the flush's deadline
        rig.run(0.05)
    before = creates()
    thread, result = flush_in_thread(rig, timeout=3.0)
    rig.run(3.0)
    thread.join(10)
    assert result == [False]
    assert creates() - before <= 1
    assert rig.channel.stats().pending == 1


def test_a_throttled_create_log_stream_slows_its_budget_and_is_retried_before_any_put() -> None:
    transport = CreatingTransport(throttles=2)
    rig = make_rig(transport, send_interval=0.1)
    rig.append("line")
    rig.run(30, step=0.05)
    assert transport.stored == ["line"]
    assert [c.op for c in transport.calls] == ["put", "create_stream", "create_stream", "create_stream", "put"]
    assert rig.channel.budgets.create_stream.stats().throttles == 2  # type: ignore[attr-defined]


def test_events_arriving_while_the_sender_is_in_a_call_are_judged_by_age_too() -> None:
    """They went from the queue into the batch without the age check: a timestamp 15 days old, one 3 h ahead and
    a negative one were sent (a whole batch can be refused for one of them) instead of spilled at once."""
    day_ms = 24 * 3600 * 1000
    late = {"15 days old": -15 * day_ms, "3 hours ahead": 3 * 3600 * 1000}

    def first_call_logs_more(call: Call) -> CallResult:
        if len(transport.calls) == 1:  # the application logs while the sender waits for the answer
            for message, offset in late.items():
                rig.append(message, ts_offset_ms=offset)
            rig.channel.append("s", -5, "before 1970")
            rig.append("on time")
        return OK

    transport = ScriptedTransport(on_call=first_call_logs_more)
    rig = make_rig(transport, send_interval=0.1, max_batch_count=1)  # each event is due at once, in the same pass
    rig.append("first")
    rig.run(5)
    assert [m for m in transport.delivered_messages() if not m.startswith(MARKER_PREFIX)] == ["first", "on time"]
    assert sorted((r.message, r.reason) for r in rig.spill.records) == [
        ("15 days old", "too_old"), ("3 hours ahead", "too_new"), ("before 1970", "too_old")]
    assert_balanced(rig)


def test_missing_group_that_may_not_be_created_is_spilled_with_reason() -> None:
    missing_group = CallResult(Outcome.NO_RESOURCE, "ResourceNotFoundException",
                               "The specified log group does not exist.")
    transport = ScriptedTransport(on_call=lambda call: missing_group)
    rig = make_rig(transport, send_interval=0.1, create_log_group=False)
    rig.append("nowhere to go")
    rig.run(1)
    assert [(r.message, r.reason) for r in rig.spill.records] == [("nowhere to go", "no_resource")]
    assert_balanced(rig)


def test_rejected_events_are_spilled_with_their_reason_and_the_rest_delivered() -> None:
    partial = CallResult(Outcome.PARTIAL, rejected=RejectedInfo(too_new_start=4, too_old_end=1, expired_end=2))
    transport = ScriptedTransport([partial])
    rig = make_rig(transport, send_interval=0.1)
    for i in range(6):
        rig.append(f"e{i}", ts_offset_ms=i)
    rig.run(0.5)
    reasons = {r.message: r.reason for r in rig.spill.records}
    assert reasons == {"e0": "rejected_too_old", "e1": "rejected_expired", "e4": "rejected_too_new",
                       "e5": "rejected_too_new"}
    stats = rig.channel.stats()
    # the 2 accepted events, then one marker event saying where the 4 others went
    assert (stats.delivered, stats.markers, stats.spilled_total) == (3, 1, 4)
    assert_balanced(rig)


@pytest.mark.parametrize(("outcome", "reason"), [(Outcome.INVALID, "invalid"), (Outcome.AUTH, "auth")])
def test_permanent_errors_spill_the_batch(outcome: Outcome, reason: str) -> None:
    transport = ScriptedTransport([CallResult(outcome, "SomeError", "nope")])
    rig = make_rig(transport, send_interval=0.1)
    rig.append("a")
    rig.run(0.3)
    assert [(r.message, r.reason) for r in rig.spill.records] == [("a", reason)]
    assert "SomeError" in rig.spill.records[0].detail
    assert_balanced(rig)


def test_events_waiting_past_max_latency_are_spilled_and_a_marker_follows_recovery() -> None:
    state = {"throttle": True}
    transport = ScriptedTransport(on_call=lambda call: THROTTLED if state["throttle"] else CallResult(Outcome.OK))
    rig = make_rig(transport, send_interval=0.5, max_latency=5.0)
    for i in range(20):
        rig.append(f"old {i}")
    logged_ms = int(rig.clock.wall() * 1000)
    rig.run(5.5, step=0.1)
    assert len(rig.spill.records) == 20
    assert {r.reason for r in rig.spill.records} == {"max_latency"}
    assert rig.spill.records[0].detail == "ThrottlingException"
    # when, on the injected wall clock (the reader merges by it): once max_latency (5 s) had passed
    assert {r.spilled_at for r in rig.spill.records} <= set(range(logged_ms + 5_000, int(rig.clock.wall() * 1000) + 1))
    stats = rig.channel.stats()
    assert (stats.pending, stats.oldest_pending_age) == (0, 0.0)  # nothing waits any more
    state["throttle"] = False
    rig.append("new")
    rig.run(30, step=0.5)
    delivered = rig.transport.delivered_messages()
    assert "new" in delivered
    markers = [m for m in delivered if m.startswith("[mwaa-logging] 20 log events")]
    assert len(markers) == 1 and "memory://spill" in markers[0] and "(max_latency)" in markers[0]
    assert_balanced(rig)


def test_events_logged_with_an_old_timestamp_are_sent_not_spilled_at_once() -> None:
    """A backfill (``stream.write(message, timestamp_ms=...)`` of a 10-minute-old log) on a healthy endpoint goes to
    CloudWatch, which takes events up to 14 days old: max_latency counts from when such an event was logged."""
    rig = make_rig(send_interval=0.5, max_latency=60.0)
    for i in range(20):
        rig.append(f"backfilled {i}", ts_offset_ms=-600_000 + i)
    rig.run(2.0, step=0.1)
    assert rig.transport.delivered_messages() == [f"backfilled {i}" for i in range(20)]
    assert rig.spill.records == []
    assert_balanced(rig)


def test_events_logged_late_are_spilled_max_latency_after_they_were_logged_if_still_undelivered() -> None:
    transport = ScriptedTransport(on_call=lambda call: THROTTLED)
    rig = make_rig(transport, send_interval=0.5, max_latency=5.0)
    rig.append("late on arrival", ts_offset_ms=-600_000)
    rig.run(4.5, step=0.1)
    assert rig.spill.records == []  # still within max_latency of being logged: still tried
    rig.run(1.5, step=0.1)
    assert [(r.message, r.reason) for r in rig.spill.records] == [("late on arrival", "max_latency")]
    assert_balanced(rig)


def test_late_lines_arriving_now_and_then_do_not_keep_on_time_lines_from_max_latency() -> None:
    """The grace late lines get (max_latency from their arrival) was the whole stream's: one old-timestamped line
    every few seconds kept every line of the stream in memory, never spilled at max_latency, during an outage."""
    transport = ScriptedTransport(on_call=lambda call: THROTTLED)
    rig = make_rig(transport, send_interval=0.5, max_latency=5.0)
    rig.append("on time")
    for second in range(0, 8, 2):
        rig.append(f"late on arrival at {second} s", ts_offset_ms=-600_000)
        rig.run(2.0, step=0.1)
    spilled = {r.message: r.reason for r in rig.spill.records}
    assert spilled == {"on time": "max_latency"}  # 5 s after it was logged, not when the late lines stop
    # The lines that arrived late share one grace, renewed by each: max_latency after the last of them arrived.
    rig.run(2.5, step=0.1)  # 4.5 s after the last one arrived
    assert not any(r.message.startswith("late") for r in rig.spill.records)
    rig.run(1.0, step=0.1)
    assert sorted(r.message for r in rig.spill.records if r.reason == "max_latency") == sorted(
        ["on time"] + [f"late on arrival at {second} s" for second in range(0, 8, 2)])
    assert_balanced(rig)


def test_memory_cap_spills_oldest_first() -> None:
    transport = ScriptedTransport(on_call=lambda call: THROTTLED)
    rig = make_rig(transport, send_interval=0.1, max_buffer_bytes=MAX_BATCH_BYTES)
    for i in range(300):
        rig.append(f"{i:04d}" + "y" * 10_000)
    rig.run(0.2)
    spilled = [r.message[:4] for r in rig.spill.records]
    assert spilled and spilled == sorted(spilled)
    assert spilled[0] == "0000"
    assert {r.reason for r in rig.spill.records} == {"memory_cap"}
    assert rig.channel.stats().pending_bytes <= MAX_BATCH_BYTES + 20_000
    assert_balanced(rig)


def test_too_old_and_too_new_events_never_reach_cloudwatch() -> None:
    rig = make_rig(send_interval=0.1)
    day = 24 * 3600 * 1000
    rig.append("ancient", ts_offset_ms=-15 * day)
    rig.append("future", ts_offset_ms=3 * 3600 * 1000)
    rig.append("now")
    rig.run(0.3)
    assert rig.transport.delivered_messages()[0] == "now"
    assert "(too_new, too_old)" in rig.transport.delivered_messages()[1]
    assert sorted((r.message, r.reason) for r in rig.spill.records) == [("ancient", "too_old"),
                                                                         ("future", "too_new")]


def test_events_spanning_more_than_a_day_go_in_separate_calls() -> None:
    rig = make_rig(send_interval=0.1, max_latency=3 * 24 * 3600)
    rig.append("two days ago", ts_offset_ms=-2 * 24 * 3600 * 1000)
    rig.append("now")
    rig.run(0.3)
    assert [[e[MESSAGE] for e in c.events] for c in rig.transport.puts] == [["two days ago"], ["now"]]


def test_oversized_message_is_split_losslessly() -> None:
    rig = make_rig(send_interval=0.1)
    big = "é" * 700_000  # 1.4 MB of UTF-8
    rig.append(big)
    rig.run(0.3)
    chunks = rig.transport.delivered_messages()
    assert len(chunks) == 2
    assert all(len(c.encode()) <= MAX_EVENT_MESSAGE_BYTES for c in chunks)
    assert all(parse_chunk(c) is not None for c in chunks)
    assert list(reassemble_messages(chunks)) == [big]
    stats = rig.channel.stats()
    assert (stats.split_events, stats.split_chunks, stats.emitted, stats.delivered) == (1, 2, 2, 2)


def test_unusual_messages_keep_their_place_among_neighbours_of_the_same_millisecond() -> None:
    # seq is taken when a message is queued; the sender splits or replaces it later, while newer messages of
    # the same millisecond are already queued behind it
    rig = make_rig(send_interval=0.1, max_message_size=1026)
    rig.append("first")
    rig.append("x" * 2500)  # split in pieces of at most 1000 bytes
    rig.append("")
    rig.append("é" * 10)
    rig.append("last", stream="other")
    rig.append("after")
    rig.run(0.3)
    (call,) = [c for c in rig.transport.puts if c.stream == "s"]
    messages = [e[MESSAGE] for e in call.events]
    assert messages[0] == "first" and messages[-3:] == ["(empty log message)", "é" * 10, "after"]
    assert list(reassemble_messages(messages[1:-3])) == ["x" * 2500]
    assert [e[SIZE] for e in call.events][-2:] == [20 + 26, 5 + 26]  # UTF-8 bytes + 26
    assert call.events == sorted(call.events, key=sort_key)  # the order every later merge or retry keeps
    assert_balanced(rig)


def test_flush_waits_for_every_piece_of_a_message_split_after_it_began() -> None:
    # the message is still queued (one event) when flush() takes its mark; the sender then makes four pieces
    rig = make_rig(ScriptedTransport([OK, OK, THROTTLED]), send_interval=60.0)
    rig.append("x" * 3_500_000)
    rig.append("small")
    with rig.channel.lock:
        mark = rig.channel.flush_mark()
        rig.channel.flush_target = mark[0]
    rig.run()
    delivered = rig.transport.delivered_messages()
    assert len(delivered) >= 2 and "small" not in delivered  # more events settled than the mark counted
    assert not rig.channel.reached(mark)
    rig.run(10.0, step=0.5)
    assert rig.transport.delivered_messages()[-1] == "small"
    assert rig.channel.reached(mark)
    assert_balanced(rig)


def test_truncation_is_opt_in() -> None:
    rig = make_rig(send_interval=0.1, oversize="truncate", max_message_size=1026)
    rig.append("z" * 5000)
    rig.run(0.3)
    (message,) = rig.transport.delivered_messages()
    assert len(message.encode()) <= 1000
    assert rig.channel.stats().truncated_events == 1


def test_empty_message_is_delivered_as_a_placeholder() -> None:
    rig = make_rig(send_interval=0.1)
    rig.append("")
    rig.run(0.3)
    assert rig.transport.delivered_messages() == ["(empty log message)"]


def test_close_spills_pending_and_in_flight_then_counts_late_success_as_duplicate() -> None:
    rig = make_rig(send_interval=0.1)
    captured: list[Call] = []

    def close_during_call(call: Call) -> CallResult:
        captured.append(call)
        rig.append("arrived during the call")
        rig.channel.close(timeout=0)  # the close deadline passes while the call is on the wire
        return CallResult(Outcome.OK)

    rig.transport.on_call = close_during_call
    rig.append("in flight")
    rig.run(0.2)
    assert sorted(r.message for r in rig.spill.records) == ["arrived during the call", "in flight"]
    assert {r.reason for r in rig.spill.records} == {"close_deadline"}
    stats = rig.channel.stats()
    assert (stats.delivered, stats.spilled_total, stats.duplicates, stats.pending) == (0, 2, 1, 0)
    assert_balanced(rig)


def test_a_close_after_the_exit_spill_does_not_wait_for_the_abandoned_call() -> None:
    # At interpreter exit the engine spills at its deadline, abandoning the call on the wire (an endpoint that does
    # not answer); logging.shutdown() then closes the handler. That close spun for its whole close_timeout waiting
    # for the abandoned call: exit took twice close_timeout, at full CPU.
    rig = make_rig(send_interval=0.1, close_timeout=0)
    closed: list[bool] = []

    def exit_during_call(call: Call) -> CallResult:
        rig.engine.at_exit()  # close_timeout 0: the deadline has passed, everything is spilled
        closed.append(rig.channel.close(timeout=5))
        return CallResult(Outcome.OK)

    rig.transport.on_call = exit_during_call
    rig.append("in flight")
    rig.run(0.2)
    assert closed == [True]  # nothing was left to wait for
    assert [r.message for r in rig.spill.records] == ["in flight"]
    assert not rig.channel.has_work()
    assert_balanced(rig)


class ObservedSpill(MemorySpill):
    """Takes the channel's stats at every write, while the events are on their way to the spill target."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(fail)
        self.seen: list[Stats] = []
        self.channel: Channel | None = None

    def write(self, records: Sequence[SpillRecord]) -> str:
        assert self.channel is not None
        self.seen.append(self.channel.stats())
        return super().write(records)


DAY_MS = 24 * 3600 * 1000


def _spill_too_old(rig: Rig) -> None:
    rig.append("ancient", ts_offset_ms=-15 * DAY_MS)
    rig.run(0.3)


def _spill_memory_cap(rig: Rig) -> None:
    rig.transport.on_call = lambda call: THROTTLED
    for i in range(300):
        rig.append(f"{i:04d}" + "y" * 10_000)
    rig.run(0.2)


def _spill_rejected(rig: Rig) -> None:
    rig.transport.script = [CallResult(Outcome.PARTIAL, rejected=RejectedInfo(too_old_end=2))]
    for i in range(4):
        rig.append(f"e{i}", ts_offset_ms=i)
    rig.run(0.5)


def _spill_invalid(rig: Rig) -> None:
    rig.transport.script = [CallResult(Outcome.INVALID, "SomeError", "nope")]
    rig.append("a")
    rig.run(0.3)


def _spill_at_close_deadline(rig: Rig) -> None:
    rig.transport.on_call = lambda call: THROTTLED
    for i in range(3):
        rig.append(f"e{i}")
    rig.run(0.3)
    rig.channel.close(timeout=0)


@pytest.mark.parametrize("spill_some", [_spill_too_old, _spill_memory_cap, _spill_rejected, _spill_invalid,
                                        _spill_at_close_deadline], ids=lambda f: f.__name__[7:])
@pytest.mark.parametrize("spill_fails", [False, True], ids=["spilled", "kept"])
def test_stats_add_up_while_events_are_on_their_way_to_the_spill_target(spill_some, spill_fails) -> None:  # type: ignore[no-untyped-def]
    """Events taken out of the buffers count as pending until the spill write (or its failure) is recorded:
    ``stats().balanced()`` holds at every moment, not only once the sender is idle."""
    spill = ObservedSpill(fail=spill_fails)
    rig = make_rig(spill=spill, fallback_spill=MemorySpill(fail=spill_fails), send_interval=0.1,
                   max_buffer_bytes=MAX_BATCH_BYTES)
    spill.channel = rig.channel
    spill_some(rig)
    assert spill.seen, "nothing was spilled"
    for stats in spill.seen:
        assert stats.balanced(), stats
    assert_balanced(rig)
    assert (rig.channel.settling, rig.channel.settling_bytes) == (0, 0)
    if spill_fails:  # nothing could store them: they are pending again, in their buffer
        assert rig.channel.stats().pending > 0 and rig.channel.stats().spilled_total == 0


def test_failed_spill_falls_back_and_keeps_events_if_everything_fails() -> None:
    fallback = MemorySpill()
    rig = make_rig(ScriptedTransport(on_call=lambda c: CallResult(Outcome.INVALID, "X")),
                   spill=MemorySpill(fail=True), fallback_spill=fallback, send_interval=0.1)
    rig.append("keep me")
    rig.run(0.3)
    assert [r.message for r in fallback.records] == ["keep me"]
    assert rig.channel.stats().spill_failures == 1

    fallback.fail = True
    rig.append("still here")
    rig.run(0.3)
    stats = rig.channel.stats()
    assert stats.pending == 1  # neither target could take it: it stays in memory, not lost
    assert_balanced(rig)


def test_streams_are_served_oldest_first_under_a_tight_budget() -> None:
    rig = make_rig(send_interval=0.1, put_rate_limit=1.0, rate_limit_burst=1.0)
    for stream in ("a", "b", "c"):
        rig.append(f"from {stream}", stream=stream)
        rig.clock.advance(0.01)
    rig.run(3.5, step=0.05)
    assert [c.stream for c in rig.transport.puts] == ["a", "b", "c"]


def test_counters_balance_across_a_mixed_run() -> None:
    outcomes = [THROTTLED, UNAVAILABLE, CallResult(Outcome.INVALID, "Bad"), THROTTLED]
    rig = make_rig(ScriptedTransport(outcomes), send_interval=0.2, max_latency=30)
    for i in range(5000):
        rig.append(f"line {i}", stream=f"s{i % 3}")
        if i % 500 == 0:
            rig.run(0.3)
    rig.run(60, step=0.5)
    stats = rig.channel.stats()
    assert stats.pending == 0
    assert stats.delivered + stats.spilled_total == 5000 + stats.markers
    assert_balanced(rig)


def test_flush_that_returns_early_still_gets_its_events_sent_now() -> None:
    rig = make_rig(send_interval=60.0)
    rig.append("x")
    assert rig.channel.flush(timeout=0) is False  # e.g. called under dictConfig: it may not wait
    rig.run(0.1)  # the request stays: no waiting for the 60 s interval
    assert rig.channel.flush(timeout=0) is True
    assert rig.transport.delivered_messages() == ["x"]


def throttled_until_backoff_is_long(failures: int, then: CallResult) -> tuple[Rig, list[float]]:
    """A rig whose one stream was throttled ``failures`` times (each backoff at its ceiling); call times."""
    rig, times = timed_rig([THROTTLED] * failures, then)
    rig.append("line")
    for _ in range(2_000):
        rig.run(0.05)
        if len(times) == failures:
            return rig, times
    raise AssertionError(f"only {len(times)} calls")


def flush_in_thread(rig: Rig, timeout: float) -> tuple[threading.Thread, list[bool]]:
    """flush(timeout) on a thread of its own, returned once it waits (its deadline is on the rig's clock)."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(rig.channel.flush(timeout)))
    thread.start()
    wait_until(lambda: bool(rig.channel.flush_deadlines))
    return thread, result


def test_a_waiting_flush_gets_a_last_call_before_its_deadline_instead_of_waiting_out_the_backoff() -> None:
    rig, times = throttled_until_backoff_is_long(7, then=OK)
    backoff_ends = rig.channel.buffers["s"].retry_at
    assert backoff_ends - times[-1] > 12  # 0.999 x 0.2 x 2**6: longer than the flush will wait
    started = rig.clock.now
    thread, result = flush_in_thread(rig, timeout=5.0)
    rig.run(5.0)
    thread.join(10)
    assert result == [True]
    assert len(times) == 8 and 2.9 <= times[-1] - started <= 3.1  # 2 s before the deadline, not at 12.8 s
    stats = rig.channel.stats()
    assert (stats.delivered, stats.pending, stats.spilled_total) == (1, 0, 0)


def test_the_last_call_before_a_deadline_is_made_once_and_the_backoff_then_resumes() -> None:
    # the last call fails without a throttle, so the budget would not hold a second one back
    rig, times = throttled_until_backoff_is_long(8, then=UNAVAILABLE)
    started = rig.clock.now
    thread, result = flush_in_thread(rig, timeout=3.0)
    rig.run(3.0)
    thread.join(10)
    assert result == [False]
    assert len(times) == 9 and 0.95 <= times[-1] - started <= 1.05  # one call, 2 s before the deadline
    assert rig.channel.buffers["s"].retry_at - times[-1] > 19  # the backoff goes on (20 s ceiling)
    assert rig.channel.stats().pending == 1


def test_retry_due_is_the_backoff_or_once_per_deadline_the_last_call() -> None:
    buffer = StreamBuffer("s")
    buffer.retry_at = 100.0
    assert retry_due(buffer, math.inf) == 100.0  # nobody waits
    assert retry_due(buffer, 120.0) == 100.0  # the backoff ends first
    assert retry_due(buffer, 50.0) == 50.0
    buffer.last_call_for = 50.0  # made
    assert retry_due(buffer, 50.0) == 100.0
    assert retry_due(buffer, 60.0) == 60.0  # another deadline


def test_after_a_throttle_partial_batches_wait_longer_to_fill_up() -> None:
    times: list[float] = []

    def answer(call: Call) -> CallResult:
        times.append(rig.clock.now)
        return THROTTLED if len(times) == 1 else CallResult(Outcome.OK)

    rig = make_rig(ScriptedTransport(on_call=answer), send_interval=0.5, put_rate_limit=100, max_latency=60)
    for _ in range(300):  # 10 events/s for 30 s
        rig.append("tick")
        rig.run(0.1, step=0.05)
    start = times[0]
    scarce = [t for t in times[1:] if t < start + 9]
    relaxed = [t for t in times if t > start + 12]
    assert len(scarce) <= 5  # every ~2 s (4 x the interval) while tokens count as scarce
    assert len(relaxed) >= 20  # back to every ~0.5 s afterwards (scarce pacing would give ~9)
    stats = rig.channel.stats()
    assert stats.delivered + stats.pending == 300 and stats.spilled_total == 0


def test_close_spills_everything_even_if_the_sender_never_ran() -> None:
    rig = make_rig(send_interval=0.1)
    for i in range(5):
        rig.append(f"queued {i}")  # still in the inbox: the sender never looked at it
    assert rig.channel.close(timeout=0.05) is False
    assert sorted(r.message for r in rig.spill.records) == [f"queued {i}" for i in range(5)]
    assert {r.reason for r in rig.spill.records} == {"close_deadline"}
    stats = rig.channel.stats()
    assert (stats.emitted, stats.spilled_total, stats.pending) == (5, 5, 0)
    assert rig.transport.calls == []


def test_application_threads_wake_an_idle_sender_and_yield_the_gil_to_a_working_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mwaa_logging.engine.channel as channel_module

    rig = make_rig()
    wakes: list[int] = []
    yields: list[float] = []
    monkeypatch.setattr(rig.engine, "wake", lambda: wakes.append(len(rig.channel.inbox)))
    monkeypatch.setattr(channel_module, "_sleep", yields.append)

    def queue(count: int) -> None:
        for _ in range(count):
            rig.append("m")

    queue(1)
    assert (wakes, yields) == ([1], [])  # the first message wakes the sleeping sender
    queue(127)
    assert (wakes, yields) == ([1], [])  # woken already, and not working: no wake-up, no yield
    rig.engine.busy = True
    queue(64 * 3)
    assert (wakes, yields) == ([1], [0, 0, 0])  # while it works: one GIL yield per 64 messages
    queue(1024 - 320)
    assert wakes == [1, 1024]  # every 1024th message wakes it (a full batch may be waiting), without a yield
    assert len(yields) == 3 + (1024 - 320) // 64 - 1
    rig.engine.busy = False
    queue(2048)
    assert wakes == [1, 1024, 2048, 3072] and len(yields) == 13


def test_the_sender_thread_is_busy_while_it_works_and_idle_after() -> None:
    import threading
    import time

    from mwaa_logging.engine.engine import Engine

    seen: list[bool] = []
    started, release = threading.Event(), threading.Event()

    def during_call(call: Call) -> CallResult:
        seen.append(engine.busy)
        started.set()
        release.wait(10)
        return CallResult(Outcome.OK)

    rig = make_rig(ScriptedTransport(on_call=during_call), send_interval=0.0)
    engine = Engine(start_thread=True)  # a real sender thread serving the rig's channel
    rig.channel.engine = engine
    engine.attach(rig.channel)
    try:
        rig.channel.append("s", int(time.time() * 1000), "sent by the sender thread")  # real time: not expired
        assert started.wait(10)
        assert not rig.channel.flush(0.1)  # the call is still blocked: busy all along
        assert seen == [True] and engine.busy
        release.set()
        assert rig.channel.flush(10)
        deadline = time.monotonic() + 10
        while engine.busy and time.monotonic() < deadline:  # it goes idle right after settling the call
            time.sleep(0.01)
        assert not engine.busy
    finally:
        release.set()
        engine._stopped = True  # let the thread end (the process-wide engine never stops)
        engine.wake()


def test_a_busy_sender_with_a_long_inbox_calls_the_memory_guard_which_enforces_the_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_rig(send_interval=0.1, max_buffer_bytes=MAX_BATCH_BYTES)
    assert rig.channel.inbox_alarm_bytes == MAX_BATCH_BYTES // 4
    calls: list[int] = []
    monkeypatch.setattr(rig.engine, "relieve", lambda: calls.append(len(rig.channel.inbox)))
    rig.engine.busy = True  # the sender is inside a call that does not return
    count = 3 * 1024
    for i in range(count):
        rig.append(f"{i:05d} " + "z" * 994)  # 1,026 counted bytes each: 3 MiB queued
    assert rig.channel.queued_bytes == count * 1026
    # every 64th message past the alarm (a quarter of the cap: 256 of these) asks for relief (those on a 1024
    # boundary wake the sender instead)
    assert calls and min(calls) == 256 and all(n % 64 == 0 and n % 1024 for n in calls)
    assert rig.spill.records == []  # the guard thread does the work, not the application thread
    rig.engine.relieve_now()  # what the guard thread runs when asked
    stats = rig.channel.stats()
    assert len(rig.channel.inbox) == 0 and rig.channel.queued_bytes == 0
    assert stats.pending_bytes <= MAX_BATCH_BYTES
    spilled = [r.message[:5] for r in rig.spill.records]
    assert spilled == [f"{i:05d}" for i in range(len(spilled))]  # the oldest first, in order
    assert {r.reason for r in rig.spill.records} == {"memory_cap"}
    assert_balanced(rig)
    rig.engine.busy = False
    rig.run(1.0)
    delivered = rig.transport.delivered_messages()
    assert delivered[:-1] == [f"{i:05d} " + "z" * 994 for i in range(len(spilled), count)]
    assert delivered[-1].startswith(f"{MARKER_PREFIX}{len(spilled)} log events")  # the stream says where they went



def test_the_alarm_counts_bytes_for_large_messages_and_events_for_small_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    large = make_rig(send_interval=0.1, max_buffer_bytes=4 * MAX_BATCH_BYTES)  # the alarm: 1 MiB queued
    calls: list[int] = []
    monkeypatch.setattr(large.engine, "relieve", lambda: calls.append(large.channel.queued_bytes))
    large.engine.busy = True
    for i in range(20):
        large.append(f"{i:05d} " + "b" * 99_994)  # 100,026 counted bytes each, far below the count alarm
    # a message over 64 KiB looks at the sender at once: relief from the 11th on (1,100,286 bytes queued)
    assert calls == [k * 100_026 for k in range(11, 21)]

    small = make_rig(send_interval=0.1, max_buffer_bytes=MAX_BATCH_BYTES)
    counts: list[int] = []
    monkeypatch.setattr(small.engine, "relieve", lambda: counts.append(len(small.channel.inbox)))
    small.engine.busy = True
    for i in range(2048):
        small.append(f"{i:05d}")  # 31 counted bytes each: 62 KiB in all, a quarter of the bytes alarm
    # the count alarm (1,024 events) bounds what small messages cost beyond their bytes
    assert counts and min(counts) == 1024 + 64

def test_the_memory_guard_bounds_memory_while_the_sender_is_blocked_in_a_call() -> None:
    import threading
    import time

    from mwaa_logging.engine.engine import Engine

    started, release = threading.Event(), threading.Event()

    def blocked(call: Call) -> CallResult:
        started.set()
        release.wait(30)
        return CallResult(Outcome.OK)

    rig = make_rig(ScriptedTransport(on_call=blocked), send_interval=0.0, max_buffer_bytes=MAX_BATCH_BYTES)
    engine = Engine(start_thread=True)  # real sender and guard threads
    rig.channel.engine = engine
    engine.attach(rig.channel)
    count = 20_000
    try:
        now_ms = int(time.time() * 1000)
        rig.channel.append("s", now_ms, "first")
        assert started.wait(10)  # the sender is now blocked in its first call
        for i in range(count):
            rig.channel.append("s", now_ms, f"{i:05d} " + "q" * 200)
        # the guard drains the queue and spills down to the cap while the call hangs; what the application
        # queued after the last time it asked (it looks every 64 records) stays queued
        most_left = rig.channel.inbox_alarm + CHECK_SENDER_MASK + 1
        def buffered() -> int:  # the cap is on the buffers; stats' pending bytes include the queue's
            return rig.channel.stats().pending_bytes - rig.channel.queued_bytes

        wait_until(lambda: len(rig.channel.inbox) < most_left and buffered() <= MAX_BATCH_BYTES,
                   timeout=30, state=rig.channel.stats)
        stats = rig.channel.stats()
        assert not release.is_set() and engine.busy  # still inside the first call
        assert len(rig.channel.inbox) < most_left, stats
        assert buffered() <= MAX_BATCH_BYTES, stats
        assert stats.spilled["memory_cap"] > count // 2, stats
    finally:
        release.set()
    assert rig.channel.flush(10)
    spilled = {r.message for r in rig.spill.records}
    delivered = [m for m in rig.transport.delivered_messages() if not m.startswith(MARKER_PREFIX)]
    everything = ["first"] + [f"{i:05d} " + "q" * 200 for i in range(count)]
    assert sorted(delivered + [r.message for r in rig.spill.records]) == sorted(everything)  # each line once
    assert not spilled & set(delivered)
    assert_balanced(rig)


def test_draining_counts_the_inbox_under_the_lock_so_a_concurrent_drain_loses_nothing() -> None:
    import threading

    class SignallingLock:
        """The channel's lock, saying when a thread is about to take it."""

        def __init__(self, inner: threading.Lock) -> None:
            self.inner, self.entering = inner, threading.Event()

        def __enter__(self) -> None:
            self.entering.set()
            self.inner.acquire()

        def __exit__(self, *exc: object) -> None:
            self.inner.release()

    rig = make_rig()
    for i in range(10):
        rig.append(f"m{i}")
    inner = rig.channel.lock
    lock = SignallingLock(inner)  # type: ignore[arg-type]
    rig.channel.lock = lock  # type: ignore[assignment]
    drained: list[int] = []
    with inner:  # another drainer (close(), the memory guard) holds the lock ...
        worker = threading.Thread(target=lambda: drained.append(rig.channel.drain_inbox()))
        worker.start()
        assert lock.entering.wait(10)  # ... while the sender comes to drain too
        taken = [rig.channel.inbox.popleft() for _ in range(4)]  # and takes four events first
    worker.join(10)
    assert drained == [6]  # the sender moved what was left, and nothing raised
    buffered = rig.channel.buffers["s"].pending
    assert [e[MESSAGE] for e in taken] + [e[MESSAGE] for e in buffered] == [f"m{i}" for i in range(10)]


class CountedFailingSpill(MemorySpill):
    """A spill target that cannot store anything (a full disk), counting its attempts."""

    def __init__(self) -> None:
        super().__init__(fail=True)
        self.attempts = 0

    def write(self, records: Sequence[SpillRecord]) -> str:
        self.attempts += 1
        return super().write(records)


def test_events_above_the_cap_are_still_sent_when_no_spill_target_can_store_them() -> None:
    """A burst above max_buffer_bytes on a full disk: each failed memory-cap spill paused the stream for
    SPILL_RETRY_DELAY, and as its buffers stayed above the cap it sent nothing while CloudWatch was healthy."""
    spill = CountedFailingSpill()
    rig = make_rig(spill=spill, fallback_spill=MemorySpill(fail=True), send_interval=0.1,
                   max_buffer_bytes=1_048_576)
    for i in range(6_000):  # ~6 MB: six times the cap
        rig.append(f"{i:06d} " + "x" * 1_000)
    rig.run(5.0)
    stats = rig.channel.stats()
    assert (stats.delivered, stats.pending, stats.spilled_total) == (6_000, 0, 0), stats
    assert rig.transport.delivered_messages() == [f"{i:06d} " + "x" * 1_000 for i in range(6_000)]
    assert spill.attempts == 1  # one failed write, then a pause: not one per pass


def test_late_events_are_sent_late_when_no_spill_target_can_store_them() -> None:
    rig = make_rig(ScriptedTransport(on_call=lambda call: THROTTLED if rig.clock.now < start + 1.5 else OK),
                   send_interval=0.1, max_latency=1.0, random_value=0.999)
    start = rig.clock.now
    rig.channel.spill = spill = CountedFailingSpill()
    rig.channel.fallback_spill = MemorySpill(fail=True)
    rig.append("late but kept")  # throttled past max_latency (1 s)
    rig.run(3.0, step=0.01)
    stats = rig.channel.stats()
    assert (stats.delivered, stats.spilled_total, spill.attempts) == (1, 0, 1), stats
