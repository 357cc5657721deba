"""pytest fixtures for the local endpoint; use them from a conftest.py::

    from mwaa_logging.testing.fixtures import aws_test_env, local_aws, logs_client  # noqa: F401
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from mwaa_logging.testing.local_aws import FAKE_CREDENTIALS, LocalAWS

#: Variables that could point a test at a real account or endpoint.
_REAL_AWS_VARIABLES = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_REGION",
)


@pytest.fixture
def aws_test_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials and region; no profile, no endpoint override, no ~/.aws files, no IMDS."""
    for name in list(os.environ):
        if name in _REAL_AWS_VARIABLES or name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_CREDENTIALS.items():
        if name != "AWS_SESSION_TOKEN":
            monkeypatch.setenv(name, value)
    missing = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def local_aws(aws_test_env: None) -> Iterator[LocalAWS]:
    """A fresh endpoint per test (own moto account), stopped after it."""
    with LocalAWS() as aws:
        yield aws


@pytest.fixture
def logs_client(local_aws: LocalAWS) -> Any:
    """boto3 CloudWatch Logs client on ``local_aws``, botocore retries off (one attempt per call)."""
    from botocore.config import Config

    return local_aws.client("logs", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.fixture
def s3_client(local_aws: LocalAWS) -> Any:
    return local_aws.client("s3")
