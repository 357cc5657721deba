"""S3 spill against moto's S3 server over HTTP: layout, size bounds, encryption, owner check, fallback."""

from __future__ import annotations

import gzip
import itertools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.protocols import SpillError
from mwaa_logging.spill.factory import build_spill_sink
from mwaa_logging.spill.fallback import FallbackSpillSink, PartialSpillError
from mwaa_logging.spill.layout import SUFFIX, stream_prefix
from mwaa_logging.spill.local import LocalSpillSink
from mwaa_logging.spillformat import SpillRecord, decode_records
from mwaa_logging.testing.local_aws import LocalAWS

BUCKET = "spill-bucket"
_accounts = itertools.count(1)
OWNER = "123456789012"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class MotoS3:
    """moto's server app behind a middleware that records requests and can fail chosen ones."""

    endpoint: str
    requests: list[Recorded] = field(default_factory=list)
    fail: Callable[[Recorded], bool] | None = None

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config),
        )

    def puts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PUT" and "x-amz-copy-source" not in r.headers]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_s3(aws_env: None) -> Iterator[MotoS3]:
    app = DomainDispatcherApplication(create_backend_app)
    state = MotoS3(endpoint="")
    account = f"{800_000_000_000 + next(_accounts) * 1000 + os.getpid() % 1000}"

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        headers = {k[5:].replace("_", "-").lower(): str(v)
                   for k, v in environ.items() if k.startswith("HTTP_")}
        seen = Recorded(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), headers)
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = account  # moto's stores are process-wide: keep ours apart
        if not environ.get("PATH_INFO", "").startswith("/moto-api"):
            state.requests.append(seen)
        if state.fail is not None and state.fail(seen):
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"]
        return app(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, middleware, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.endpoint = f"http://127.0.0.1:{server.server_port}"
    state.client().create_bucket(Bucket=BUCKET)
    state.requests.clear()
    try:
        yield state
    finally:
        state.fail = None
        client = state.client()  # bucket names are global in moto, as in S3: leave none behind
        for item in all_objects(client):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)
        server.shutdown()
        thread.join(timeout=10)


def records(
    group: str, stream: str, count: int, start: int = 1_700_000_000_000, size: int = 40
) -> list[SpillRecord]:
    return [SpillRecord(group, stream, start + i, f"line {i:06d} " + "x" * size, "max_latency", "Throttling")
            for i in range(count)]


def all_objects(client: Any, prefix: str = "") -> list[dict[str, Any]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item for page in pages for item in page.get("Contents", [])]


def test_objects_follow_the_shared_layout_and_round_trip(moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    sink = S3SpillSink(BUCKET, "spill/env", client=client)
    batch = records("/aws/airflow/Task", "dag=d/run=r/task=t/1.log", 50) + records("other", "s", 3)
    location = sink.write(batch)

    keys = [o["Key"] for o in all_objects(client)]
    assert len(keys) == 2
    task_prefix = "spill/env/" + stream_prefix("/aws/airflow/Task", "dag=d/run=r/task=t/1.log")
    task_key = next(k for k in keys if k.startswith(task_prefix))
    assert task_key.endswith(SUFFIX) and task_key.count("/") == 4
    assert location == "s3://spill-bucket/spill/env"  # several streams: the sink
    body = client.get_object(Bucket=BUCKET, Key=task_key)["Body"].read()
    lines = [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
    assert lines[0] == {"logGroupName": "/aws/airflow/Task", "logStreamName": "dag=d/run=r/task=t/1.log",
                        "timestamp": 1_700_000_000_000, "message": "line 000000 " + "x" * 40,
                        "reason": "max_latency", "detail": "Throttling"}
    listed = list(sink.stream_objects("/aws/airflow/Task", "dag=d/run=r/task=t/1.log"))
    assert [o.key for o in listed] == [task_key]
    assert sink.read_object(listed[0]) == batch[:50]
    assert len(moto_s3.puts()) == 2  # one PUT per stream, not per event

    single = sink.write(records("other", "s", 1))
    assert single.startswith("s3://spill-bucket/spill/env/other/s/") and single.endswith(SUFFIX)


def test_one_call_is_cut_into_bounded_objects_sorted_per_stream(moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    bound = 64 * 1024
    sink = S3SpillSink(BUCKET, "p", client=client, max_object_bytes=bound)
    batch = records("g", "s", 3000, size=200)
    shuffled = batch[1::2] + batch[0::2]
    sink.write(shuffled)

    objects = sorted(all_objects(client), key=lambda o: o["Key"])
    assert len(objects) >= 3000 * 240 // bound
    chunks: list[list[SpillRecord]] = []
    for obj in objects:
        raw = gzip.decompress(client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
        assert len(raw) <= bound
        chunks.append(list(decode_records(raw)))
    chunks.sort(key=lambda chunk: chunk[0].timestamp)
    assert [r for chunk in chunks for r in chunk] == batch  # each object sorted, no overlap, none lost


@pytest.mark.parametrize("given", [False, True], ids=["built", "given"])
def test_a_forked_child_spills_over_its_own_connection(local_aws: LocalAWS, given: bool) -> None:
    # Over the parent's kept-alive connection, a child's PUTs interleaved with the parent's: S3 stored objects
    # that failed their checksum on read and read back some lines twice.
    local_aws.client("s3").create_bucket(Bucket=BUCKET)
    options: dict[str, Any] = ({"client": local_aws.client("s3")} if given
                               else {"client_factory": lambda: local_aws.client("s3")})
    sink = S3SpillSink(BUCKET, "fork", **options)
    sink.write(records("g", "parent", 5))  # the parent's connection is open and pooled when it forks
    before = local_aws.stats().connections
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sink.write(records("g", "child", 5))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert local_aws.stats().connections == before + 1  # the child connected on its own
    sink.write(records("g", "parent", 5, start=1_800_000_000_000))
    (child_object,) = sink.stream_objects("g", "child")
    assert sink.read_object(child_object) == records("g", "child", 5)


def test_sse_s3_by_default_and_content_headers_stored(moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    url = S3SpillSink(BUCKET, "p", client=client).write(records("g", "s", 2))
    key = url.removeprefix(f"s3://{BUCKET}/")
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentEncoding"] == "gzip"
    assert head["ContentType"] == "application/x-ndjson"
    (put,) = moto_s3.puts()
    assert put.headers["x-amz-server-side-encryption"] == "AES256"
    assert "x-amz-expected-bucket-owner" not in put.headers


def test_sse_kms_owner_check_and_tags_reach_the_server(moto_s3: MotoS3) -> None:
    client = moto_s3.client()
    sink = S3SpillSink(BUCKET, "p", client=client, kms_key_id="alias/logs-spill", expected_bucket_owner=OWNER,
                       tags={"team": "data eng", "purpose": "spill"})
    key = sink.write(records("g", "s", 2)).removeprefix(f"s3://{BUCKET}/")

    (put,) = moto_s3.puts()
    assert put.headers["x-amz-server-side-encryption"] == "aws:kms"
    assert put.headers["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/logs-spill"
    assert put.headers["x-amz-expected-bucket-owner"] == OWNER
    assert put.headers["x-amz-tagging"] == "team=data+eng&purpose=spill"
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/logs-spill")
    tags = {t["Key"]: t["Value"] for t in client.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
    assert tags == {"team": "data eng", "purpose": "spill"}

    # replay marks objects with a sink that knows no key: the moved copy keeps KMS encryption and tags
    replay_view = S3SpillSink(BUCKET, "p", client=client, expected_bucket_owner=OWNER)
    (obj,) = list(replay_view.list_objects())
    moto_s3.requests.clear()
    moved = replay_view.mark_replayed(obj)
    assert moved == f"s3://{BUCKET}/p/@replayed/g/s/{key.rsplit('/', 1)[1]}"
    assert all(r.headers.get("x-amz-expected-bucket-owner") == OWNER for r in moto_s3.requests)
    moved_head = client.head_object(Bucket=BUCKET, Key=moved.removeprefix(f"s3://{BUCKET}/"))
    assert moved_head["ServerSideEncryption"] == "aws:kms" and moved_head["SSEKMSKeyId"].endswith("alias/logs-spill")
    assert list(sink.list_objects()) == []  # replayed objects are not listed as spill any more


def test_no_network_io_at_construction(aws_env: None) -> None:
    sink = build_spill_sink("s3://bucket/prefix", s3_endpoint_url="http://127.0.0.1:9")
    assert isinstance(sink, FallbackSpillSink)
    s3 = sink.sinks[0]
    assert isinstance(s3, S3SpillSink) and s3._client is None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_s3_unreachable_falls_back_to_local_without_loss(aws_env: None, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    clock = [0.0]
    sink = build_spill_sink("s3://bucket/prefix", s3_endpoint_url=endpoint, local_directory=tmp_path,
                            fallback_cooldown=30.0)
    assert isinstance(sink, FallbackSpillSink)
    sink._clock = lambda: clock[0]
    first = records("g", "s", 100)
    location = sink.write(first)
    assert location.startswith(str(tmp_path))
    assert sink.failures["s3://bucket/prefix"] == 1 and sink.records_fallen_back == 100
    clock[0] = 10.0  # within the cooldown: S3 is not tried again
    sink.write(records("g", "s", 5, start=1_800_000_000_000))
    assert sink.failures["s3://bucket/prefix"] == 1
    clock[0] = 31.0
    sink.write(records("g", "s", 5, start=1_900_000_000_000))
    assert sink.failures["s3://bucket/prefix"] == 2
    stored = list(LocalSpillSink(tmp_path).read_stream("g", "s"))
    assert sorted(stored, key=lambda r: r.timestamp) == (
        first + records("g", "s", 5, start=1_800_000_000_000) + records("g", "s", 5, start=1_900_000_000_000))


def test_partial_s3_failure_sends_only_the_rest_to_local(moto_s3: MotoS3, tmp_path: Path) -> None:
    client = moto_s3.client()
    s3 = S3SpillSink(BUCKET, "p", client=client)
    # The first PUT succeeds, every later one answers 503 SlowDown.
    moto_s3.fail = lambda r: r.method == "PUT" and len(moto_s3.puts()) > 1
    s3._sleep = lambda _: None
    sink = FallbackSpillSink([s3, LocalSpillSink(tmp_path)])
    batch = records("a", "s", 10) + records("b", "s", 10)
    location = sink.write(batch)
    assert " + " in location
    in_s3 = [r for o in s3.list_objects() for r in s3.read_object(o)]
    local = list(LocalSpillSink(tmp_path).read_stream("b", "s"))
    assert in_s3 == batch[:10] and local == batch[10:]
    assert sink.failures[s3.description] == 1
    assert len(moto_s3.puts()) == 1 + 3  # SlowDown was retried (3 attempts), then the rest went local


def test_partial_local_failure_names_only_the_records_still_to_store(tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    in_the_way = spill_dir / stream_prefix("b", "s").rstrip("/")
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("a file where the folder of stream b/s would go")
    ok, blocked = records("a", "s", 10), records("b", "s", 10)
    with pytest.raises(PartialSpillError) as info:
        LocalSpillSink(spill_dir).write(ok[::-1] + blocked)
    assert info.value.remaining == blocked
    assert info.value.location.startswith(str(spill_dir / stream_prefix("a", "s")))
    assert list(LocalSpillSink(spill_dir).read_stream("a", "s")) == ok  # one file, earliest record first
    assert [p.name for p in spill_dir.rglob("*.tmp")] == []
    # behind a fallback, only the rest moves on: nothing is stored twice
    fallback_dir = tmp_path / "fallback"
    FallbackSpillSink([LocalSpillSink(spill_dir), LocalSpillSink(fallback_dir)]).write(ok + blocked)
    assert list(LocalSpillSink(fallback_dir).read_stream("b", "s")) == blocked
    assert list(LocalSpillSink(fallback_dir).read_stream("a", "s")) == []


def test_every_target_failing_raises_spill_error(moto_s3: MotoS3) -> None:
    moto_s3.fail = lambda r: r.method == "PUT"
    s3 = S3SpillSink(BUCKET, "p", client=moto_s3.client(), sleep=lambda _: None)
    with pytest.raises(SpillError) as info:
        s3.write(records("g", "s", 3))
    assert not isinstance(info.value, PartialSpillError)
    with pytest.raises(SpillError, match="every spill target failed"):
        FallbackSpillSink([s3, LocalSpillSink("/proc/not-writable")]).write(records("g", "s", 3))


def test_the_standard_s3_endpoint_variable_is_honoured(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint)
    sink = build_spill_sink(f"s3://{BUCKET}/env", s3_tags="team=data,env=prod", s3_kms_key_id="k-1",
                            local_directory=tmp_path)
    location = sink.write(records("g", "s", 3))
    assert location.startswith(f"s3://{BUCKET}/env/g/s/")
    (put,) = moto_s3.puts()
    assert put.headers["x-amz-tagging"] == "team=data&env=prod"
    assert put.headers["x-amz-server-side-encryption-aws-kms-key-id"] == "k-1"
    assert list(tmp_path.iterdir()) == []
