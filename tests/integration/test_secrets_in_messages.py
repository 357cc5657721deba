"""A password written in an endpoint URL (``http://user:password@host``) is not repeated in our messages: botocore
quotes the URL in its connection errors, which the handler's warnings and the CLI's errors carry."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest

import mwaa_logging
from mwaa_logging.testing.local_aws import LocalAWS

SECRET = "Sup3rSecretPassw0rd"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_spill_to_an_unreachable_s3_endpoint_is_said_without_its_password(
        local_aws: LocalAWS, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://minio:{SECRET}@127.0.0.1:{closed_port()}")
    local_aws.faults.inject("unavailable")
    try:
        handler = mwaa_logging.CloudWatchLogHandler(
            log_group_name="g", log_stream_name="s", endpoint_url=local_aws.url, spill_to="s3://spill-bucket/p",
            close_timeout=1)
        logger = logging.getLogger("secret-endpoint")
        logger.handlers[:], logger.propagate = [handler], False
        logger.warning("a line")
        handler.close()
    finally:
        local_aws.faults.clear()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("mwaa_logging")]
    assert any("Could not connect to the endpoint URL" in m and "minio:***@127.0.0.1" in m for m in said), said
    assert not any(SECRET in m for m in said), said


@pytest.mark.parametrize("command", [["replay", "s3://spill-bucket/p", "--no-progress"],
                                     ["read", "g", "s", "--spill-to", "s3://spill-bucket/p"]])
def test_the_cli_says_an_unreachable_endpoint_without_its_password(command: list[str]) -> None:
    url = f"http://minio:{SECRET}@127.0.0.1:{closed_port()}"
    run = subprocess.run([sys.executable, "-m", "mwaa_logging.cli", *command, "--s3-endpoint-url", url,
                          "--endpoint-url", url], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AWS_MAX_ATTEMPTS": "1"})
    assert "Could not connect to the endpoint URL" in run.stderr, run.stderr
    assert "minio:***@127.0.0.1" in run.stderr and SECRET not in run.stdout + run.stderr, run.stderr
