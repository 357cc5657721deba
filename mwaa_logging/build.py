"""The composition root: turn user-facing arguments and :class:`Settings` into a wired :class:`Channel`.

The only place that chooses concrete transports, spill targets and budgets.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mwaa_logging.aws.clients import forget_pooled_connections, make_logs_client
from mwaa_logging.aws.transport import BotocoreTransport
from mwaa_logging.budgets.urls import redact
from mwaa_logging.engine.channel import Budgets, Channel, Destination
from mwaa_logging.engine.diagnostics import report
from mwaa_logging.engine.engine import Engine, get_engine
from mwaa_logging.limits import CREATE_LOG_GROUP_TPS, CREATE_LOG_STREAM_TPS
from mwaa_logging.protocols import Budget, SpillSink, Transport
from mwaa_logging.settings import SPECS, Settings, SettingsError
from mwaa_logging.spill.factory import build_spill_sink, is_s3_url, local_directory_of
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spill.local import default_spill_directory, default_spill_sink

_said_default_spill = threading.Event()
_budget_cache: dict[tuple[Any, ...], Budget] = {}
_budget_lock = threading.Lock()


def build_channel(
    *,
    log_group_name: str,
    settings: Settings,
    boto3_client: Any = None,
    boto3_profile_name: str | None = None,
    create_log_group: bool = True,
    create_log_stream: bool = True,
    log_group_tags: Mapping[str, str] | None = None,
    log_group_retention_days: int | None = None,
    engine: Engine | None = None,
    transport: Transport | None = None,
    spill: SpillSink | None = None,
    fallback_spill: SpillSink | None = None,
    budgets: Budgets | None = None,
) -> Channel:
    """Everything one handler needs, with no network I/O (clients connect on first use)."""
    log_group_retention_days = retention_days(log_group_retention_days)
    check_watchtower_arguments(boto3_client, log_group_tags, log_group_retention_days)
    check_buildable(settings)
    if boto3_client is not None:
        _say_unused_client_settings(settings, boto3_client)
    given = transport
    built_in = os.getpid()

    def transport_factory() -> Transport:
        if given is not None:
            return given
        client = make_logs_client(
            boto3_client, boto3_profile_name, region_name=settings.region_name,
            endpoint_url=settings.endpoint_url, connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )
        if boto3_client is not None and os.getpid() != built_in:
            forget_pooled_connections(client)  # the user's client came through a fork with the parent's sockets
        return BotocoreTransport(client, compression=settings.compression)  # type: ignore[arg-type]

    # this process's transport, built now: a missing region or a bad profile fails here, not in the sender
    first_transport = given if given is not None else _checked_transport(transport_factory)
    sink = spill if spill is not None else _spill_sink(settings, boto3_profile_name)
    # The configured target may fail (disk full, S3 down): the default directory is the last resort.
    fallback = fallback_spill or default_spill_sink()
    channel = Channel(
        Destination(log_group_name, create_log_group, create_log_stream, log_group_tags,
                    log_group_retention_days),
        settings,
        transport_factory,
        sink,
        budgets or build_budgets(settings),
        engine or get_engine(),
        fallback_spill=fallback,
        transport=first_transport,
    )
    if isinstance(sink, FallbackSpillSink) and sink.on_fallback is None:
        sink.on_fallback = functools.partial(_spill_fell_back, channel, sink.cooldown)
    for target in sink.sinks if isinstance(sink, FallbackSpillSink) else [sink]:
        if hasattr(target, "on_late_store") and target.on_late_store is None:
            target.on_late_store = functools.partial(_spill_stored_late, channel)
    return channel


def _spill_stored_late(channel: Channel, count: int, url: str) -> None:
    """S3 confirmed a spill object after the deadline had sent its events to the next target: they are stored
    twice (a replay of both puts them twice; ``read`` shows them once). Counted as duplicates, and said."""
    with channel.lock:
        channel.counters.duplicates += count
    report(f"{url} was stored after the spill deadline: its {count} events had gone on to the next spill target "
           "(or back to CloudWatch): they are stored twice")


def _spill_fell_back(channel: Channel, cooldown: float, failures: Sequence[tuple[str, str]], stored_by: str) -> None:
    """A spill target of the chain failed and a later one stored the events: say it, count it (S3 refusing every
    PutObject went unsaid, with ``spill_failures`` 0, while every spilled line went to the local disk)."""
    with channel.lock:
        channel.counters.spill_failures += 1
    for failed, error in failures:
        report(f"spill to {failed} failed ({error}); events go to {stored_by} instead, and {failed} is tried "
               f"again in {cooldown:g} s")


#: The retention periods CloudWatch accepts (PutRetentionPolicy), in days.
RETENTION_DAYS = frozenset({1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                            2922, 3288, 3653})


def retention_days(value: Any) -> Any:
    """``log_group_retention_days`` as the int CloudWatch takes: a whole number given as a float (``7.0``) or as
    text (a config file's ``"7"`` or ``"7.0"``) is that int; 0 is None (no policy), as watchtower skips a falsy
    value. Another float or number text is refused, naming the setting; anything else is left to
    :func:`check_watchtower_arguments`."""
    given = value
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii():
            return given
        try:
            value = int(text) if text.isdigit() else float(text)
        except ValueError:
            return given
    if isinstance(value, float):
        if not value.is_integer():
            raise SettingsError(f"invalid setting log_group_retention_days={given!r}: expected a whole number of "
                                f"days, one of CloudWatch's retention periods ({_retention_periods()})")
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return None
    return value


def _retention_periods() -> str:
    return f"{', '.join(map(str, sorted(RETENTION_DAYS)))} days"


def check_watchtower_arguments(boto3_client: Any, log_group_tags: Any, log_group_retention_days: Any) -> None:
    """Refuse, naming the argument, what CloudWatch or we would only refuse later, in the sender."""
    if boto3_client is not None and not callable(getattr(boto3_client, "put_log_events", None)):
        raise SettingsError(f"invalid setting boto3_client={boto3_client!r}: expected a boto3 CloudWatch Logs client")
    if log_group_tags is not None and not (
            isinstance(log_group_tags, Mapping) and len(log_group_tags) <= 50
            and all(isinstance(k, str) and 1 <= len(k) <= 128 and isinstance(v, str) and len(v) <= 256
                    for k, v in log_group_tags.items())):
        raise SettingsError(f"invalid setting log_group_tags={log_group_tags!r}: expected a mapping of at most 50 "
                            "tags, str keys of 1-128 characters to str values of at most 256")
    if log_group_retention_days is not None and (
            not isinstance(log_group_retention_days, int) or isinstance(log_group_retention_days, bool)
            or log_group_retention_days not in RETENTION_DAYS):
        # (an int: 7.0 == 7 is in RETENTION_DAYS, and failed in the sender with a ParamValidationError)
        raise SettingsError(f"invalid setting log_group_retention_days={log_group_retention_days!r}: expected one "
                            f"of CloudWatch's retention periods ({_retention_periods()})")


#: Settings that configure the CloudWatch Logs client we build, and so do nothing when the caller passes one.
CLIENT_SETTINGS = ("endpoint_url", "connect_timeout", "read_timeout")


def _say_unused_client_settings(settings: Settings, client: Any) -> None:
    """The Amazon provider and MWAA always pass ``boto3_client``: say which of our client settings it does not have
    (they were taken silently, e.g. ``MWAA_LOGGING_READ_TIMEOUT=2`` under the shim left the client's 60 s)."""
    meta = getattr(client, "meta", None)
    has = {"endpoint_url": getattr(meta, "endpoint_url", None),
           "connect_timeout": getattr(getattr(meta, "config", None), "connect_timeout", None),
           "read_timeout": getattr(getattr(meta, "config", None), "read_timeout", None)}
    unused = [f"{name}={getattr(settings, name)!r}" for name in CLIENT_SETTINGS
              if getattr(settings, name) != SPECS[name].default and getattr(settings, name) != has[name]]
    if unused:
        report(f"{', '.join(unused)} not applied: CloudWatch Logs calls use the boto3_client given, with its own "
               "endpoint and timeouts")


def _checked_transport(factory: Callable[[], Transport]) -> Transport:
    """Build the client now (no network I/O) so that a missing region or a bad profile fails at construction."""
    from botocore.exceptions import BotoCoreError

    try:
        return factory()
    except BotoCoreError as exc:
        raise SettingsError(f"invalid AWS configuration for CloudWatch Logs ({exc}): set region_name / "
                            "MWAA_LOGGING_REGION_NAME or AWS_DEFAULT_REGION (botocore does not read AWS_REGION), "
                            "and check boto3_profile_name") from exc


def _check_spill_directory(spill_to: str) -> None:
    """A local ``spill_to`` that can never be a directory (a file, or a path under a file, such as ``/dev/null``)
    is refused now, not at the first spill in an outage."""
    path = Path(local_directory_of(spill_to))
    try:
        for place in (path, *path.parents):
            if place.exists():
                if not place.is_dir():
                    raise SettingsError(f"invalid setting spill_to={spill_to!r}: {str(place)!r} is not a directory")
                return
    except OSError:  # cannot be looked at from here (permissions, a long name): the first spill will tell
        return


def check_buildable(settings: Settings) -> None:
    """Refuse, naming the setting, what building a handler from ``settings`` would refuse, without building one: a
    local ``spill_to`` that can never be a directory, a Redis ``rate_limit_scope`` without redis-py. For integrations
    that build their handlers later (Airflow 2 at each task's ``set_context``): checked where they are configured,
    every task failed with the setting's error instead."""
    if settings.spill_to is not None and not is_s3_url(settings.spill_to):
        _check_spill_directory(settings.spill_to)
    if settings.rate_limit_scope not in ("process", "host") and importlib.util.find_spec("redis") is None:
        raise SettingsError(f"invalid setting rate_limit_scope={redact(settings.rate_limit_scope)!r}: a Redis scope "
                            "needs redis-py, which is not installed (pip install 'mwaa-logging[redis]')")


def _spill_sink(settings: Settings, profile_name: str | None) -> SpillSink:
    if settings.spill_to is None and not _said_default_spill.is_set():
        _said_default_spill.set()
        report(f"spill_to is not set: events CloudWatch cannot take in time go to {default_spill_directory()}",
               level=20)
    return build_spill_sink(
        settings.spill_to,
        s3_kms_key_id=settings.spill_s3_kms_key_id,
        s3_expected_bucket_owner=settings.spill_s3_expected_bucket_owner,
        s3_tags=settings.spill_s3_tags,
        s3_profile_name=profile_name,
        s3_region_name=settings.region_name,
    )


def build_budgets(settings: Settings, *, shared: bool = True) -> Budgets:
    """Budgets for the settings' scope; ``shared``: the same objects for every handler of the process."""
    return Budgets(
        put=_budget(settings, "put", settings.put_rate_limit, settings.rate_limit_burst, shared),
        create_stream=_budget(settings, "create_stream", float(CREATE_LOG_STREAM_TPS), None, shared),
        create_group=_budget(settings, "create_group", float(CREATE_LOG_GROUP_TPS), None, shared),
    )


def _budget(settings: Settings, name: str, rate: float | None, burst: float | None, shared: bool) -> Budget:
    from mwaa_logging.budgets.factory import build_budget

    def build() -> Budget:
        return build_budget(settings.rate_limit_scope, rate=rate, burst=burst, name=name,
                            namespace=settings.rate_limit_namespace)

    if not shared:
        return build()
    key = (settings.rate_limit_scope, settings.rate_limit_namespace, name, rate, burst)
    with _budget_lock:
        budget = _budget_cache.get(key)
        if budget is None:
            budget = _budget_cache[key] = build()
        return budget
