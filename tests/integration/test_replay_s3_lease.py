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


def spill(s3: Any, streams: tuple[str, ...], count: int) -> None:
    sink = S3SpillSink(BUCKET, PREFIX, client=s3)
    for stream in streams:
        sink.write(records(stream, count))


def leases(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) if o["Key"].endswith(LOCK_NAME)]


def test_a_stream_prefix_another_replay_holds_is_skipped_then_replayed_once_it_lets_go(
    aws_in_env: LocalAWS, s3: Any
) -> None:
    spill(s3, ("held", "free"), 40)
    other = S3Lease(s3, BUCKET, f"{stream_prefix_of('held')}/{LOCK_NAME}")
    assert other.acquire() and other.locked
    try:
        first = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3))
        assert (first.objects_replayed, first.objects_skipped, first.objects_failed) == (1, 1, 0)
        assert aws_in_env.streams() == {"g": ["free"]}
        console = Console(record=True, width=300)
        console.print(summary_table(first, f"s3://{BUCKET}/{PREFIX}"))
        assert ("objects skipped, another replay holds them (not replayed: run again later; a replay killed on S3 "
                "holds its streams 10 min after its last renewal): 1") in " ".join(console.export_text().split())
        assert first.objects_held == 1 and len(first.held) == 1 and "is held by replay " in first.held[0]
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


def write_lease(s3: Any, stream: str, lease_seconds: float) -> str:
    """A lease as a run that was then killed leaves it (no renewal after this write)."""
    key = f"{stream_prefix_of(stream)}/{LOCK_NAME}"
    s3.put_object(Bucket=BUCKET, Key=key,
                  Body=orjson.dumps({"holder": "killed:1", "token": "t", "lease_seconds": lease_seconds}))
    return key


def test_a_killed_runs_lease_is_taken_over_once_it_expired_by_s3s_clock_not_before(
    aws_in_env: LocalAWS, s3: Any
) -> None:
    spill(s3, ("expired", "live"), 10)
    write_lease(s3, "expired", 0.5)
    live = write_lease(s3, "live", 600)
    time.sleep(2.5)  # Last-Modified and Date have whole seconds: 0.5 s is past for sure after 2.5 s
    summary = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3))
    assert (summary.objects_replayed, summary.objects_skipped, summary.objects_failed) == (1, 1, 0)
    assert summary.errors == []  # held by another run: nothing went wrong
    assert aws_in_env.streams() == {"g": ["expired"]}
    assert leases(s3) == [live]  # the taken-over lease was removed at the end; the live one left to its holder


def test_a_held_lease_is_renewed_so_a_long_replay_keeps_it(s3: Any) -> None:
    key = f"{PREFIX}/g/s/{LOCK_NAME}"
    holder = S3Lease(s3, BUCKET, key, lease_seconds=2.0)
    assert holder.acquire() and holder.locked
    try:
        first = s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]  # the body, and so the ETag, stay the same
        deadline = time.monotonic() + 10
        while s3.head_object(Bucket=BUCKET, Key=key)["LastModified"] == first:
            assert time.monotonic() < deadline, "the lease was not renewed"
            time.sleep(0.1)
        time.sleep(2.5)  # past the first write's expiry: still held, because it was renewed
        assert not S3Lease(s3, BUCKET, key).acquire()
        assert holder.lost() is None
    finally:
        holder.release()
    assert S3Lease(s3, BUCKET, key).acquire()


def test_a_holder_knows_when_another_run_took_its_lease_and_leaves_that_runs_lease_alone(s3: Any) -> None:
    key = f"{PREFIX}/g/s/{LOCK_NAME}"
    holder = S3Lease(s3, BUCKET, key, lease_seconds=1.0)
    assert holder.acquire()
    s3.put_object(Bucket=BUCKET, Key=key, Body=orjson.dumps({"token": "other", "lease_seconds": 600}))
    deadline = time.monotonic() + 10
    while holder.lost() is None:
        assert time.monotonic() < deadline, "the holder did not notice"
        time.sleep(0.05)
    assert "another run took the lease" in str(holder.lost())
    holder.release()
    assert orjson.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["token"] == "other"


def test_a_failed_answer_does_not_let_a_run_replay_a_stream_another_run_holds(aws_in_env: LocalAWS) -> None:
    """The replay's own client (no botocore retries): one 503 or a dropped connection on the lease's requests
    used to mean 'this store has no leases' and the stream was put twice."""
    from mwaa_logging.aws.clients import make_s3_client

    s3 = make_s3_client(endpoint_url=aws_in_env.url)
    s3.create_bucket(Bucket=BUCKET)
    S3SpillSink(BUCKET, PREFIX, client=s3).write(records("held", 20))
    other = S3Lease(s3, BUCKET, f"{stream_prefix_of('held')}/{LOCK_NAME}")
    assert other.acquire() and other.locked
    try:
        for kind, api in (("unavailable", "s3:GET"), ("unavailable", "s3:PUT"), ("drop", "s3:GET")):
            source = S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3)
            listed = list(source.objects())  # "s3:GET" faults a listing too
            aws_in_env.faults.inject(kind, api=api, count=1)
            summary = replayer(aws_in_env).run(source, objects=listed)
            assert (summary.objects_replayed, summary.objects_skipped) == (0, 1), (kind, api)
            assert aws_in_env.streams() in ({}, {"g": []}), (kind, api)
    finally:
        other.release()


def test_a_lease_whose_answer_was_lost_is_recognised_as_this_runs(aws_in_env: LocalAWS) -> None:
    """S3 stored the lease but its answer never came: the run finds its own token there, replays, and removes it
    (it had gone on without a lease and left it behind, and the next run skipped the stream for 10 minutes)."""
    from mwaa_logging.aws.clients import make_s3_client

    s3 = make_s3_client(endpoint_url=aws_in_env.url)
    s3.create_bucket(Bucket=BUCKET)
    S3SpillSink(BUCKET, PREFIX, client=s3).write(records("a", 20))
    aws_in_env.faults.inject("lost_reply", api="s3:PUT", count=1)
    summary = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=s3))
    assert (summary.objects_replayed, summary.objects_skipped, summary.objects_failed) == (1, 0, 0)
    assert leases(s3) == []
    assert aws_in_env.messages("g", "a") == [r.message for r in records("a", 20)]


def test_sigterm_ends_a_replay_with_its_leases_released(aws_in_env: LocalAWS, s3: Any) -> None:
    """``timeout``, systemd and container stops send SIGTERM: the run unwinds (exit 143) instead of dying with
    its leases held, which kept other runs off those streams for 10 minutes."""
    import os
    import signal
    import subprocess
    import sys

    sink = S3SpillSink(BUCKET, PREFIX, client=s3)
    for part in range(20):
        sink.write(records("slow", 5, part))
    replay = subprocess.Popen(
        [sys.executable, "-m", "mwaa_logging.cli", "replay", f"s3://{BUCKET}/{PREFIX}", "--endpoint-url",
         aws_in_env.url, "--s3-endpoint-url", aws_in_env.url, "--no-progress", "--rate", "2",
         "--max-objects-per-unit", "1", "--export-rejected", os.devnull],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **aws_in_env.env()})
    try:
        deadline = time.monotonic() + 30
        while not leases(s3):
            assert time.monotonic() < deadline and replay.poll() is None, "no lease was taken"
            time.sleep(0.05)
        replay.send_signal(signal.SIGTERM)
        _, err = replay.communicate(timeout=30)
    finally:
        replay.kill()
    assert replay.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert leases(s3) == []


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


def test_a_stream_whose_claim_is_lost_is_left_for_the_next_run_from_the_next_unit_on(
    aws_in_env: LocalAWS, tmp_path: Any
) -> None:
    """Checked before each unit: units already put stay marked; the rest is not put by a run that may no longer
    be the only one."""
    import contextlib
    from collections.abc import Iterator

    from mwaa_logging.replay import Claim, LocalSource
    from mwaa_logging.spill.local import LocalSpillSink

    checks = iter([None])

    class LosingSource(LocalSource):
        @contextlib.contextmanager
        def claim(self, stream_key: str) -> Iterator[Claim]:
            yield Claim(True, lambda: next(checks, "another run took the lease s3://b/k over"))

    for part in range(3):
        LocalSpillSink(tmp_path).write(records("s", 10, part))
    summary = replayer(aws_in_env).run(LosingSource(tmp_path), max_objects_per_unit=1)
    assert (summary.objects_replayed, summary.objects_skipped, summary.objects_failed) == (1, 2, 0)
    assert len(summary.errors) == 1 and "left for the next run: another run took the lease" in summary.errors[0]
    assert aws_in_env.messages("g", "s") == [r.message for r in records("s", 10, 0)]


def _old_botocore_client() -> Any:
    """The shape of a client whose botocore predates S3 conditional writes (IfMatch on PutObject, DeleteObject)."""
    from types import SimpleNamespace

    members = {"PutObject": {"Bucket": 0, "Key": 0, "IfNoneMatch": 0}, "DeleteObject": {"Bucket": 0, "Key": 0}}
    model = SimpleNamespace(operation_model=lambda name: SimpleNamespace(input_shape=SimpleNamespace(
        members=members[name])))
    return SimpleNamespace(meta=SimpleNamespace(service_model=model))


def test_a_botocore_without_conditional_writes_means_no_lease_said() -> None:
    lease = S3Lease(_old_botocore_client(), BUCKET, "k")
    assert lease.acquire() and not lease.locked
    assert lease.unavailable is not None and "cannot send S3 conditional writes" in lease.unavailable


@pytest.mark.parametrize("kms_key_id", [None, "alias/logs-spill"])
def test_a_lease_is_encrypted_as_the_spill_objects_next_to_it(
    aws_in_env: LocalAWS, s3: Any, kms_key_id: str | None
) -> None:
    """The lease was always written with SSE-S3: a bucket whose policy requires SSE-KMS (as its spill objects use)
    refuses that write, and the replay went on without a lease."""
    from mwaa_logging.replay import S3Source

    S3SpillSink(BUCKET, PREFIX, client=s3, kms_key_id=kms_key_id).write(records("s", 5))
    leases_written: list[dict[str, str]] = []

    def record_lease_writes(request: Any, **_: Any) -> None:
        if request.method == "PUT" and request.url.split("?")[0].endswith(LOCK_NAME):
            headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
            leases_written.append({k: v for k, v in headers.items() if k.startswith("x-amz-server-side-encryption")})

    client = aws_in_env.client("s3")
    client.meta.events.register("before-send.s3.PutObject", record_lease_writes)
    summary = replayer(aws_in_env).run(S3Source(f"s3://{BUCKET}/{PREFIX}", client=client))
    assert summary.objects_replayed == 1 and summary.errors == []
    expected = ({"x-amz-server-side-encryption": "AES256"} if kms_key_id is None else
                {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id})
    assert leases_written and all(headers == expected for headers in leases_written)


def replay_cli(aws: LocalAWS, *extra: str) -> Any:
    """``mwaa-logging replay s3://spill/env`` as a cron job runs it."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "mwaa_logging.cli", "replay", f"s3://{BUCKET}/{PREFIX}", "--endpoint-url", aws.url,
         "--s3-endpoint-url", aws.url, "--no-progress", "--export-rejected", os.devnull, *extra],
        capture_output=True, text=True, env={**os.environ, **aws.env(), "COLUMNS": "300"}, timeout=120)


def test_a_role_that_may_not_delete_marks_its_lease_released_so_the_next_run_is_not_kept_off(
    aws_in_env: LocalAWS, s3: Any
) -> None:
    """Without s3:DeleteObject a run could not delete its lease either: for 10 minutes every run skipped the streams
    and exited 0 (so a job retrying until exit 0 stopped) instead of saying, each run, that it may not delete. The
    lease is now overwritten (If-Match) as released, and the next run takes it at once."""
    spill(s3, ("a", "b", "c"), 20)
    denied = aws_in_env.faults.inject("denied", api="s3:DELETE")
    first = replay_cli(aws_in_env)
    assert first.returncode == 1, first.stderr
    assert first.stderr.count(f"mark s3://{BUCKET}/{PREFIX}/g/") == 3 and "skipped" not in first.stdout
    second = replay_cli(aws_in_env)  # at once: not kept off by the first run's leases
    assert second.returncode == 1, second.stdout + second.stderr
    assert "objects skipped" not in " ".join(second.stdout.split())
    assert second.stderr.count("put by an earlier run (its replayed copy exists), not put again, but it could not be "
                               "removed") == 3
    assert len(leases(s3)) == 3  # left, but released: nothing to warn about
    assert "could not remove the replay lease" not in first.stderr + second.stderr
    for key in leases(s3):
        assert orjson.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["released"] is True
    aws_in_env.faults.remove(denied.id)
    third = replay_cli(aws_in_env)  # may delete now: marks what is left, puts nothing again
    assert third.returncode == 0, third.stdout + third.stderr
    assert leases(s3) == []
    for stream in ("a", "b", "c"):
        assert aws_in_env.messages("g", stream) == [r.message for r in records(stream, 20)]


def test_a_lease_whose_delete_is_refused_can_be_taken_at_once(aws_in_env: LocalAWS, s3: Any) -> None:
    key = f"{PREFIX}/g/s/{LOCK_NAME}"
    holder = S3Lease(s3, BUCKET, key)
    assert holder.acquire() and holder.locked
    aws_in_env.faults.inject("denied", api="s3:DELETE")
    holder.release()
    aws_in_env.faults.clear()
    assert leases(s3) == [key]
    nxt = S3Lease(s3, BUCKET, key)
    assert nxt.acquire() and nxt.locked and nxt.held_by is None
    nxt.release()
    assert leases(s3) == []


def test_streams_a_killed_runs_lease_holds_are_exit_3_with_the_leases_age_and_expiry(
    aws_in_env: LocalAWS, s3: Any
) -> None:
    """A replay killed with -9 leaves its leases for 10 minutes: the next run skipped those streams and exited 0,
    as if every line had been put, so a job retrying until exit 0 stopped with the lines unreplayed."""
    spill(s3, ("held", "free"), 10)
    write_lease(s3, "held", 600)
    run = replay_cli(aws_in_env)
    assert run.returncode == 3, run.stdout + run.stderr
    said = " ".join(run.stderr.split())
    assert (f"replay: skipped 1 objects: s3://{BUCKET}/{stream_prefix_of('held')}/{LOCK_NAME} is held by replay "
            "killed:1, last renewed ") in said
    assert "expires in 9 min" in said or "expires in 10 min 0 s" in said
    table = " ".join(run.stdout.split())
    assert "objects skipped, another replay holds them (not replayed: run again later" in table
    assert aws_in_env.streams() == {"g": ["free"]}
    help_text = " ".join(replay_cli(aws_in_env, "--help").stdout.split())
    assert "3 nothing failed, but streams another replay holds were skipped" in help_text
