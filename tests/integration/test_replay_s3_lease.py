"""Two replays of one S3 prefix at once, over moto's S3 server: a lease object (conditional writes) per stream
prefix keeps them from putting the same lines twice; a killed run's lease expires."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError
from rich.console import Console

from mwaa_logging.aws.clients import make_logs_client
from mwaa_logging.aws.s3lease import S3Lease
from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.aws.transport import BotocoreTransport
from mwaa_logging.budget import BudgetConfig
from mwaa_logging.budgets.process import ProcessBudget
from mwaa_logging.replay import LOCK_NAME, Replayer, S3Source, summary_table
from mwaa_logging.spill.layout import stream_prefix
from mwaa_logging.spillformat import SpillRecord
from mwaa_logging.testing.local_aws import LocalAWS

BUCKET, PREFIX = "spill", "env"


def records(stream: str, count: int, part: int = 0) -> list[SpillRecord]:
    start = int(time.time() * 1000) - 60_000 + part * 1_000
    return [SpillRecord("g", stream, start + i, f"{stream}|{part}|{i:04d}", "max_latency", "Throttling")
            for i in range(count)]


@pytest.fixture
def s3(aws_in_env: LocalAWS) -> Any:
    client = aws_in_env.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def replayer(aws: LocalAWS, rate: float = 1000) -> Replayer:
    return Replayer(BotocoreTransport(make_logs_client(endpoint_url=aws.url)), ProcessBudget(BudgetConfig(rate=rate)))


def stream_prefix_of(stream: str) -> str:
    return f"{PREFIX}/{stream_prefix('g', stream)}".rstrip("/")


def leases(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) if o["Key"].endswith(LOCK_NAME)]


def test_a_stream_prefix_another_replay_holds_is_skipped_then_replayed_once_it_lets_go(
    aws_in_env: LocalAWS, s3: Any
) -> None:
    sink = S3SpillSink(BUCKET, PREFIX, client=s3)
    for stream in ("held", "free"):
        sink.write(records(stream, 40))
    other = S3Lease(s3, BUCKET, f"{stream_prefix_of('held')}/{LOCK_NAME}")
    assert other.acquire() and other.locked
    try:
        first = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3))
        assert (first.objects_replayed, first.objects_skipped, first.objects_failed) == (1, 1, 0)
        assert aws_in_env.streams() == {"g": ["free"]}
        console = Console(record=True, width=300)
        console.print(summary_table(first, f"s3://{BUCKET}/{PREFIX}"))
        assert ("objects skipped (another replay has or had them; a replay killed on S3 holds its streams 10 min "
                "after its last renewal): 1") in console.export_text()
    finally:
        other.release()
    assert leases(s3) == []  # each run removes its own
    again = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3))
    assert (again.objects_replayed, again.objects_skipped, again.objects_failed) == (1, 0, 0)
    for stream in ("held", "free"):
        assert aws_in_env.messages("g", stream) == [r.message for r in records(stream, 40)]
    assert leases(s3) == []


def test_two_replays_of_one_prefix_at_once_put_every_line_once(aws_in_env: LocalAWS, s3: Any) -> None:
    """Both list every object; each stream prefix is put by whichever run takes its lease first. The other run
    skips it, or (taking the lease once the first let go) finds its objects moved to @replayed: skipped, not
    failed. Without the lease, each line went in twice."""
    sink = S3SpillSink(BUCKET, PREFIX, client=s3)
    streams = [f"s{n}" for n in range(6)]
    for stream in streams:
        for part in range(3):  # several objects a stream: a unit at a time, 20 calls/s, so the runs overlap
            sink.write(records(stream, 30, part))
    summaries = []
    start = threading.Barrier(2)

    def run() -> None:
        source = S3Source(f"s3://{BUCKET}/{PREFIX}", client=aws_in_env.client("s3"))
        listed = list(source.objects())
        start.wait()
        summaries.append(replayer(aws_in_env, rate=20).run(source, objects=listed))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(summaries) == 2
    assert sum(s.objects_replayed for s in summaries) == 18
    assert sum(s.objects_failed for s in summaries) == 0
    assert sum(s.objects_skipped for s in summaries) == 18
    for stream in streams:
        expected = sorted(r.message for part in range(3) for r in records(stream, 30, part))
        assert sorted(aws_in_env.messages("g", stream)) == expected  # each line once
    assert leases(s3) == []


def write_lease(s3: Any, stream: str, expires: float) -> str:
    key = f"{stream_prefix_of(stream)}/{LOCK_NAME}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=orjson.dumps({"holder": "killed:1", "expires": expires}))
    return key


def test_a_killed_runs_lease_is_taken_over_once_it_expired_not_before(aws_in_env: LocalAWS, s3: Any) -> None:
    sink = S3SpillSink(BUCKET, PREFIX, client=s3)
    for stream in ("expired", "live"):
        sink.write(records(stream, 10))
    write_lease(s3, "expired", time.time() - 1)
    live = write_lease(s3, "live", time.time() + 600)
    summary = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3))
    assert (summary.objects_replayed, summary.objects_skipped, summary.objects_failed) == (1, 1, 0)
    assert aws_in_env.streams() == {"g": ["expired"]}
    assert leases(s3) == [live]  # the taken-over lease was removed at the end; the live one left to its holder


def test_a_held_lease_is_renewed_so_a_long_replay_keeps_it(s3: Any) -> None:
    key = f"{PREFIX}/g/s/{LOCK_NAME}"
    holder = S3Lease(s3, BUCKET, key, lease_seconds=2.0)
    assert holder.acquire()
    try:
        first = orjson.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["expires"]
        deadline = time.monotonic() + 10
        while orjson.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["expires"] == first:
            assert time.monotonic() < deadline, "the lease was not renewed"
            time.sleep(0.1)
        # Past the first expiry: still this run's, because it was renewed.
        while time.time() < first + 0.5:
            time.sleep(0.1)
        assert not S3Lease(s3, BUCKET, key).acquire()
    finally:
        holder.release()
    assert S3Lease(s3, BUCKET, key).acquire()


class _RefusingClient:
    """A store without conditional writes (NotImplemented), or a role that may not write the key."""

    def __init__(self, code: str) -> None:
        self.code = code

    def put_object(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "PutObject")


@pytest.mark.parametrize("code", ["NotImplemented", "AccessDenied"])
def test_no_lease_where_the_store_refuses_it_means_replaying_as_before(code: str) -> None:
    lease = S3Lease(_RefusingClient(code), BUCKET, "k")
    assert lease.acquire() and not lease.locked
    assert lease.unavailable is not None and code in lease.unavailable
    lease.release()  # nothing to delete


class _NoConditionalWrites:
    """moto's S3 as a store that refuses conditional writes (some S3-compatible stores answer 501)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **params: Any) -> Any:
        if "IfNoneMatch" in params or "IfMatch" in params:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "conditional writes"},
                               "ResponseMetadata": {"HTTPStatusCode": 501}}, "PutObject")
        return self._client.put_object(**params)


def test_a_store_without_conditional_writes_is_replayed_as_before_and_said_once(
    aws_in_env: LocalAWS, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = S3SpillSink(BUCKET, PREFIX, client=s3)
    for stream in ("a", "b"):
        sink.write(records(stream, 10))
    summary = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=_NoConditionalWrites(s3)))
    assert (summary.objects_replayed, summary.objects_failed) == (2, 0)
    said = capsys.readouterr().err
    assert said.count("replay: no lease at s3://spill/env/") == 1 and "NotImplemented" in said
    assert "would put the same lines again" in said
