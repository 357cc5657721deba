"""Shared fixtures: fake AWS environment for every test, root logger restored, local AWS endpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mwaa_logging.testing.fixtures import aws_test_env, local_aws, logs_client, s3_client

__all__ = ["aws_test_env", "local_aws", "logs_client", "s3_client"]


@pytest.fixture(autouse=True)
def _fake_aws_environment(aws_test_env: None) -> None:
    """Every test runs with fake credentials, region us-east-1 and no real profile or endpoint."""


@pytest.fixture(autouse=True, scope="session")
def _own_cache_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default spill directory (``$XDG_CACHE_HOME/mwaa-logging/spill``), which handlers fall back to and
    readers search, is the suite's own: never the user's cache, never lines of an earlier run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level, and every logger's disabled flag, back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    disabled = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items()
                if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lg in list(logging.Logger.manager.loggerDict.items()):  # dictConfig disables loggers
            if isinstance(lg, logging.Logger):
                lg.disabled = disabled.get(name, False)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For pytest-xdist's ``--dist loadgroup`` (``scripts/test.sh`` runs two workers): the tests of one real
    Airflow (its session-scoped virtualenv, database and servers) run in one worker, and so do the tests of the
    built wheel (built once); the rest spread freely."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        if "wheel" in fixtures:
            item.add_marker(pytest.mark.xdist_group("wheel"))
        elif "airflow2" in fixtures:
            item.add_marker(pytest.mark.xdist_group("airflow2"))
        elif "airflow3_venv" in fixtures and callspec is not None:
            item.add_marker(pytest.mark.xdist_group(f"airflow3-{callspec.params['airflow3_venv']}"))
