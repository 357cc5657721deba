"""Cost of a PutLogEvents body: direct orjson encoding vs botocore's serializer; bytes on the wire.

Run: ``.venv/bin/python -m pytest benchmarks/bench_encoding.py --benchmark-only``
(short: add ``--benchmark-min-rounds=3 --benchmark-max-time=0.2``).

Ratios are measured within the same run (the best of interleaved rounds) and kept in ``extra_info``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import serialize

from mwaa_logging.aws.clients import make_logs_client
from mwaa_logging.aws.encoding import encode_put_log_events, gzip_if_smaller
from mwaa_logging.aws.transport import BotocoreTransport, Compression
from mwaa_logging.events import MESSAGE, SIZE, TIMESTAMP, LogEvent, make_event
from mwaa_logging.outcome import Outcome

T0 = 1_700_000_000_000
GROUP = "airflow-env-Task"
STREAM = "dag_id=etl/run_id=scheduled__2026-11-24T00_00_00+00_00/task_id=load/attempt=1.log"
OPERATION = botocore.session.get_session().get_service_model("logs").operation_model("PutLogEvents")
TARGET_SPEEDUP = 10.0
#: What CI enforces against botocore's serializer without parameter validation (no issue target).
UNVALIDATED_REGRESSION_GUARD = 7.0


def airflow_like_events(count: int, seed: int = 7) -> list[LogEvent]:
    """Task-log lines of ~200 bytes with varying numbers, ids and paths (not one repeated line)."""
    rnd = random.Random(seed)
    modules = ["taskinstance.py", "base.py", "s3.py", "sql.py", "logging_mixin.py", "standard_task_runner.py"]
    templates = [
        "[2026-11-24T08:{m:02d}:{s:02d}.{ms:03d}+0000] {{{mod}:{line}}} INFO - Executing query batch {n} "
        "on connection pg_{c}: inserted {rows} rows in {el:.3f}s (request id {rid})",
        "[2026-11-24T08:{m:02d}:{s:02d}.{ms:03d}+0000] {{{mod}:{line}}} WARNING - Retrying upload of "
        "s3://bucket-{c}/data/part-{n:05d}.parquet after {el:.2f}s: SlowDown (id {rid})",
        "[2026-11-24T08:{m:02d}:{s:02d}.{ms:03d}+0000] {{{mod}:{line}}} INFO - Marking task as SUCCESS. "
        "dag_id=etl_{c}, task_id=load_{n}, execution_date=20261124T0000, rows={rows}, took {el:.1f}s",
    ]
    events = []
    for seq in range(count):
        message = rnd.choice(templates).format(
            m=rnd.randrange(60), s=rnd.randrange(60), ms=rnd.randrange(1000), mod=rnd.choice(modules),
            line=rnd.randrange(100, 3000), n=rnd.randrange(100_000), c=rnd.randrange(10),
            rows=rnd.randrange(1_000_000), el=rnd.random() * 100, rid=f"{rnd.getrandbits(64):016x}",
        )
        events.append(make_event(T0 + seq, message, seq))
    return events


EVENTS = airflow_like_events(10_000)


def botocore_serializer(validated: bool) -> Callable[[], Any]:
    serializer = serialize.create_serializer("json", include_validation=validated)

    def run() -> Any:
        params = {
            "logGroupName": GROUP,
            "logStreamName": STREAM,
            "logEvents": [{"timestamp": e[TIMESTAMP], "message": e[MESSAGE]} for e in EVENTS],
        }
        return serializer.serialize_to_request(params, OPERATION)

    return run


def best_of_interleaved(functions: dict[str, Callable[[], Any]], rounds: int = 15) -> dict[str, float]:
    """Fastest time of each function over ``rounds`` rounds that run every function once, in turn.

    Interleaving spreads a slow moment of a shared machine (another process, a lingering thread of an earlier
    benchmark) over all of them, so their ratio is not skewed by when each one happened to run.
    """
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def test_direct_encoding_10k(benchmark: Any) -> None:
    body = benchmark(encode_put_log_events, GROUP, STREAM, EVENTS)
    best = best_of_interleaved({
        "ours": lambda: encode_put_log_events(GROUP, STREAM, EVENTS),
        "validated": botocore_serializer(validated=True),
        "unvalidated": botocore_serializer(validated=False),
    })
    ours, validated, unvalidated = best["ours"], best["validated"], best["unvalidated"]
    benchmark.extra_info.update(
        events=len(EVENTS),
        bytes_per_event=round(sum(e[SIZE] - 26 for e in EVENTS) / len(EVENTS), 1),
        body_bytes=len(body),
        ours_ms=round(ours * 1000, 2),
        botocore_validated_ms=round(validated * 1000, 2),
        botocore_unvalidated_ms=round(unvalidated * 1000, 2),
        speedup_vs_validated=round(validated / ours, 1),
        speedup_vs_unvalidated=round(unvalidated / ours, 1),
    )
    # The target is against botocore's serializer as a client runs it (parameter validation on, the default and
    # what watchtower gets): 20-39x here, asserted without margin. Without validation botocore takes about half
    # the time, and ours is 10-17x faster still; one slow CI run measured 10.8 (ours 3.4 ms in every round):
    # CI fails that figure below UNVALIDATED_REGRESSION_GUARD, a regression of about a third.
    assert validated / ours >= TARGET_SPEEDUP
    assert unvalidated / ours >= UNVALIDATED_REGRESSION_GUARD


@pytest.mark.parametrize("validated", [True, False], ids=["validated", "unvalidated"])
def test_botocore_serializer_10k(benchmark: Any, validated: bool) -> None:
    request = benchmark(botocore_serializer(validated))
    assert request["body"]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_wire_bytes_per_event(benchmark: Any, compression: str) -> None:
    """Encode (and compress) one 10k-event body; record what goes on the wire per event."""

    def body() -> bytes:
        plain = encode_put_log_events(GROUP, STREAM, EVENTS)
        return (gzip_if_smaller(plain) or plain) if compression == "gzip" else plain

    sent = benchmark(body)
    plain_size = len(encode_put_log_events(GROUP, STREAM, EVENTS))
    benchmark.extra_info.update(
        compression=compression,
        wire_bytes_per_event=round(len(sent) / len(EVENTS), 1),
        compression_ratio=round(plain_size / len(sent), 2),
    )
    if compression == "gzip":
        assert len(sent) * 3 < plain_size


@pytest.fixture(scope="module")
def answering_url() -> Iterator[str]:
    """A local HTTP server that reads the request and answers ``{}`` (isolates client-side cost)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region, no config files, no instance metadata."""
    for name in [n for n in os.environ if n.startswith(("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONTAINER"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("fake_aws")
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_single_put_latency_1mib(benchmark: Any, answering_url: str, compression: Compression) -> None:
    """One full PutLogEvents (4,500 events, ~1 MiB counted) end to end over loopback HTTP."""
    transport = BotocoreTransport(make_logs_client(endpoint_url=answering_url), compression=compression)
    batch = EVENTS[:4_500]
    result = benchmark(transport.put_log_events, GROUP, STREAM, batch)
    assert result.outcome is Outcome.OK
    benchmark.extra_info.update(events=len(batch), counted_bytes=sum(e[SIZE] for e in batch),
                                wire_bytes=result.wire_bytes)


@pytest.mark.usefixtures("fake_aws")
def test_single_put_latency_1mib_stock_boto3(benchmark: Any, answering_url: str) -> None:
    """The same call through boto3's own path (model serializer with validation), for comparison."""
    client = make_logs_client(endpoint_url=answering_url)
    log_events = [{"timestamp": e[TIMESTAMP], "message": e[MESSAGE]} for e in EVENTS[:4_500]]

    def put() -> Any:
        return client.put_log_events(logGroupName=GROUP, logStreamName=STREAM, logEvents=log_events)  # type: ignore[arg-type]

    response = benchmark(put)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
