"""Airflow integration: ``[logging] logging_config_class = mwaa_logging.airflow.LOGGING_CONFIG``.

``LOGGING_CONFIG`` is Airflow's default logging config; with ``remote_logging`` on and a
``cloudwatch://`` remote base, task logs go through mwaa-logging (``REMOTE_TASK_LOG`` on Airflow 3,
the ``task`` handler on Airflow 2). The names are built on first access, so importing this package
outside Airflow costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_REMOTE_CONN_ID", "LOGGING_CONFIG", "REMOTE_TASK_LOG"]

_CONFIG_NAMES = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in _CONFIG_NAMES:
        from mwaa_logging.airflow import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
