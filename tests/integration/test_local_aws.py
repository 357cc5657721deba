"""The local AWS endpoint over real HTTP with boto3: AWS's PutLogEvents rules, gzip, quotas, faults, stats."""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from mwaa_logging.testing import LocalAWS, RemoteLocalAWS
from mwaa_logging.testing.admin import AdminError
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

GROUP, STREAM = "/test/group", "stream-1"
DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=10)


class FakeClock:
    """Monotonic clock for quotas and fault windows; wall time of events stays real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def events(*messages: str, timestamp: int | None = None) -> list[dict[str, Any]]:
    stamp = now_ms() if timestamp is None else timestamp
    return [{"timestamp": stamp, "message": message} for message in messages]


def raw_logs_client(aws: LocalAWS) -> Any:
    """No client-side validation, so the server's own checks are what is tested."""
    return aws.client("logs", config=NO_RETRIES.merge(Config(parameter_validation=False)))


@pytest.fixture
def stream(logs_client: Any) -> tuple[str, str]:
    logs_client.create_log_group(logGroupName=GROUP)
    logs_client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    return GROUP, STREAM


def put(client: Any, batch: list[dict[str, Any]], group: str = GROUP, stream: str = STREAM) -> Any:
    return client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


# -- PutLogEvents rules -------------------------------------------------------------------------

def test_valid_batch_is_stored_and_readable_through_boto3(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    stamp = now_ms()
    response = put(logs_client, [{"timestamp": stamp + i, "message": f"line {i} é"} for i in range(3)])
    assert "rejectedLogEventsInfo" not in response
    assert local_aws.events(*stream) == [(stamp + i, f"line {i} é") for i in range(3)]
    read = logs_client.get_log_events(logGroupName=GROUP, logStreamName=STREAM, startFromHead=True)
    assert [event["message"] for event in read["events"]] == ["line 0 é", "line 1 é", "line 2 é"]
    found = logs_client.filter_log_events(logGroupName=GROUP, filterPattern="line")
    assert len(found["events"]) == 3
    described = logs_client.describe_log_streams(logGroupName=GROUP)["logStreams"][0]
    assert described["firstEventTimestamp"] == stamp and described["lastEventTimestamp"] == stamp + 2
    stats = local_aws.stats()
    assert (stats.puts_ok, stats.events_accepted, stats.invalid) == (1, 3, 0)


def test_full_10000_event_batch_at_the_byte_limit_is_accepted(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    # 10,000 * (78 + 26) = 1,040,000 bytes; one last message fills the batch to exactly 1,048,576.
    batch = events(*["x" * 78] * 9_999)
    batch.append(events("y" * (1_048_576 - 9_999 * 104 - 26))[0])
    put(logs_client, batch)
    assert len(local_aws.events(*stream)) == 10_000


@pytest.mark.parametrize(
    ("batch", "message_part"),
    [
        pytest.param([], "Member must have length greater than or equal to 1", id="no-events"),
        pytest.param(events(*["x"] * 10_001), "less than or equal to 10000", id="10001-events"),
        pytest.param(events("a", ""), "logEvents.2.member.message", id="empty-message"),
        pytest.param(
            events("x" * 1_048_551), "Log event too large: 1048577 bytes exceeds limit of 1048576",
            id="event-too-large",
        ),
        pytest.param(events(*["x" * 79] * 10_000), "Upload too large: 1050000 bytes", id="batch-too-large"),
        pytest.param(events(*["é" * 40] * 10_000), "Upload too large: 1060000 bytes", id="utf8-counted"),
    ],
)
def test_each_broken_rule_fails_the_whole_call_like_aws(
    local_aws: LocalAWS, stream: tuple[str, str], batch: list[dict[str, Any]], message_part: str
) -> None:
    status, code, message = error_of(lambda: put(raw_logs_client(local_aws), batch))
    assert (status, code) == (400, "InvalidParameterException")
    assert message_part in message
    assert local_aws.events(*stream) == []
    stats = local_aws.stats()
    assert stats.invalid == 1
    assert stats.last_invalid == f"InvalidParameterException: {message}"


def test_out_of_order_events_fail_the_call(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    stamp = now_ms()
    batch = [{"timestamp": stamp, "message": "b"}, {"timestamp": stamp - 1, "message": "a"}]
    assert error_of(lambda: put(logs_client, batch)) == (
        400, "InvalidParameterException",
        "Log events in a single PutLogEvents request must be in chronological order.",
    )


def test_accepted_events_spanning_more_than_24_hours_fail_the_call(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    stamp = now_ms()
    batch = [{"timestamp": stamp - 25 * HOUR_MS, "message": "a"}, {"timestamp": stamp, "message": "b"}]
    status, code, message = error_of(lambda: put(logs_client, batch))
    assert (status, code) == (400, "InvalidParameterException")
    assert "cannot span more than 24 hours" in message
    assert local_aws.events(*stream) == []


def test_too_old_and_too_new_events_are_rejected_with_exact_indices(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    stamp = now_ms()
    batch = [
        {"timestamp": stamp - 15 * DAY_MS, "message": "old 0"},
        {"timestamp": stamp - 14 * DAY_MS - HOUR_MS, "message": "old 1"},
        {"timestamp": stamp - HOUR_MS, "message": "kept 2"},
        {"timestamp": stamp, "message": "kept 3"},
        {"timestamp": stamp + 3 * HOUR_MS, "message": "new 4"},
    ]
    response = put(logs_client, batch)
    assert response["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 4}
    assert local_aws.messages(*stream) == ["kept 2", "kept 3"]
    stats = local_aws.stats()
    assert (stats.events_accepted, stats.events_rejected, stats.invalid) == (2, 3, 0)


def test_events_older_than_the_retention_are_expired(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    logs_client.put_retention_policy(logGroupName=GROUP, retentionInDays=1)
    stamp = now_ms()
    batch = [
        {"timestamp": stamp - 3 * DAY_MS, "message": "expired 0"},
        {"timestamp": stamp - 2 * DAY_MS, "message": "expired 1"},
        {"timestamp": stamp, "message": "kept"},
    ]
    assert put(logs_client, batch)["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 2}
    assert local_aws.messages(*stream) == ["kept"]


def test_missing_group_or_stream_is_resource_not_found(local_aws: LocalAWS, logs_client: Any) -> None:
    assert error_of(lambda: put(logs_client, events("x"), group="nope")) == (
        400, "ResourceNotFoundException", "The specified log group does not exist.")
    logs_client.create_log_group(logGroupName="g")
    assert error_of(lambda: put(logs_client, events("x"), group="g", stream="nope")) == (
        400, "ResourceNotFoundException", "The specified log stream does not exist.")
    assert local_aws.stats().not_found == 2


@pytest.mark.parametrize(
    ("api", "request_", "where"),
    [
        pytest.param("create_log_group", {"logGroupName": "bad group!"}, "logGroupName", id="group-pattern"),
        pytest.param("create_log_stream", {"logGroupName": GROUP, "logStreamName": "a:b"}, "logStreamName",
                     id="stream-colon"),
        pytest.param("create_log_stream", {"logGroupName": GROUP, "logStreamName": "a*b"}, "logStreamName",
                     id="stream-star"),
        pytest.param("create_log_stream", {"logGroupName": GROUP, "logStreamName": "s" * 513}, "logStreamName",
                     id="stream-513"),
        pytest.param("put_retention_policy", {"logGroupName": GROUP, "retentionInDays": 2}, "retentionInDays",
                     id="retention-not-offered"),
        pytest.param("put_log_events", {"logGroupName": GROUP, "logStreamName": "a:b", "logEvents": events("x")},
                     "logStreamName", id="put-stream-colon"),
    ],
)
def test_names_and_retentions_aws_refuses_are_refused(
    local_aws: LocalAWS, stream: tuple[str, str], api: str, request_: dict[str, Any], where: str
) -> None:
    """The service model's name patterns and lengths and the retention values (moto accepts any of them, so a
    name CloudWatch refuses passed every test here)."""
    status, code, message = error_of(lambda: getattr(raw_logs_client(local_aws), api)(**request_))
    assert (status, code) == (400, "InvalidParameterException")
    assert f"at '{where}' failed to satisfy constraint" in message
    assert local_aws.streams() == {GROUP: [STREAM]}
    assert local_aws.stats().invalid == 1


# -- gzip ----------------------------------------------------------------------------------------

def gzip_before_sign(request: Any, **_: Any) -> None:
    request.data = gzip.compress(request.body)
    request.headers["Content-Encoding"] = "gzip"


def test_gzip_bodies_are_decoded_and_counted(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    logs_client.meta.events.register("before-sign.cloudwatch-logs.PutLogEvents", gzip_before_sign)
    put(logs_client, events(*[f"compressible line {i:05d} " * 4 for i in range(2000)]))
    stats = local_aws.stats()
    assert (stats.gzip_bodies, stats.events_accepted) == (1, 2000)
    assert stats.plain_bodies == 2  # CreateLogGroup, CreateLogStream
    assert stats.bytes_received < 2000 * 90 / 4
    assert local_aws.messages(*stream)[-1] == "compressible line 01999 " * 4


def test_a_body_that_is_not_gzip_is_a_serialization_error(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    def fake_gzip(request: Any, **_: Any) -> None:
        request.headers["Content-Encoding"] = "gzip"

    logs_client.meta.events.register("before-sign.cloudwatch-logs.PutLogEvents", fake_gzip)
    assert error_of(lambda: put(logs_client, events("x")))[:2] == (400, "SerializationException")


# -- quotas --------------------------------------------------------------------------------------

def test_put_quota_is_shared_by_every_client_and_refills_with_time(aws_test_env: None) -> None:
    clock = FakeClock()
    with LocalAWS(put_quota_tps=4, clock=clock) as aws:
        clients = [aws.client("logs", config=NO_RETRIES) for _ in range(2)]
        clients[0].create_log_group(logGroupName=GROUP)
        clients[0].create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
        outcomes = []
        for index in range(8):
            try:
                put(clients[index % 2], events(f"call {index}"))
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"] + ": " + error.response["Error"]["Message"])
        assert outcomes == ["ok"] * 4 + ["ThrottlingException: Rate exceeded"] * 4
        clock.now += 0.5  # two tokens back
        put(clients[1], events("later 1"))
        put(clients[1], events("later 2"))
        assert error_of(lambda: put(clients[0], events("x")))[:2] == (400, "ThrottlingException")
        stats = aws.stats()
        assert (stats.throttled, stats.throttled_by_quota, stats.puts_ok) == (5, 5, 6)
        assert len(aws.events(GROUP, STREAM)) == 6


def test_create_quotas_when_enabled(aws_test_env: None) -> None:
    with LocalAWS(create_quotas=True, clock=FakeClock()) as aws:
        client = aws.client("logs", config=NO_RETRIES)
        for index in range(10):
            client.create_log_group(logGroupName=f"g{index}")
        assert error_of(lambda: client.create_log_group(logGroupName="g10"))[1] == "ThrottlingException"
        for index in range(50):
            client.create_log_stream(logGroupName="g0", logStreamName=f"s{index}")
        assert error_of(lambda: client.create_log_stream(logGroupName="g0", logStreamName="s50"))[1] == (
            "ThrottlingException")
        aws.set_quota(None)
        client.create_log_group(logGroupName="g10")


# -- faults --------------------------------------------------------------------------------------

def test_throttle_window_throttles_every_put_until_it_ends(
    aws_test_env: None,
) -> None:
    clock = FakeClock()
    with LocalAWS(clock=clock) as aws:
        client = aws.client("logs", config=NO_RETRIES)
        client.create_log_group(logGroupName=GROUP)
        client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
        aws.faults.throttle_for(30)
        for _ in range(3):
            assert error_of(lambda: put(client, events("x"))) == (400, "ThrottlingException", "Rate exceeded")
        client.create_log_stream(logGroupName=GROUP, logStreamName="other")  # other APIs unaffected
        clock.now += 30
        put(client, events("after"))
        assert aws.messages(GROUP, STREAM) == ["after"]
        assert aws.stats().throttled == 3


def test_unavailable_fault_answers_503_for_the_next_n_calls(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    local_aws.faults.inject("unavailable", count=2)
    for _ in range(2):
        assert error_of(lambda: put(logs_client, events("x")))[:2] == (503, "ServiceUnavailableException")
    put(logs_client, events("ok"))
    assert local_aws.messages(*stream) == ["ok"]
    assert local_aws.stats().unavailable == 2


def test_dropped_connection_stores_nothing(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    local_aws.faults.inject("drop", count=1)
    with pytest.raises(ConnectionClosedError):
        put(logs_client, events("lost"))
    put(logs_client, events("ok"))
    assert local_aws.messages(*stream) == ["ok"]
    assert local_aws.stats().dropped == 1


def test_lost_reply_stores_the_events_but_answers_nothing(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    local_aws.faults.inject("lost_reply", count=1)
    with pytest.raises(ConnectionClosedError):
        put(logs_client, events("stored anyway"))
    assert local_aws.messages(*stream) == ["stored anyway"]
    assert local_aws.stats().lost_replies == 1


def test_latency_delays_the_answer(local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]) -> None:
    local_aws.faults.inject("latency", delay=0.3, count=1)
    started = time.monotonic()
    put(logs_client, events("slow"))
    assert time.monotonic() - started >= 0.3
    put(logs_client, events("not delayed"))
    assert local_aws.stats().delayed == 1
    assert local_aws.messages(*stream) == ["slow", "not delayed"]


def start_call(call: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_hang_holds_the_call_until_faults_are_cleared(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    local_aws.faults.inject("hang", count=1)
    thread, outcome = start_call(lambda: put(logs_client, events("hung")))
    wait_until(lambda: local_aws.stats().hung == 1)
    thread.join(0.3)
    assert thread.is_alive()  # still waiting for an answer
    local_aws.faults.clear()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], ConnectionClosedError)
    assert local_aws.events(*stream) == []


def test_stop_releases_hung_calls_and_joins_its_threads(aws_test_env: None) -> None:
    aws = LocalAWS().start()
    client = aws.client("logs", config=NO_RETRIES.merge(Config(read_timeout=30)))
    client.create_log_group(logGroupName=GROUP)
    client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    aws.faults.inject("hang")
    calls = [start_call(lambda: put(client, events("hung"))) for _ in range(3)]
    wait_until(lambda: aws.stats().hung == 3)
    # An idle connection that never sends a request must not block stop() either.
    idle = urllib3.connection.HTTPConnection("127.0.0.1", aws.port)
    idle.connect()
    threads_before = threading.active_count()
    started = time.monotonic()
    aws.stop()
    assert time.monotonic() - started < 5
    for thread, outcome in calls:
        thread.join(5)
        assert not thread.is_alive()
        assert isinstance(outcome[0], ConnectionClosedError)
    assert threading.active_count() <= threads_before - 3
    assert not any(t.name == f"local-aws-{aws.port}" for t in threading.enumerate())
    with pytest.raises(EndpointConnectionError):
        client.describe_log_groups()
    idle.close()


def test_probability_fault_fails_some_calls(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    local_aws.faults.inject("unavailable", probability=0.5)
    failures = 0
    for _ in range(40):
        try:
            put(logs_client, events("x"))
        except ClientError:
            failures += 1
    assert 5 <= failures <= 35
    assert local_aws.stats().unavailable == failures
    assert len(local_aws.events(*stream)) == 40 - failures


# -- admin API, stats, isolation -----------------------------------------------------------------

def test_admin_http_api_controls_faults_quota_and_reads_stats_and_events(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    remote = RemoteLocalAWS(local_aws.url)
    assert remote.health()["ok"] is True
    remote.inject("unavailable", count=1)
    assert [rule["kind"] for rule in remote.faults()] == ["unavailable"]
    assert error_of(lambda: put(logs_client, events("x")))[0] == 503
    throttle = remote.throttle_for(60)
    assert error_of(lambda: put(logs_client, events("x")))[1] == "ThrottlingException"
    others = remote.inject("latency", delay=0.01)
    remote.remove_fault(throttle.id)  # one client's rule goes, another's stays
    assert [rule["id"] for rule in remote.faults()] == [others.id]
    remote.clear_faults()
    put(logs_client, events("a", "b"))
    assert remote.events(*stream) == [(ts, m) for ts, m in local_aws.events(*stream)]
    assert [m for _, m in remote.events(*stream)] == ["a", "b"]
    assert remote.streams() == {GROUP: [STREAM]}
    assert remote.set_quota(7.0) == {"PutLogEvents": 7.0}
    assert local_aws.quotas.limits() == {"PutLogEvents": 7.0}
    stats = remote.stats()
    assert stats == local_aws.stats()
    assert (stats.unavailable, stats.throttled, stats.events_accepted) == (1, 1, 2)
    remote.reset_stats()
    assert remote.stats().calls == {}
    with pytest.raises(AdminError, match="404"):
        remote.events(GROUP, "missing")
    refused = urllib3.request("POST", f"{local_aws.url}/_local_aws/faults", json={"kind": "no-such-fault"})
    assert refused.status == 400 and b"no-such-fault" in refused.data


def test_stats_count_calls_bytes_and_the_put_rate(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    for index in range(5):
        put(logs_client, events(f"event {index}"))
    logs_client.get_log_events(logGroupName=GROUP, logStreamName=STREAM)
    stats = local_aws.stats()
    assert stats.calls == {"CreateLogGroup": 1, "CreateLogStream": 1, "PutLogEvents": 5, "GetLogEvents": 1}
    assert stats.puts_ok == 5 and stats.events_accepted == 5
    assert 1 <= stats.put_peak_1s <= 5
    assert sum(stats.put_timeline) == 5
    assert stats.bytes_received > 5 * len('{"timestamp": 0, "message": "event 0"}')
    assert (stats.invalid, stats.throttled, stats.dropped) == (0, 0, 0)


def test_connections_are_kept_alive_and_a_body_left_unread_never_leaks_into_the_next_request(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    local_aws.reset_stats()
    for index in range(5):
        put(logs_client, events(f"event {index}"))
    s3 = local_aws.client("s3", config=NO_RETRIES)
    with pytest.raises(ClientError):  # answered without reading the body
        s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x" * 100_000)
    s3.create_bucket(Bucket="kept-alive")
    s3.put_object(Bucket="kept-alive", Key="k", Body=b"y" * 100_000)
    assert s3.get_object(Bucket="kept-alive", Key="k")["Body"].read() == b"y" * 100_000
    assert local_aws.messages(GROUP, STREAM) == [f"event {index}" for index in range(5)]
    # as with AWS: the logs client kept the connection it opened before the reset, the S3 client opened one
    assert local_aws.stats().connections == 1


def test_instances_do_not_share_data_and_stop_forgets_it(aws_test_env: None) -> None:
    with LocalAWS() as first, LocalAWS() as second:
        for aws, message in ((first, "one"), (second, "two")):
            client = aws.client("logs")
            client.create_log_group(logGroupName=GROUP)
            client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
            put(client, events(message))
        assert first.messages(GROUP, STREAM) == ["one"]
        assert second.messages(GROUP, STREAM) == ["two"]
        s3 = first.client("s3")
        s3.create_bucket(Bucket="spill-bucket")
        s3.put_object(Bucket="spill-bucket", Key="k.gz", Body=b"\x1f\x8b data", ContentEncoding="gzip")
        obj = s3.get_object(Bucket="spill-bucket", Key="k.gz")
        assert (obj["Body"].read(), obj["ContentEncoding"]) == (b"\x1f\x8b data", "gzip")
    with LocalAWS() as third:  # the bucket name is free again
        third.client("s3").create_bucket(Bucket="spill-bucket")
        assert third.streams() == {}


def test_endpoint_environment_variables_reach_it(
    local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    client = boto3.client("logs")
    client.create_log_group(logGroupName="via-env")
    assert "via-env" in local_aws.streams()
    boto3.client("s3").create_bucket(Bucket="via-env")


def test_fixture_starts_fast() -> None:
    LocalAWS().start().stop()  # warm imports
    started = time.perf_counter()
    aws = LocalAWS().start()
    elapsed = time.perf_counter() - started
    aws.stop()
    assert elapsed < 0.5


# -- CLI ------------------------------------------------------------------------------------------

@pytest.fixture
def cli_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mwaa_logging.testing.cli", "--put-quota", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_cli_serves_in_the_foreground_until_terminated(cli_server: tuple[subprocess.Popen[str], str]) -> None:
    process, url = cli_server
    assert url.startswith("http://127.0.0.1:")
    client = boto3.client("logs", endpoint_url=url, config=NO_RETRIES)
    client.create_log_group(logGroupName=GROUP)
    client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    outcomes = []
    for _ in range(3):
        try:
            put(client, events("x"))
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes == ["ok", "ok", "ThrottlingException"]
    assert RemoteLocalAWS(url).stats().throttled_by_quota == 1
    process.terminate()
    assert process.wait(10) == 0


def test_get_log_events_end_time_is_exclusive_like_aws(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    stamp = now_ms()
    put(logs_client, [{"timestamp": stamp + i, "message": str(i)} for i in range(4)])
    page = logs_client.get_log_events(
        logGroupName=GROUP, logStreamName=STREAM, startTime=stamp + 1, endTime=stamp + 3, startFromHead=True
    )
    assert [event["message"] for event in page["events"]] == ["1", "2"]
    found = logs_client.filter_log_events(logGroupName=GROUP, startTime=stamp + 1, endTime=stamp + 3)
    assert [event["message"] for event in found["events"]] == ["1", "2", "3"]  # inclusive, as documented


def test_s3_faults_answer_like_s3(local_aws: LocalAWS, s3_client: Any) -> None:
    s3 = local_aws.client("s3", config=NO_RETRIES)
    s3.create_bucket(Bucket="spill")
    local_aws.faults.inject("unavailable", api="s3:PUT", count=1)
    local_aws.faults.inject("throttle", api="s3:PUT", count=1)
    assert error_of(lambda: s3.put_object(Bucket="spill", Key="a", Body=b"1"))[:2] == (503, "ServiceUnavailable")
    assert error_of(lambda: s3.put_object(Bucket="spill", Key="a", Body=b"1"))[:2] == (503, "SlowDown")
    s3.put_object(Bucket="spill", Key="a", Body=b"1")
    assert s3.get_object(Bucket="spill", Key="a")["Body"].read() == b"1"
    stats = local_aws.stats()
    assert (stats.calls["s3:PUT"], stats.calls["s3:GET"], stats.throttled, stats.unavailable) == (4, 1, 1, 1)


def test_paging_through_many_stored_events_with_boto3(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    stamp = now_ms()
    for batch_index in range(3):
        put(logs_client, [{"timestamp": stamp + batch_index, "message": f"{batch_index}:{i}"} for i in range(9000)])
    seen: list[str] = []
    token = None
    while True:
        kwargs = {"nextToken": token} if token else {"startFromHead": True}
        page = logs_client.get_log_events(logGroupName=GROUP, logStreamName=STREAM, **kwargs)
        seen.extend(event["message"] for event in page["events"])
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert seen == [f"{b}:{i}" for b in range(3) for i in range(9000)]
    assert local_aws.stats().events_accepted == 27_000


def test_get_log_events_answers_pages_of_at_most_1_mb_like_aws(
    local_aws: LocalAWS, logs_client: Any, stream: tuple[str, str]
) -> None:
    """moto pages by count only (10,000 events, however large): 5 events of 600 KB came back as one 3 MB page,
    so a reader's paging through big events was never exercised here. AWS answers what fits in 1 MB."""
    from mwaa_logging.reader import read_stream

    stamp = now_ms() - 60_000
    big = [f"{i} " + "x" * 600_000 for i in range(5)]
    for i, message in enumerate(big):
        put(logs_client, events(message, timestamp=stamp + i))
    put(logs_client, events(*(f"small {i}" for i in range(20)), timestamp=stamp + 10))

    def pages(**start: Any) -> list[list[str]]:
        found, token = [], None
        while True:
            page = logs_client.get_log_events(logGroupName=GROUP, logStreamName=STREAM, **start,
                                              **({"nextToken": token} if token else {}))
            found.append([event["message"][:8] for event in page["events"]])
            key = "nextForwardToken" if start.get("startFromHead") else "nextBackwardToken"
            if page[key] == token:
                return found[:-1] if not found[-1] else found
            token = page[key]

    heads = [message[:8] for message in big]
    smalls = [f"small {i}" for i in range(20)]
    assert pages(startFromHead=True) == [[head] for head in heads[:4]] + [[heads[4], *smalls]]
    assert pages(startFromHead=False) == [[*heads[4:], *smalls], *([head] for head in reversed(heads[:4]))]
    assert pages(startFromHead=True, limit=3) == [[head] for head in heads[:4]] + [
        [heads[4], *smalls[:2]], *(smalls[i:i + 3] for i in range(2, 20, 3))]
    read = read_stream(GROUP, STREAM, logs_client=logs_client, spill_to=[])  # CloudWatch only: no spill searched
    assert [e.message for e in read] == [*big, *smalls]


def test_its_environment_puts_botocore_in_its_region() -> None:
    """botocore reads AWS_DEFAULT_REGION, not AWS_REGION: a process given env() must use the endpoint's region."""
    with LocalAWS(region="eu-west-2") as aws:
        code = "import boto3; print(boto3.client('logs').meta.region_name)"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        done = subprocess.run([sys.executable, "-c", code], env={**environ, **aws.env()}, capture_output=True,
                              text=True, check=True, timeout=60)
    assert done.stdout.strip() == "eu-west-2"


def test_an_ipv6_loopback_endpoint_has_a_url_botocore_takes() -> None:
    try:
        aws = LocalAWS(host="::1").start()
    except OSError as error:  # no IPv6 on this machine
        pytest.skip(f"cannot listen on ::1: {error}")
    try:
        assert aws.url.startswith("http://[::1]:")  # http://::1:PORT was refused by botocore (Invalid endpoint)
        logs = aws.client("logs")
        logs.create_log_group(logGroupName="v6")
        assert [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]] == ["v6"]
    finally:
        aws.stop()


FORKED_CHILD_LEAVES_THE_BLOCK = """
import os, sys
from mwaa_logging.testing import LocalAWS
with LocalAWS() as aws:
    if os.fork() == 0:
        sys.exit(0)  # leaves the `with` block in the child
    _, status = os.wait()
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert aws.running and aws.client("logs").describe_log_groups()["logGroups"] == []
print("served on")
"""


def test_a_forked_child_leaving_the_with_block_does_not_hang_nor_stop_the_parents_server() -> None:
    """The child's stop() waited forever in server.shutdown() for a serving thread that exists only in the parent."""
    environ = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}
    process = subprocess.Popen([sys.executable, "-c", FORKED_CHILD_LEAVES_THE_BLOCK], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environ, start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a hung child too
    assert process.returncode == 0, err
    assert out.strip() == "served on"
