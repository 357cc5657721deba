"""Faults, quotas and stats of the local endpoint, driven by a fake clock."""

from __future__ import annotations

import random

import pytest

from mwaa_logging.testing.cli import exposure_warning
from mwaa_logging.testing.eventlog import EventLog, StoredLogEvent
from mwaa_logging.testing.faults import Decision, FaultKind, FaultRule, Faults
from mwaa_logging.testing.quota import Quotas, TokenBucket
from mwaa_logging.testing.stats import Stats, StatsRecorder


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_count_fault_applies_to_the_next_n_matching_calls_only() -> None:
    faults = Faults(FakeClock())
    faults.inject("unavailable", count=2)
    assert faults.decide("CreateLogStream") == Decision()
    kinds = [faults.decide("PutLogEvents").kind for _ in range(3)]
    assert kinds == [FaultKind.UNAVAILABLE, FaultKind.UNAVAILABLE, None]
    assert faults.rules() == []


def test_window_fault_expires_with_the_clock() -> None:
    clock = FakeClock()
    faults = Faults(clock)
    faults.throttle_for(5.0)
    assert faults.decide("PutLogEvents").kind is FaultKind.THROTTLE
    clock.now += 4.9
    assert faults.decide("PutLogEvents").kind is FaultKind.THROTTLE
    clock.now += 0.2
    assert faults.decide("PutLogEvents").kind is None


def test_probability_fault_follows_the_random_draws() -> None:
    faults = Faults(FakeClock(), random.Random(7))
    faults.inject("drop", probability=0.25)
    hits = sum(faults.decide("PutLogEvents").kind is FaultKind.DROP for _ in range(4000))
    expected_rng = random.Random(7)
    assert hits == sum(expected_rng.random() < 0.25 for _ in range(4000))
    assert 800 < hits < 1200


def test_latency_adds_up_and_combines_with_the_first_other_fault() -> None:
    faults = Faults(FakeClock())
    faults.inject("latency", delay=0.5, count=1)
    faults.inject("unavailable", count=1)
    faults.inject("drop", count=1)
    faults.inject("latency", delay=0.25, api="*")
    first = faults.decide("PutLogEvents")
    assert (first.kind, first.delay) == (FaultKind.UNAVAILABLE, 0.75)
    second = faults.decide("PutLogEvents")
    assert (second.kind, second.delay) == (FaultKind.DROP, 0.25)


def test_clear_removes_rules_and_releases_hung_calls() -> None:
    faults = Faults(FakeClock())
    faults.inject("hang")
    assert not faults.cleared.is_set()
    faults.clear()
    assert faults.cleared.is_set()
    assert faults.decide("PutLogEvents") == Decision()


def test_removing_one_rule_keeps_the_others_and_their_hung_calls() -> None:
    faults = Faults(FakeClock())
    faults.inject("hang", api="DescribeLogGroups", count=1)
    assert faults.decide("DescribeLogGroups").kind is FaultKind.HANG  # that call now hangs; its rule is used up
    throttle = faults.throttle_for(12)
    latency = faults.inject("latency", delay=0.1)
    assert faults.remove(throttle.id) and not faults.remove(throttle.id)
    assert [rule.id for rule in faults.rules()] == [latency.id]
    assert not faults.cleared.is_set()  # another client's hung call goes on hanging
    hang = faults.inject("hang")
    faults.remove(hang.id)
    assert faults.cleared.is_set()  # removing a hang rule lets its calls go


def test_rules_round_trip_through_json() -> None:
    rule = FaultRule(FaultKind.LATENCY, api="*", count=3, probability=0.5, duration=2.0, delay=0.1)
    data = rule.to_json()
    assert data["kind"] == "latency"
    del data["id"], data["until"]
    assert FaultRule.from_json(data) == rule
    with pytest.raises(ValueError, match="unknown fault fields"):
        FaultRule.from_json({"kind": "drop", "cuont": 1})
    with pytest.raises(ValueError):
        Faults(FakeClock()).inject("drop", probability=1.5)


def test_token_bucket_allows_a_one_second_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, now=0.0)
    assert sum(bucket.try_take(0.0) for _ in range(20)) == 10
    assert not bucket.try_take(0.05)
    assert bucket.try_take(0.1)
    assert sum(bucket.try_take(10.0) for _ in range(20)) == 10


def test_quotas_per_api_and_removable() -> None:
    clock = FakeClock()
    quotas = Quotas(clock)
    quotas.set("PutLogEvents", 2)
    assert [quotas.admit("PutLogEvents") for _ in range(3)] == [True, True, False]
    assert all(quotas.admit("CreateLogStream") for _ in range(100))
    clock.now += 0.5
    assert quotas.admit("PutLogEvents")
    quotas.set("PutLogEvents", None)
    assert quotas.limits() == {}
    assert all(quotas.admit("PutLogEvents") for _ in range(100))


def test_stats_peak_and_timeline_of_put_calls() -> None:
    clock = FakeClock()
    stats = StatsRecorder(clock)
    for step in range(10):  # 10 calls within 0.9 s
        clock.now = 100.0 + step * 0.1
        stats.call("PutLogEvents")
    clock.now = 102.5
    stats.call("PutLogEvents")
    stats.call("CreateLogStream")
    stats.add("events_accepted", 7)
    snapshot = stats.snapshot()
    assert snapshot.put_peak_1s == 10
    assert snapshot.put_timeline == [10, 0, 1]
    assert snapshot.calls == {"PutLogEvents": 11, "CreateLogStream": 1}
    assert snapshot.events_accepted == 7
    assert Stats.from_json(snapshot.to_json()) == snapshot
    with pytest.raises(KeyError):
        stats.add("no_such_counter")
    stats.reset()
    assert stats.snapshot() == Stats()


def test_event_log_builds_events_only_when_read_and_keeps_arrival_order() -> None:
    log = EventLog([StoredLogEvent(1, "first", 9, 0)])
    log.add_batch([2, 3], ["b", "c"], ingestion_time=10, first_id=100)
    log.add_batch([1], ["a"], ingestion_time=11, first_id=200)
    assert len(log) == 4 and bool(log)
    assert log.pairs() == [(1, "first"), (2, "b"), (3, "c"), (1, "a")]
    assert list.__len__(log) == 1  # nothing built yet
    by_time = sorted(filter(lambda event: event.timestamp >= 2, log), key=lambda event: event.timestamp)
    assert [event.message for event in by_time] == ["b", "c"]
    assert list.__len__(log) == 4
    assert log[1] == StoredLogEvent(2, "b", 10, 100)
    assert log[3].to_filter_dict() == {"eventId": "200", "ingestionTime": 11, "message": "a", "timestamp": 1}
    assert log[2].to_response_dict() == {"ingestionTime": 10, "message": "c", "timestamp": 3}


def test_event_log_settles_pending_batches_before_any_change() -> None:
    log = EventLog()
    log.add_batch([1], ["a"], 0, 0)
    log += [StoredLogEvent(2, "moto", 0, 1)]  # what moto's own put_log_events does
    log.add_batch([3], ["c"], 0, 2)
    log.append(StoredLogEvent(4, "d", 0, 3))
    assert [event.message for event in log] == ["a", "moto", "c", "d"]
    assert [event.message for event in log[1:3]] == ["moto", "c"]
    log.add_batch([5], ["e"], 0, 4)
    joined = log + [StoredLogEvent(6, "f", 0, 5)]  # noqa: RUF005 - list.__add__ is what is tested
    assert [event.message for event in joined] == ["a", "moto", "c", "d", "e", "f"]
    log.clear()
    assert len(log) == 0 and log.pairs() == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_local_aws_on_a_loopback_address_says_nothing(host: str) -> None:
    assert exposure_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "myhost.example"])
def test_local_aws_reachable_from_elsewhere_warns_that_it_has_no_authentication(host: str) -> None:
    warning = exposure_warning(host)
    assert warning is not None and host in warning and "no authentication" in warning and "admin API" in warning
