"""mwaa-logging: ship Airflow (and any Python) logs to CloudWatch Logs fast, without losing a line."""

from __future__ import annotations

from typing import Any

from mwaa_logging.engine.stats import Stats
from mwaa_logging.errors import WatchtowerError, WatchtowerWarning
from mwaa_logging.formatter import CloudWatchLogFormatter
from mwaa_logging.handler import CloudWatchLogHandler
from mwaa_logging.settings import Settings, SettingsError
from mwaa_logging.stream import LogStream, open_stream

__all__ = [
    "CloudWatchLogFormatter",
    "CloudWatchLogHandler",
    "LogStream",
    "Settings",
    "SettingsError",
    "Stats",
    "WatchtowerError",
    "WatchtowerWarning",
    "flush_all",
    "open_stream",
    "patch_watchtower",
    "stats",
]
__version__ = "0.1.0"


def stats() -> Stats:
    """Counters of every handler and stream of this process, summed."""
    from mwaa_logging.engine.engine import get_engine

    return get_engine().stats()


def flush_all(timeout: float = 10.0) -> bool:
    """Deliver or spill everything every handler of this process holds, within ``timeout`` seconds."""
    from mwaa_logging.engine.engine import get_engine

    return get_engine().flush_all(timeout)


def patch_watchtower(**kwargs: Any) -> None:
    """Make ``watchtower.CloudWatchLogHandler`` (and modules that imported it) use mwaa-logging."""
    from mwaa_logging.compat import patch_watchtower as patch

    patch(**kwargs)
