"""Build the budgets a sender needs from ``rate_limit_scope`` and the rate settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mwaa_logging import limits
from mwaa_logging.budget import BudgetConfig
from mwaa_logging.budgets.host import HostBudget, budget_path
from mwaa_logging.budgets.process import ProcessBudget
from mwaa_logging.budgets.urls import check_redis_url, hide_credentials, redact
from mwaa_logging.protocols import Budget

log = logging.getLogger(__name__)

#: Scopes that are not URLs.
LOCAL_SCOPES = ("process", "host")
#: URL schemes that select the fleet (Redis) scope.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

#: Budget names, also their file and Redis key suffixes.
PUT = "put"
CREATE_STREAM = "create-stream"
CREATE_GROUP = "create-group"


def is_fleet(scope: str) -> bool:
    """True for a Redis URL."""
    return scope.startswith(REDIS_SCHEMES)


def validate_scope(scope: str) -> str:
    """``scope`` if it is ``process``, ``host`` or a usable Redis URL; else ``ValueError``."""
    if scope in LOCAL_SCOPES:
        return scope
    if is_fleet(scope):
        try:
            check_redis_url(scope)
        except ValueError as exc:
            raise ValueError(f"rate_limit_scope {redact(scope)!r} is not a usable Redis URL: {exc}") from exc
        return scope
    raise ValueError(
        "rate_limit_scope must be 'process', 'host' or a redis://, rediss:// or unix:// URL, "
        f"got {hide_credentials(scope)!r}"
    )


def build_budget(
    scope: str,
    *,
    rate: float | None,
    burst: float | None,
    name: str = PUT,
    namespace: str = "mwaa-logging",
    directory: Path | None = None,
    redis_timeout: float = 0.1,
) -> Budget:
    """The budget called ``name`` for ``scope``: ``process``, ``host``, or ``redis[s]://host:port/db``.

    ``rate`` (calls/s for the whole scope; ``None``: unlimited until throttled) and ``burst``
    (calls; ``None``: one second of ``rate``) should be the same in every participant. A fleet
    budget falls back to the host budget of the same name while Redis fails (refuses, or times out for 1 s or more).
    """
    config = BudgetConfig(rate=rate, burst=burst)
    if validate_scope(scope) == "process":
        return ProcessBudget(config)
    host = _host_budget(config, name, namespace, directory)
    if scope == "host":
        return host
    from mwaa_logging.budgets.redis import RedisBudget

    return RedisBudget(scope, config, host, name, namespace=namespace, timeout=redis_timeout)


def _host_budget(config: BudgetConfig, name: str, namespace: str, directory: Path | None) -> HostBudget | ProcessBudget:
    """The host budget, or (said in the log) this process's own when its file cannot be had: a full
    ``/dev/shm``, a directory this user may not write. Logging goes on; only the sharing is lost."""
    try:
        return HostBudget(config, name, namespace=namespace, directory=directory)
    except OSError as exc:
        log.warning("host budget %r cannot use %s (%s): this process keeps its own budget, not shared with the "
                    "host's other processes", name, budget_path(name, namespace, directory, config=config),
                    exc.strerror or exc)
        return ProcessBudget(config)


@dataclass(frozen=True)
class Budgets:
    """One budget per kind of call, each with its own quota and key."""

    put: Budget
    create_stream: Budget
    create_group: Budget


def build_budgets(
    scope: str,
    *,
    put_rate: float | None,
    put_burst: float | None = None,
    create_stream_rate: float = limits.CREATE_LOG_STREAM_TPS,
    create_group_rate: float = limits.CREATE_LOG_GROUP_TPS,
    namespace: str = "mwaa-logging",
    directory: Path | None = None,
    redis_timeout: float = 0.1,
) -> Budgets:
    """The PutLogEvents budget and the small CreateLogStream / CreateLogGroup ones, in one scope.

    The create budgets default to the account quotas (50 and 10 calls/s) as ceilings, with the
    adaptive rate below them when CloudWatch throttles.
    """

    def one(name: str, rate: float | None, burst: float | None) -> Budget:
        return build_budget(
            scope,
            rate=rate,
            burst=burst,
            name=name,
            namespace=namespace,
            directory=directory,
            redis_timeout=redis_timeout,
        )

    return Budgets(
        put=one(PUT, put_rate, put_burst),
        create_stream=one(CREATE_STREAM, create_stream_rate, None),
        create_group=one(CREATE_GROUP, create_group_rate, None),
    )
