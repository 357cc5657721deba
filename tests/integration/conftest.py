"""Fixtures shared by integration tests."""

from __future__ import annotations

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
