"""PutLogEvents acceptance rules of the local endpoint, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mwaa_logging.limits import MAX_BATCH_BYTES, MAX_EVENT_MESSAGE_BYTES
from mwaa_logging.testing.cloudwatch_rules import (
    CHRONOLOGICAL_MESSAGE,
    DAY_MS,
    SPAN_MESSAGE,
    RuleViolation,
    Verdict,
    check_names,
    check_put_log_events,
    check_structure,
    check_times,
)

NOW = 1_800_000_000_000
HOUR = 3600 * 1000


def batch(*messages: str, timestamp: int = NOW) -> list[dict[str, object]]:
    return [{"timestamp": timestamp, "message": message} for message in messages]


def violation(events: object, now: int = NOW, retention: int | None = None) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        check_put_log_events(events, now, retention)
    return caught.value


def test_a_valid_batch_is_accepted_whole() -> None:
    verdict = check_put_log_events(batch("a", "b", "c"), NOW)
    assert verdict == Verdict(0, 3)
    assert verdict.rejected_info() == {}
    assert verdict.accepted == 3


def test_no_events_is_invalid() -> None:
    error = violation([])
    assert error.error_type == "InvalidParameterException"
    assert "'logEvents'" in error.message and "greater than or equal to 1" in error.message


def test_at_most_10000_events() -> None:
    assert check_put_log_events(batch(*["x"] * 10_000), NOW).accepted == 10_000
    error = violation(batch(*["x"] * 10_001))
    assert "less than or equal to 10000" in error.message


def test_an_empty_message_is_invalid_and_named() -> None:
    error = violation(batch("a", "", "c"))
    assert "logEvents.2.member.message" in error.message


def test_largest_single_message_is_1048550_utf8_bytes() -> None:
    assert check_put_log_events(batch("x" * MAX_EVENT_MESSAGE_BYTES), NOW).accepted == 1
    error = violation(batch("x" * (MAX_EVENT_MESSAGE_BYTES + 1)))
    assert error.message == "Log event too large: 1048577 bytes exceeds limit of 1048576"
    # Two-byte characters count twice: 524,276 * "é" = 1,048,552 bytes.
    assert "Log event too large" in violation(batch("é" * 524_276)).message


def test_batch_bytes_are_utf8_plus_26_per_event() -> None:
    # 4 events: 4 * 26 overhead; fill the rest exactly to the limit.
    body = MAX_BATCH_BYTES - 4 * 26
    exact = batch("x" * (body - 3), "a", "b", "c")
    assert check_put_log_events(exact, NOW).accepted == 4
    error = violation(batch("x" * (body - 2), "a", "b", "c"))
    assert error.message == f"Upload too large: {MAX_BATCH_BYTES + 1} bytes exceeds limit of {MAX_BATCH_BYTES}"
    # The same number of characters in "é" is twice the bytes.
    assert "Upload too large" in violation(batch(*["é" * 60] * 10_000)).message


@pytest.mark.parametrize(
    ("events", "error_type"),
    [
        ([{"message": "no timestamp"}], "InvalidParameterException"),
        ([{"timestamp": NOW}], "InvalidParameterException"),
        ([{"timestamp": "1", "message": "x"}], "InvalidParameterException"),
        ([{"timestamp": True, "message": "x"}], "InvalidParameterException"),
        ([{"timestamp": NOW, "message": "ok"}, {"timestamp": NOW, "message": 5}], "InvalidParameterException"),
        ([{"timestamp": NOW, "message": "ok"}, {"timestamp": 1.5, "message": "x"}], "InvalidParameterException"),
        (["not an object"], "SerializationException"),
        ("not a list", "InvalidParameterException"),
    ],
)
def test_malformed_events_fail_the_call(events: object, error_type: str) -> None:
    assert violation(events).error_type == error_type


def test_events_must_be_in_chronological_order() -> None:
    events = [{"timestamp": NOW, "message": "a"}, {"timestamp": NOW - 1, "message": "b"}]
    assert violation(events).message == CHRONOLOGICAL_MESSAGE
    assert check_times([NOW, NOW, NOW + 1], NOW).accepted == 3


def test_too_new_events_are_a_rejected_suffix_with_an_inclusive_start() -> None:
    limit = NOW + 2 * HOUR
    verdict = check_times([NOW, limit, limit + 1, limit + 5], NOW)
    assert (verdict.accept_start, verdict.accept_end) == (0, 2)
    assert verdict.rejected_info() == {"tooNewLogEventStartIndex": 2}


def test_too_old_events_are_a_rejected_prefix_with_an_exclusive_end() -> None:
    limit = NOW - 14 * DAY_MS
    verdict = check_times([limit - 5, limit - 1, limit, limit + HOUR], NOW)
    assert (verdict.accept_start, verdict.accept_end) == (2, 4)
    assert verdict.rejected_info() == {"tooOldLogEventEndIndex": 2}


def test_events_older_than_the_group_retention_are_expired() -> None:
    verdict = check_times([NOW - 3 * DAY_MS, NOW - DAY_MS - 1, NOW - DAY_MS, NOW], NOW, retention_days=1)
    assert (verdict.accept_start, verdict.accept_end) == (2, 4)
    assert verdict.rejected_info() == {"expiredLogEventEndIndex": 2}


def test_too_old_expired_and_too_new_together() -> None:
    timestamps = [NOW - 15 * DAY_MS, NOW - 2 * DAY_MS, NOW, NOW + 3 * HOUR]
    verdict = check_times(timestamps, NOW, retention_days=1)
    assert verdict.rejected_info() == {
        "tooOldLogEventEndIndex": 1,
        "expiredLogEventEndIndex": 2,
        "tooNewLogEventStartIndex": 3,
    }
    assert (verdict.accept_start, verdict.accept_end) == (2, 3)


def test_retention_longer_than_14_days_changes_nothing() -> None:
    verdict = check_times([NOW - 20 * DAY_MS, NOW - 13 * DAY_MS, NOW - 13 * DAY_MS + HOUR], NOW, 30)
    assert verdict.rejected_info() == {"tooOldLogEventEndIndex": 1}


def test_everything_rejected_is_still_a_partial_success() -> None:
    assert check_times([NOW + 3 * HOUR], NOW).rejected_info() == {"tooNewLogEventStartIndex": 0}
    old = check_times([NOW - 20 * DAY_MS, NOW - 15 * DAY_MS], NOW)
    assert old.accepted == 0 and old.rejected_info() == {"tooOldLogEventEndIndex": 2}


def test_accepted_events_may_not_span_more_than_24_hours() -> None:
    assert check_times([NOW - 24 * HOUR, NOW], NOW).accepted == 2
    with pytest.raises(RuleViolation, match="cannot span more than 24 hours") as caught:
        check_times([NOW - 24 * HOUR - 1, NOW], NOW)
    assert caught.value.message == SPAN_MESSAGE


def test_the_span_counts_only_events_that_are_not_rejected() -> None:
    verdict = check_times([NOW - 15 * DAY_MS, NOW - 23 * HOUR, NOW + HOUR, NOW + 3 * HOUR], NOW)
    assert (verdict.accept_start, verdict.accept_end) == (1, 3)


def test_structure_returns_timestamps_and_messages() -> None:
    assert check_structure(batch("a", "é")) == ([NOW, NOW], ["a", "é"])


@given(
    offsets=st.lists(
        st.integers(min_value=-20 * DAY_MS, max_value=5 * HOUR), min_size=1, max_size=50
    ).map(sorted),
    retention=st.sampled_from([None, 1, 3, 7, 30]),
)
def test_accepted_slice_is_exactly_the_events_inside_the_window(
    offsets: list[int], retention: int | None
) -> None:
    timestamps = [NOW + offset for offset in offsets]
    oldest = NOW - min(14, retention or 14) * DAY_MS
    inside = [t for t in timestamps if oldest <= t <= NOW + 2 * HOUR]
    try:
        verdict = check_times(timestamps, NOW, retention)
    except RuleViolation as error:
        assert error.message == SPAN_MESSAGE
        assert inside[-1] - inside[0] > 24 * HOUR
        return
    assert timestamps[verdict.accept_start:verdict.accept_end] == inside
    info = verdict.rejected_info()
    rejected_before = max(info.get("tooOldLogEventEndIndex", 0), info.get("expiredLogEventEndIndex", 0))
    assert rejected_before == verdict.accept_start
    assert info.get("tooNewLogEventStartIndex", len(timestamps)) == verdict.accept_end
    assert all(t < NOW - 14 * DAY_MS for t in timestamps[: info.get("tooOldLogEventEndIndex", 0)])


@pytest.mark.parametrize(
    ("api", "request_", "accepted"),
    [
        ("CreateLogGroup", {"logGroupName": "/aws/airflow-prod_Task.v2#1"}, True),
        ("CreateLogGroup", {"logGroupName": "bad group"}, False),
        ("CreateLogGroup", {"logGroupName": "g" * 512}, True),
        ("CreateLogGroup", {"logGroupName": "g" * 513}, False),
        ("CreateLogStream", {"logGroupName": "g", "logStreamName": "dag_id=d/run_id=manual__é/attempt=1.log"}, True),
        ("CreateLogStream", {"logGroupName": "g", "logStreamName": "a:b"}, False),
        ("PutLogEvents", {"logGroupName": "g", "logStreamName": "a*b"}, False),
        ("PutLogEvents", {"logGroupName": "g", "logStreamName": "s" * 512}, True),
        ("PutLogEvents", {"logGroupName": "g", "logStreamName": "s" * 513}, False),
        ("PutRetentionPolicy", {"logGroupName": "g", "retentionInDays": 14}, True),
        ("PutRetentionPolicy", {"logGroupName": "g", "retentionInDays": 2}, False),
        ("GetLogEvents", {"logGroupName": "any name", "logStreamName": "a:b"}, True),
    ],
)
def test_names_and_retention_follow_the_service_model(api: str, request_: dict[str, object], accepted: bool) -> None:
    if accepted:
        check_names(api, request_)
    else:
        with pytest.raises(RuleViolation, match="1 validation error detected"):
            check_names(api, request_)
