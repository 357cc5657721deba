"""Benchmark configuration: ``bench_*.py`` files, sizes by mode, the endpoint process, fake AWS settings.

``MWAA_LOGGING_BENCH=short`` (default, what CI runs) or ``full`` picks the sizes (see ``_workloads.py``).
Run everything with ``scripts/bench.sh``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _workloads import FULL, MODE, Endpoint, clean_aws_environ


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("python_files", "bench_*.py")
    config.addinivalue_line("markers", "full_only: runs only with MWAA_LOGGING_BENCH=full (deselected in short mode)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    deselected = [item for item in items if item.get_closest_marker("full_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("full_only")]


def pytest_report_header(config: pytest.Config) -> str:
    return f"mwaa-logging benchmarks: {MODE} mode (MWAA_LOGGING_BENCH=short|full)"


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials, no AWS config files or endpoint overrides, spills into a temp directory."""
    import os

    wanted = clean_aws_environ(os.environ)
    for name in set(os.environ) - set(wanted):
        monkeypatch.delenv(name)
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MWAA_LOGGING_SPILL_TO", str(tmp_path_factory.mktemp("spill")))


@pytest.fixture(scope="session")
def endpoint() -> Iterator[Endpoint]:
    """One unthrottled local endpoint process for the session (benchmarks use their own groups)."""
    with Endpoint() as running:
        yield running
