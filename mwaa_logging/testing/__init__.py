"""A local CloudWatch Logs + S3 endpoint that behaves like AWS, for tests, benchmarks and demos.

Needs ``moto[server]`` (the ``testing`` extra). ``LocalAWS`` serves it in-process;
``RemoteLocalAWS`` controls one running in another process; ``python -m mwaa_logging.testing.cli``
serves it in the foreground.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mwaa_logging.testing.admin import RemoteLocalAWS
    from mwaa_logging.testing.faults import FaultKind, FaultRule
    from mwaa_logging.testing.local_aws import LocalAWS
    from mwaa_logging.testing.stats import Stats

__all__ = ["FaultKind", "FaultRule", "LocalAWS", "RemoteLocalAWS", "Stats"]

_LAZY = {
    "LocalAWS": "mwaa_logging.testing.local_aws",
    "RemoteLocalAWS": "mwaa_logging.testing.admin",
    "FaultKind": "mwaa_logging.testing.faults",
    "FaultRule": "mwaa_logging.testing.faults",
    "Stats": "mwaa_logging.testing.stats",
}


def __getattr__(name: str) -> Any:
    """Import lazily: ``import mwaa_logging.testing`` must not load moto."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
