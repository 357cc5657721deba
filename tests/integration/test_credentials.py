"""Credentials through real botocore: its instance-metadata and container providers against a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError

import mwaa_logging
from mwaa_logging.aws import clients
from mwaa_logging.aws.clients import make_logs_client
from mwaa_logging.aws.transport import BotocoreTransport
from mwaa_logging.events import make_event
from mwaa_logging.outcome import Outcome
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records

pytestmark = pytest.mark.timeout(60)


@dataclass
class Metadata:
    """A local EC2 instance-metadata service (IMDSv2) that also serves container credentials at ``/container``:
    fails while ``failing``, else hands out credentials valid for ``lifetime`` with a new access key each time."""

    url: str = ""
    failing: bool = False
    lifetime: timedelta = timedelta(hours=6)
    credentials_served: int = 0


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[Metadata]:
    state = Metadata()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            self.answer(500) if state.failing else self.answer(200, b"imds-token")

        def do_GET(self) -> None:
            if state.failing:
                self.answer(500)
            elif self.path.endswith("/security-credentials/"):
                self.answer(200, b"role")
            elif self.path.endswith(("/security-credentials/role", "/container")):
                state.credentials_served += 1
                expires = datetime.now(timezone.utc) + state.lifetime
                self.answer(200, json.dumps({
                    "Code": "Success", "AccessKeyId": f"AKID{state.credentials_served}", "SecretAccessKey": "s",
                    "Token": "t", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }).encode())
            else:
                self.answer(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", state.url)
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_metadata_service_that_fails_at_the_first_call_does_not_leave_the_process_without_credentials(
    local_aws: LocalAWS, metadata: Metadata, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """botocore's instance-metadata provider answers "no credentials" when the service fails once; the chain ran
    only once, so every later line was spilled as ``auth`` for the life of the process."""
    monkeypatch.setattr(clients, "RESOLVE_RETRY_SECONDS", 0.0)
    spill = tmp_path / "spill"
    metadata.failing = True
    stream = mwaa_logging.open_stream("imds", "s", endpoint_url=local_aws.url, spill_to=str(spill),
                                      send_interval=0.05, spill_marker=False)
    stream.write("while the metadata service fails")
    assert stream.flush(10)
    assert stream.stats().spilled == {"auth": 1}
    metadata.failing = False
    stream.write("after it recovered")
    assert stream.close(10)
    assert stream.stats().delivered == 1 and stream.stats().balanced()
    assert local_aws.messages("imds", "s") == ["after it recovered"]
    assert [(r.message, r.reason) for r in spilled_records(spill)] == [("while the metadata service fails", "auth")]


def test_the_chain_is_not_run_again_before_the_retry_interval(metadata: Metadata) -> None:
    now = [0.0]
    found: list[None] = []

    def resolve() -> None:
        found.append(None)

    credentials = clients.DeferredChainCredentials(resolve, clock=lambda: now[0])
    for at in (0.0, 1.0, clients.RESOLVE_RETRY_SECONDS - 0.1, clients.RESOLVE_RETRY_SECONDS):
        now[0] = at
        with pytest.raises(NoCredentialsError):
            credentials.get_frozen_credentials()
    assert len(found) == 2


def test_credentials_near_their_expiry_are_refreshed_through_botocore(
    local_aws: LocalAWS, metadata: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials found on first use keep botocore's own refresh (inside its 10-minute window: on every use).
    Container credentials, as on MWAA and ECS (botocore extends instance-metadata ones near their expiry)."""
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "container")
    metadata.lifetime = timedelta(minutes=5)
    transport = BotocoreTransport(make_logs_client(endpoint_url=local_aws.url), compression="none")
    assert transport.create_log_group("refresh").outcome is Outcome.OK
    assert transport.create_log_stream("refresh", "s").outcome is Outcome.OK
    served = metadata.credentials_served
    assert transport.put_log_events("refresh", "s", [make_event(local_now(), "x", 0)]).outcome is Outcome.OK
    assert metadata.credentials_served > served
    signer: Any = transport.client._request_signer  # type: ignore[attr-defined]
    assert signer._credentials.access_key == f"AKID{metadata.credentials_served}"


def local_now() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)
