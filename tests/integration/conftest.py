"""Fixtures shared by integration tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from mwaa_logging.testing.local_aws import LocalAWS


@pytest.fixture
def aws_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAWS]:
    """A local endpoint that this process's AWS configuration points at (endpoints + fake credentials)."""
    with LocalAWS() as local:
        for name, value in local.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield local


@pytest.fixture
def local_aws_server() -> Iterator[str]:
    """`mwaa-logging local-aws` in a process of its own, as a user starts it (other clients may use it too);
    yields its URL."""
    server = subprocess.Popen([sys.executable, "-m", "mwaa_logging.cli", "local-aws"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        server.terminate()
        server.wait(10)
