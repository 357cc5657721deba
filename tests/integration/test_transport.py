"""BotocoreTransport over real HTTP: moto's server for CloudWatch behaviour, a capture server for
exact bytes, headers and signatures, and raw sockets for network failures."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mwaa_logging.aws.clients import make_logs_client, make_s3_client
from mwaa_logging.aws.encoding import encode_put_log_events
from mwaa_logging.aws.transport import BotocoreTransport, Compression
from mwaa_logging.events import MESSAGE, SIZE, TIMESTAMP, LogEvent, make_event
from mwaa_logging.outcome import CallResult, Outcome, RejectedInfo
from mwaa_logging.protocols import Transport

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

    from mwaa_logging.testing.local_aws import LocalAWS

pytestmark = pytest.mark.timeout(60)

SECRET = "testing"


@pytest.fixture(autouse=True)
def fake_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_SESSION_TOKEN",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# ----------------------------------------------------------------------------------------------
# Servers


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Captured:
    headers: dict[str, str]
    body: bytes
    path: str


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    #: Read the request, then close the connection without answering.
    hang_up: bool = False


@dataclass
class CaptureServer:
    """Records every request; answers with ``respond(captured)`` (default: 200 ``{}``)."""

    url: str = ""
    requests: list[Captured] = field(default_factory=list)
    respond: Callable[[Captured], Reply] = lambda _: Reply()


def aws_error(status: int, code: str, message: str = "boom") -> Reply:
    return Reply(status, json.dumps({"__type": code, "message": message}).encode())


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    state = CaptureServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            captured = Captured({k.lower(): v for k, v in self.headers.items()}, body, self.path)
            state.requests.append(captured)
            reply = state.respond(captured)
            if reply.hang_up:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and reads, but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A bound TCP port nobody listens on: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


# ----------------------------------------------------------------------------------------------
# Helpers


def transport_for(url: str, compression: Compression = "none", read_timeout: float = 5.0) -> BotocoreTransport:
    client = make_logs_client(endpoint_url=url, connect_timeout=2.0, read_timeout=read_timeout)
    return BotocoreTransport(client, compression=compression)


def events(count: int, message: str = "task log line {i}: rows=42 elapsed=0.25s", start: int | None = None,
           ) -> list[LogEvent]:
    first = int(time.time() * 1000) - 60_000 if start is None else start
    return [make_event(first + i, message.format(i=i), i) for i in range(count)]


def stream_messages(client: CloudWatchLogsClient, group: str, stream: str) -> list[str]:
    response = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    return [e["message"] for e in response["events"]]


def create(transport: BotocoreTransport, group: str, stream: str) -> None:
    assert transport.create_log_group(group).outcome is Outcome.OK
    assert transport.create_log_stream(group, stream).outcome is Outcome.OK


def verify_sigv4(request: Captured, secret: str = SECRET) -> bool:
    """Recompute the SigV4 signature of a captured request (written out here, not botocore's)."""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        request.headers["authorization"],
    )
    assert match, request.headers["authorization"]
    _, date, region, service, signed_headers, signature = match.groups()
    canonical_headers = "".join(
        f"{name}:{' '.join(request.headers[name].split())}\n" for name in signed_headers.split(";")
    )
    canonical_request = "\n".join(
        ["POST", request.path, "", canonical_headers, signed_headers, hashlib.sha256(request.body).hexdigest()]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", request.headers["x-amz-date"], scope,
         hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest(), signature)


# ----------------------------------------------------------------------------------------------
# Delivery through moto's server


def test_is_a_transport(moto_url: str) -> None:
    assert isinstance(transport_for(moto_url), Transport)


@pytest.mark.parametrize("compression", ["none", "gzip", "auto"])
def test_events_arrive_intact(moto_url: str, compression: Compression) -> None:
    transport = transport_for(moto_url, compression)
    group, stream = f"intact-{compression}", "s"
    create(transport, group, stream)
    odd = ["plain ascii", "é ü 漢字 😀", "ctrl \x01\x1b[31mred\x1b[0m tab\tnl\nend", 'quote " back \\ slash',
           "lone \ud800 surrogate", "x" * 5000]
    batch = [make_event(int(time.time() * 1000) - 120_000 + i, m, i) for i, m in enumerate(odd)] + events(300)
    result = transport.put_log_events(group, stream, batch)
    assert result.outcome is Outcome.OK, result
    assert result.wire_bytes > 0
    expected = [e[MESSAGE].replace("\ud800", "\ufffd") for e in batch]
    assert stream_messages(transport.client, group, stream) == expected


def test_missing_group_is_no_resource_then_create_is_idempotent(moto_url: str) -> None:
    transport = transport_for(moto_url)
    result = transport.put_log_events("missing-group", "s", events(3))
    assert (result.outcome, result.error_code) == (Outcome.NO_RESOURCE, "ResourceNotFoundException")
    assert transport.create_log_group("missing-group", {"team": "data"}).outcome is Outcome.OK
    again = transport.create_log_group("missing-group", {"team": "data"})
    assert (again.outcome, again.error_code) == (Outcome.OK, "ResourceAlreadyExistsException")
    assert transport.create_log_stream("missing-group", "s").outcome is Outcome.OK
    assert transport.create_log_stream("missing-group", "s").outcome is Outcome.OK
    assert transport.put_log_events("missing-group", "s", events(3)).outcome is Outcome.OK
    tags = transport.client.list_tags_log_group(logGroupName="missing-group")["tags"]
    assert tags == {"team": "data"}


def test_unsorted_batch_is_invalid(moto_url: str) -> None:
    transport = transport_for(moto_url)
    create(transport, "unsorted", "s")
    result = transport.put_log_events("unsorted", "s", events(5)[::-1])
    assert (result.outcome, result.error_code) == (Outcome.INVALID, "InvalidParameterException")


def test_rejected_old_events_are_partial(moto_url: str) -> None:
    transport = transport_for(moto_url, "gzip")
    create(transport, "partial", "s")
    old = events(2, "too old {i}", start=int(time.time() * 1000) - 15 * 24 * 3600 * 1000)
    result = transport.put_log_events("partial", "s", old + events(3))
    assert result.outcome is Outcome.PARTIAL
    assert result.rejected is not None and result.rejected.too_old_end is not None
    assert stream_messages(transport.client, "partial", "s")[-3:] == [e[MESSAGE] for e in events(3)]


def test_retention_policy(moto_url: str) -> None:
    transport = transport_for(moto_url)
    assert transport.put_retention_policy("no-such-group", 7).outcome is Outcome.NO_RESOURCE
    transport.create_log_group("retained")
    assert transport.put_retention_policy("retained", 7).outcome is Outcome.OK
    groups = transport.client.describe_log_groups(logGroupNamePrefix="retained")["logGroups"]
    assert groups[0]["retentionInDays"] == 7


def test_tagging_an_existing_group(moto_url: str) -> None:
    """TagResource on the ARN DescribeLogGroups gives, not on a longer name the group's name prefixes."""
    transport = transport_for(moto_url)
    transport.create_log_group("tagged-longer")
    assert transport.tag_log_group("tagged", {"team": "a"}).outcome is Outcome.NO_RESOURCE
    transport.create_log_group("tagged", {"kept": "yes"})
    assert transport.tag_log_group("tagged", {"team": "a"}).outcome is Outcome.OK
    assert transport.client.list_tags_log_group(logGroupName="tagged")["tags"] == {"kept": "yes", "team": "a"}
    assert transport.client.list_tags_log_group(logGroupName="tagged-longer")["tags"] == {}


def test_concurrent_puts_on_one_client_keep_their_own_bodies(moto_url: str) -> None:
    transport = transport_for(moto_url, "gzip")
    streams = [f"s{n}" for n in range(8)]
    transport.create_log_group("concurrent")
    for stream in streams:
        transport.create_log_stream("concurrent", stream)

    def put(stream: str) -> list[CallResult]:
        return [transport.put_log_events("concurrent", stream, events(50, f"{stream} line {{i}} round {r}"))
                for r in range(5)]

    with ThreadPoolExecutor(len(streams)) as pool:
        results = [r for rs in pool.map(put, streams) for r in rs]
    assert all(r.outcome is Outcome.OK for r in results)
    for stream in streams:
        messages = stream_messages(transport.client, "concurrent", stream)
        assert len(messages) == 250 and all(m.startswith(f"{stream} line ") for m in messages)


def test_users_own_calls_on_a_shared_client_are_untouched(moto_url: str, capture: CaptureServer) -> None:
    client = boto3.client("logs", endpoint_url=capture.url)
    BotocoreTransport(client, compression="gzip").put_log_events("g", "s", events(100))
    client.put_log_events(logGroupName="g", logStreamName="s",
                          logEvents=[{"timestamp": 1, "message": "user's own"}] * 100)
    ours, theirs = capture.requests
    assert ours.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in theirs.headers
    assert json.loads(theirs.body)["logEvents"][0]["message"] == "user's own"


@pytest.mark.parametrize("mode", ["legacy", "standard", "adaptive"])
def test_a_callers_client_does_not_retry_our_calls_behind_the_budget(capture: CaptureServer, mode: str) -> None:
    """The Amazon provider and MWAA pass a client with botocore's retries on: a throttled PutLogEvents of ours must
    reach CloudWatch once (the sender and its budget decide what comes next); the caller's own calls keep their
    retries."""
    from botocore.config import Config

    capture.respond = lambda _: aws_error(400, "ThrottlingException", "Rate exceeded")
    client = boto3.client("logs", endpoint_url=capture.url,
                          config=Config(retries={"mode": mode, "total_max_attempts": 2}))
    result = BotocoreTransport(client, compression="none").put_log_events("g", "s", events(3))
    assert result.outcome is Outcome.THROTTLED
    assert len(capture.requests) == 1
    with pytest.raises(client.exceptions.ThrottlingException):
        client.put_log_events(logGroupName="g", logStreamName="s", logEvents=[{"timestamp": 1, "message": "own"}])
    assert len(capture.requests) == 3


# ----------------------------------------------------------------------------------------------
# Exact bytes, headers and signatures (capture server)


def test_gzip_body_is_signed_as_sent(capture: CaptureServer) -> None:
    transport = transport_for(capture.url, "gzip")
    batch = events(1000)
    result = transport.put_log_events("g", "s", batch)
    assert result.outcome is Outcome.OK
    (request,) = capture.requests
    plain = encode_put_log_events("g", "s", batch)
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["x-amz-target"] == "Logs_20140328.PutLogEvents"
    assert int(request.headers["content-length"]) == len(request.body) == result.wire_bytes
    assert gzip.decompress(request.body) == plain
    assert len(request.body) * 5 < len(plain)
    assert verify_sigv4(request)
    assert not verify_sigv4(Captured(request.headers, plain, request.path))


def test_plain_body_is_the_direct_encoding(capture: CaptureServer) -> None:
    transport = transport_for(capture.url, "none")
    batch = events(10)
    result = transport.put_log_events("g", "s", batch)
    (request,) = capture.requests
    assert "content-encoding" not in request.headers
    assert request.body == encode_put_log_events("g", "s", batch)
    assert result.wire_bytes == len(request.body)
    assert verify_sigv4(request)


def test_gzip_is_skipped_when_it_does_not_shrink(capture: CaptureServer) -> None:
    transport_for(capture.url, "gzip").put_log_events("g", "s", events(1, "x"))
    assert "content-encoding" not in capture.requests[0].headers


def gzip_refused(status: int, code: str | None, plain: Reply | None = None) -> Callable[[Captured], Reply]:
    """Refuse gzip bodies with ``status`` and an AWS error ``code`` (None: a proxy's HTML page); answer plain ones
    with ``plain`` (default 200)."""
    def respond(request: Captured) -> Reply:
        if request.headers.get("content-encoding") == "gzip":
            return aws_error(status, code) if code else Reply(status, b"<html><body>Bad Request</body></html>")
        return plain or Reply()

    return respond


@pytest.mark.parametrize(("status", "code"), [
    (500, "InternalFailure"), (400, "SerializationException"), (400, "InvalidParameterException"),
    (400, None), (413, None), (415, None),
])
def test_auto_falls_back_to_plain_once_a_refused_gzip_body_was_read_plain_twice(
    capture: CaptureServer, caplog: pytest.LogCaptureFixture, status: int, code: str | None
) -> None:
    """Each body is a call of its own, which the sender retries under its budget: a refused gzip body comes back
    as transient (never invalid, which the sender would spill), the retry goes plain."""
    capture.respond = gzip_refused(status, code)
    transport = transport_for(capture.url, "auto")
    assert transport.compressing
    with caplog.at_level(logging.WARNING, logger="mwaa_logging.transport"):
        outcomes = [transport.put_log_events("g", "s", events(100)).outcome for _ in range(5)]
        other = transport_for(capture.url, "auto").put_log_events("g", "s", events(100))
    assert outcomes == [Outcome.TRANSIENT, Outcome.OK, Outcome.TRANSIENT, Outcome.OK, Outcome.OK]
    assert other.outcome is Outcome.OK and not transport.compressing
    encodings = [r.headers.get("content-encoding") for r in capture.requests]
    assert encodings == ["gzip", None, "gzip", None, None, None]
    warnings = [r for r in caplog.records if r.name == "mwaa_logging.transport"]
    assert len(warnings) == 1 and "gzip" in warnings[0].getMessage()


def test_auto_keeps_gzip_after_one_failure_the_plain_retry_got_past(
    capture: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One 503 before the first success turned gzip off for the rest of the process."""
    capture.respond = lambda request: (aws_error(503, "ServiceUnavailableException") if len(capture.requests) == 1
                                       else Reply())
    transport = transport_for(capture.url, "auto")
    with caplog.at_level(logging.WARNING, logger="mwaa_logging.transport"):
        outcomes = [transport.put_log_events("g", "s", events(100)).outcome for _ in range(4)]
    assert outcomes == [Outcome.TRANSIENT, Outcome.OK, Outcome.OK, Outcome.OK]
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip", None, "gzip", "gzip"]
    assert transport.compressing
    assert not [r for r in caplog.records if r.name == "mwaa_logging.transport"]


def test_auto_falls_back_also_when_throttles_come_between_the_two_reads(capture: CaptureServer) -> None:
    """A throttle says nothing about gzip: it used to restart the count, so a busy account never fell back."""
    answers = iter([aws_error(400, "SerializationException"), Reply(), aws_error(400, "ThrottlingException"),
                    aws_error(400, "SerializationException"), Reply()])
    capture.respond = lambda _: next(answers, Reply())
    transport = transport_for(capture.url, "auto")
    outcomes = [transport.put_log_events("g", "s", events(100)).outcome for _ in range(6)]
    assert outcomes == [Outcome.TRANSIENT, Outcome.OK, Outcome.THROTTLED, Outcome.TRANSIENT, Outcome.OK, Outcome.OK]
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip", None, "gzip", "gzip", None, None]
    assert not transport.compressing


@pytest.mark.parametrize("plain", [aws_error(400, "ThrottlingException", "Rate exceeded"),
                                   aws_error(503, "ServiceUnavailableException")])
def test_auto_keeps_gzip_when_the_plain_probe_shows_nothing(
    capture: CaptureServer, caplog: pytest.LogCaptureFixture, plain: Reply
) -> None:
    capture.respond = gzip_refused(500, "InternalFailure", plain)
    transport = transport_for(capture.url, "auto")
    with caplog.at_level(logging.WARNING, logger="mwaa_logging.transport"):
        results = [transport.put_log_events("g", "s", events(100)) for _ in range(4)]
    assert all(result.outcome in (Outcome.THROTTLED, Outcome.TRANSIENT) for result in results)
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip", None, "gzip", None]
    assert transport.compressing
    assert not [r for r in caplog.records if r.name == "mwaa_logging.transport"]


def test_a_missing_stream_shows_the_endpoint_reads_gzip(capture: CaptureServer) -> None:
    capture.respond = lambda _: aws_error(400, "ResourceNotFoundException", "The specified log stream does not exist.")
    transport = transport_for(capture.url, "auto")
    assert transport.put_log_events("g", "s", events(100)).outcome is Outcome.NO_RESOURCE
    capture.respond = lambda _: aws_error(500, "InternalFailure")
    assert transport.put_log_events("g", "s", events(100)).outcome is Outcome.TRANSIENT
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip", "gzip"]


def test_gzip_mode_never_falls_back(capture: CaptureServer) -> None:
    capture.respond = gzip_refused(500, "InternalFailure")
    result = transport_for(capture.url, "gzip").put_log_events("g", "s", events(100))
    assert result.outcome is Outcome.TRANSIENT
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip"]


def test_auto_keeps_gzip_when_plain_fails_too(capture: CaptureServer, caplog: pytest.LogCaptureFixture) -> None:
    capture.respond = lambda _: aws_error(503, "ServiceUnavailableException")
    transport = transport_for(capture.url, "auto")
    with caplog.at_level(logging.WARNING, logger="mwaa_logging.transport"):
        first, probe = (transport.put_log_events("g", "s", events(100)) for _ in range(2))
    assert first.outcome is probe.outcome is Outcome.TRANSIENT
    assert not [r for r in caplog.records if r.name == "mwaa_logging.transport"]
    capture.respond = lambda _: Reply()
    transport.put_log_events("g", "s", events(100))
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip", None, "gzip"]


def test_auto_does_not_probe_after_gzip_was_accepted(capture: CaptureServer) -> None:
    transport = transport_for(capture.url, "auto")
    assert transport.put_log_events("g", "s", events(100)).outcome is Outcome.OK
    capture.respond = lambda _: aws_error(500, "InternalFailure")
    assert transport.put_log_events("g", "s", events(100)).outcome is Outcome.TRANSIENT
    assert [r.headers.get("content-encoding") for r in capture.requests] == ["gzip", "gzip"]


# ----------------------------------------------------------------------------------------------
# Classification of answers and failures


@pytest.mark.parametrize(
    ("reply", "outcome", "code"),
    [
        (aws_error(400, "ThrottlingException", "Rate exceeded"), Outcome.THROTTLED, "ThrottlingException"),
        (aws_error(400, "ResourceNotFoundException"), Outcome.NO_RESOURCE, "ResourceNotFoundException"),
        (aws_error(400, "InvalidParameterException"), Outcome.INVALID, "InvalidParameterException"),
        (aws_error(400, "UnrecognizedClientException"), Outcome.AUTH, "UnrecognizedClientException"),
        (aws_error(400, "AccessDeniedException"), Outcome.AUTH, "AccessDeniedException"),
        (aws_error(503, "ServiceUnavailableException"), Outcome.TRANSIENT, "ServiceUnavailableException"),
        (Reply(502, b"<html>bad gateway</html>"), Outcome.TRANSIENT, "502"),
        (aws_error(400, "DataAlreadyAcceptedException"), Outcome.OK, "DataAlreadyAcceptedException"),
        # a captive portal's or a proxy's page: botocore parses it to an empty success, which took every line
        (Reply(200, b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"), Outcome.TRANSIENT,
         "UnexpectedAnswer"),
        (Reply(200, b"OK"), Outcome.TRANSIENT, "UnexpectedAnswer"),
        (Reply(200, b""), Outcome.TRANSIENT, "UnexpectedAnswer"),  # an ALB's fixed response; CloudWatch sends {}
        (Reply(200, b"  \n"), Outcome.TRANSIENT, "UnexpectedAnswer"),
        (Reply(200, b' \n{"nextSequenceToken": "1"}'), Outcome.OK, None),
    ],
)
def test_error_answers_are_classified(
    capture: CaptureServer, reply: Reply, outcome: Outcome, code: str
) -> None:
    capture.respond = lambda _: reply
    result = transport_for(capture.url, "none").put_log_events("g", "s", events(10))
    assert (result.outcome, result.error_code, result.ambiguous) == (outcome, code, False)
    assert len(capture.requests) == 1, "botocore must not retry: the sender owns retries"


def test_every_rejected_index_is_parsed(capture: CaptureServer) -> None:
    info = {"tooNewLogEventStartIndex": 8, "tooOldLogEventEndIndex": 2, "expiredLogEventEndIndex": 1}
    capture.respond = lambda _: Reply(body=json.dumps({"rejectedLogEventsInfo": info}).encode())
    result = transport_for(capture.url).put_log_events("g", "s", events(10))
    assert result.outcome is Outcome.PARTIAL
    assert result.rejected == RejectedInfo(too_new_start=8, too_old_end=2, expired_end=1)


def test_create_calls_classify_errors(capture: CaptureServer) -> None:
    capture.respond = lambda _: aws_error(400, "ThrottlingException")
    transport = transport_for(capture.url)
    assert transport.create_log_group("g").outcome is Outcome.THROTTLED
    assert transport.create_log_stream("g", "s").outcome is Outcome.THROTTLED
    assert transport.put_retention_policy("g", 7).outcome is Outcome.THROTTLED


def test_connection_refused_is_transient_and_unambiguous(refused_url: str) -> None:
    result = transport_for(refused_url).put_log_events("g", "s", events(10))
    assert (result.outcome, result.ambiguous) == (Outcome.TRANSIENT, False)
    assert result.error_code == "EndpointConnectionError"
    assert transport_for(refused_url).create_log_group("g").outcome is Outcome.TRANSIENT


def test_read_timeout_is_transient_and_ambiguous_within_the_timeout(silent_url: str) -> None:
    transport = transport_for(silent_url, read_timeout=0.5)
    started = time.monotonic()
    result = transport.put_log_events("g", "s", events(10))
    elapsed = time.monotonic() - started
    assert (result.outcome, result.ambiguous, result.error_code) == (Outcome.TRANSIENT, True, "ReadTimeoutError")
    assert 0.4 < elapsed < 2.5


def test_connection_closed_after_send_is_ambiguous(capture: CaptureServer) -> None:
    capture.respond = lambda _: Reply(hang_up=True)
    result = transport_for(capture.url).put_log_events("g", "s", events(10))
    assert (result.outcome, result.ambiguous) == (Outcome.TRANSIENT, True)
    assert len(capture.requests) == 1


def test_missing_credentials_is_auth(monkeypatch: pytest.MonkeyPatch, capture: CaptureServer) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    transport = transport_for(capture.url)
    result = transport.put_log_events("g", "s", events(10))
    assert (result.outcome, result.error_code) == (Outcome.AUTH, "NoCredentialsError")
    assert transport.create_log_group("g").outcome is Outcome.AUTH
    assert capture.requests == []


# ----------------------------------------------------------------------------------------------
# Client construction


def test_client_creation_does_no_network_io(monkeypatch: pytest.MonkeyPatch, capture: CaptureServer) -> None:
    """Container credentials are fetched on the first request, not when the client is built."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = {"AccessKeyId": "AKIDCONTAINER", "SecretAccessKey": "container-secret",
                   "Token": "token", "Expiration": "2099-01-01T00:00:00Z"}
    hits: list[str] = []
    with ThreadingHTTPServer(("127.0.0.1", 0), _credentials_handler(credentials, hits)) as creds_server:
        thread = threading.Thread(target=creds_server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                           f"http://127.0.0.1:{creds_server.server_port}/creds")
        client = make_logs_client(endpoint_url=capture.url)
        assert hits == []
        result = BotocoreTransport(client).put_log_events("g", "s", events(5))
        assert hits == ["/creds"]
        creds_server.shutdown()
        thread.join(5)
    assert result.outcome is Outcome.OK
    request = capture.requests[0]
    assert "Credential=AKIDCONTAINER/" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == "token"
    assert verify_sigv4(request, "container-secret")


def _credentials_handler(credentials: dict[str, str], hits: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = json.dumps(credentials).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def test_service_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch, capture: CaptureServer) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the service-specific one wins
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", capture.url)
    result = BotocoreTransport(make_logs_client()).put_log_events("g", "s", events(5))
    assert result.outcome is Outcome.OK
    assert len(capture.requests) == 1


def test_profile_supplies_region_and_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capture: CaptureServer
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[profile shipper]\nregion = eu-west-1\n"
        "aws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the environment would win over the profile
    client = make_logs_client(profile_name="shipper", endpoint_url=capture.url)
    assert client.meta.region_name == "eu-west-1"
    BotocoreTransport(client).put_log_events("g", "s", events(5))
    request = capture.requests[0]
    assert "Credential=AKIDPROFILE/" in request.headers["authorization"]
    assert "/eu-west-1/logs/aws4_request" in request.headers["authorization"]
    assert verify_sigv4(request, "profile-secret")


def test_timeouts_and_pool_are_configured() -> None:
    client = make_logs_client(connect_timeout=1.5, read_timeout=7.0, max_pool_connections=32,
                              endpoint_url="http://127.0.0.1:9")
    config: Any = client.meta.config
    assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (1.5, 7.0, 32)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}


# ----------------------------------------------------------------------------------------------
# The strict local endpoint (mwaa_logging.testing.LocalAWS): gzip as AWS takes it


def test_full_batches_reach_local_aws_gzipped_without_fallback(
    local_aws: LocalAWS, caplog: pytest.LogCaptureFixture
) -> None:
    transport = transport_for(local_aws.url, "auto")
    create(transport, "strict", "s")
    # 10,000 events of 78 message bytes: 1,040,000 counted bytes, just under the 1 MiB batch limit.
    first = events(10_000, "airflow.task INFO - Done. Returned value was: None; rows=42 elapsed {i:08d}")
    second = events(3, "second {i}", start=first[-1][TIMESTAMP] + 1)
    assert sum(e[SIZE] for e in first) <= 1_048_576
    with caplog.at_level(logging.WARNING, logger="mwaa_logging.transport"):
        results = [transport.put_log_events("strict", "s", batch) for batch in (first, second)]
    assert [r.outcome for r in results] == [Outcome.OK, Outcome.OK]
    assert local_aws.messages("strict", "s") == [e[MESSAGE] for e in first + second]
    stats = local_aws.stats()
    assert (stats.gzip_bodies, stats.invalid, stats.puts_ok) == (2, 0, 2)
    put_bytes = sum(r.wire_bytes for r in results)
    assert put_bytes < len(encode_put_log_events("strict", "s", first)) / 5
    assert not [r for r in caplog.records if r.name == "mwaa_logging.transport"]


def test_s3_client_is_built_the_same_way(monkeypatch: pytest.MonkeyPatch, local_aws: LocalAWS) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", local_aws.url)
    s3 = make_s3_client(read_timeout=4.0)
    config: Any = s3.meta.config
    assert (config.read_timeout, config.retries["total_max_attempts"]) == (4.0, 1)
    s3.create_bucket(Bucket="spill")
    s3.put_object(Bucket="spill", Key="k", Body=b"payload")
    assert s3.get_object(Bucket="spill", Key="k")["Body"].read() == b"payload"
