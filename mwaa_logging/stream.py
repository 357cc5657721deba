"""``open_stream``: write to one log stream without the logging module (Airflow 3 processors, tools)."""

from __future__ import annotations

import time
from typing import Any

from mwaa_logging.build import build_channel
from mwaa_logging.engine.channel import Channel
from mwaa_logging.engine.stats import Stats
from mwaa_logging.errors import WatchtowerError
from mwaa_logging.handler import check_flags, validate_group_name
from mwaa_logging.settings import Settings, SettingsError, wait_timeout
from mwaa_logging.streamnames import sanitize


class LogStream:
    """One log stream of one log group, sharing the process-wide sender."""

    def __init__(self, channel: Channel, stream: str) -> None:
        self._channel = channel
        self.log_group_name = channel.destination.group
        self.log_stream_name = sanitize(stream)

    def write(self, message: str, timestamp_ms: int | None = None) -> None:
        """Buffer one event (non-blocking). ``timestamp_ms`` defaults to now.

        Lines of threads that outlive the main thread are sent as usual, and flushed by the last exit hook (atexit,
        after those threads were joined). After that hook (an ``atexit`` function registered before this library
        started) nothing else would send a line: it is delivered now, within what is left of one ``close_timeout``
        shared by all such lines, else spilled."""
        if not isinstance(message, str):  # as a text file's write (bytes queued would stall the stream)
            raise TypeError(f"write() takes a str message, not {type(message).__name__}")
        channel = self._channel
        if channel.closed:
            channel.reopen()
        ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        channel.append(self.log_stream_name, ts, message)
        if channel.closed:  # closed, and retired once empty, since the look above: served again
            channel.engine.serve(channel)
        if channel.engine.exited:
            channel.close(channel.engine.late_flush_timeout(channel.settings.close_timeout))

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver or spill everything written so far; False if ``timeout`` passed first."""
        return self._channel.flush(wait_timeout(timeout))

    def close(self, timeout: float | None = None) -> bool:
        """Flush until ``timeout``, then spill what is left. True if nothing was left at the deadline (every
        event delivered or, earlier, spilled: :meth:`stats` tells which)."""
        return self._channel.close(wait_timeout(timeout))

    def stats(self) -> Stats:
        return self._channel.stats()


def open_stream(log_group_name: str, log_stream_name: str, *, boto3_client: Any = None,
                boto3_profile_name: str | None = None, create_log_group: bool = True,
                create_log_stream: bool = True, **settings: Any) -> LogStream:
    """A :class:`LogStream`; ``settings`` as for the handler (keywords > ``MWAA_LOGGING_*`` > defaults), and the
    handler's checks of its other arguments."""
    if not isinstance(log_stream_name, str):
        raise SettingsError(f"invalid setting log_stream_name={log_stream_name!r}: expected a string")
    if boto3_client is not None and boto3_profile_name is not None:
        raise WatchtowerError("Either boto3_client or boto3_profile_name can be specified, but not both")
    flags = check_flags(create_log_group=create_log_group, create_log_stream=create_log_stream)
    channel = build_channel(
        log_group_name=validate_group_name(log_group_name), settings=Settings.resolve(settings),
        boto3_client=boto3_client, boto3_profile_name=boto3_profile_name,
        create_log_group=flags["create_log_group"], create_log_stream=flags["create_log_stream"],
    )
    channel.engine.attach(channel)
    return LogStream(channel, log_stream_name)
