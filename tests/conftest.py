"""Shared fixtures: fake AWS environment for every test, root logger restored, local AWS endpoint."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(autouse=True, scope="session")
def _no_budget_files_left() -> Iterator[None]:
    """Host budget files of the namespaces tests make (they carry this process's pid) are removed at the end: a
    handler's sender may still open one after its test removed them."""
    yield
    from mwaa_logging.budgets.host import default_directory

    for left in default_directory().glob(f"*-{os.getpid()}-*.budget"):
        left.unlink(missing_ok=True)


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
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For pytest-xdist's ``--dist loadgroup`` (``scripts/test.sh`` runs two workers): the tests of one real
    Airflow (its session-scoped virtualenv, database and servers) run in one worker, and so do the tests of the
    built wheel (built once); the rest spread freely. Without the plugin (``-p no:xdist``) there is no mark."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        if "wheel" in fixtures:
            item.add_marker(pytest.mark.xdist_group("wheel"))
        elif "airflow2_venv" in fixtures and callspec is not None:
            item.add_marker(pytest.mark.xdist_group(f"airflow2-{callspec.params['airflow2_venv']}"))
        elif "airflow3_venv" in fixtures and callspec is not None:
            item.add_marker(pytest.mark.xdist_group(f"airflow3-{callspec.params['airflow3_venv']}"))


def pytest_configure(config: pytest.Config) -> None:
    """Refuse ``--dist loadgroup`` on the pytest and pytest-xdist releases known not to group (pytest-xdist#1386:
    xdist 3.8 renames ``item._nodeid``, which pytest 9.2 no longer reads); pyproject.toml pins pytest below 9.2."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    from importlib.metadata import version

    from packaging.version import Version

    if Version(pytest.__version__) >= Version("9.2") and Version(version("pytest-xdist")) <= Version("3.8.0"):
        raise pytest.UsageError(f"pytest {pytest.__version__} with pytest-xdist {version('pytest-xdist')} does not "
                                "group --dist loadgroup (pytest-xdist#1386): install pytest<9.2")


def pytest_collection_finish(session: pytest.Session) -> None:
    """In an xdist worker under ``--dist loadgroup``: a grouped test whose node id lacks its ``@group`` suffix
    means this pytest and pytest-xdist no longer group (pytest-xdist#1386, pytest 9.2): every Airflow would then
    start in both workers. Stop rather than run the suite that way."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    ungrouped = [item.nodeid for item in session.items
                 if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (and {len(ungrouped) - 1} more): "
                                "this pytest and pytest-xdist do not work together (pytest-xdist#1386)")


_spill_namespaces = itertools.count()


@pytest.fixture
def spill_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``spill_to`` of the handlers a test builds (``MWAA_LOGGING_SPILL_TO``), the fallback directory beside it, and a
    throttle budget of its own (throttles seen by an earlier test must not slow this one)."""
    path = tmp_path / "spill"
    monkeypatch.setenv("MWAA_LOGGING_SPILL_TO", str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the fallback spill directory
    monkeypatch.setenv("MWAA_LOGGING_RATE_LIMIT_NAMESPACE", f"test-spill-dir-{os.getpid()}-{next(_spill_namespaces)}")
    return path

