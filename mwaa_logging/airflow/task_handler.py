"""Airflow 2 task handler on the mwaa-logging engine, a drop-in for the provider's ``CloudwatchTaskHandler``.

Airflow 2 runs a task as two forked processes (the ``--local`` supervisor and the ``--raw`` task),
both with this handler, both writing to the task's one stream; each has its own engine sender, and
each drains it (bounded by ``close_timeout``) when logging shuts down. Only import this module inside
Airflow 2: it subclasses Airflow's ``FileTaskHandler``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from airflow.utils.log.file_task_handler import FileTaskHandler

from mwaa_logging.airflow.clients import read_client, write_client
from mwaa_logging.airflow.naming import LogGroupTarget, stream_name_for
from mwaa_logging.airflow.reading import is_missing_stream, read_events
from mwaa_logging.settings import Settings


class CloudwatchTaskHandler(FileTaskHandler):  # type: ignore[misc]
    """Ships each task try's records to the stream the provider's handler would use.

    Extra keywords are mwaa-logging settings (``spill_to``, ``max_latency``, ...), e.g. from
    ``[logging] remote_task_handler_kwargs``; ``MWAA_LOGGING_*`` variables fill the rest.
    """

    trigger_should_wrap = True

    def __init__(
        self,
        base_log_folder: str,
        log_group_arn: str,
        max_bytes: int = 0,
        backup_count: int = 0,
        delay: bool = False,
        conn_id: str | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(base_log_folder=base_log_folder, max_bytes=max_bytes, backup_count=backup_count, delay=delay)
        self.target = LogGroupTarget.from_arn(log_group_arn)
        self.log_group = self.target.log_group_name
        self.region_name = self.target.region_name
        self.conn_id = conn_id if conn_id is not None else _remote_log_conn_id()
        self.settings = Settings.resolve(settings)
        self._overrides = {k: v for k, v in settings.items() if v is not None}
        self.stream_name = ""
        self.closed = False

    def _render_filename(self, ti: Any, try_number: int) -> str:
        return stream_name_for(super()._render_filename(ti, try_number))

    def set_context(self, ti: Any, *, identifier: str | None = None) -> None:
        """Open the stream of this task try (the local log file is not written, as with the provider)."""
        self.stream_name = self._render_filename(ti, ti.try_number)
        self.handler = self._build_handler()
        self.closed = False

    def _build_handler(self) -> logging.Handler:
        from mwaa_logging import CloudWatchLogHandler

        kwargs: dict[str, Any] = dict(self._overrides)
        if self.settings.endpoint_url is None:
            client = write_client(self.region_name, self.conn_id, self.settings.connect_timeout,
                                  self.settings.read_timeout)
            if client is not None:
                kwargs["boto3_client"] = client
        if self.settings.region_name is None:
            kwargs["region_name"] = self.region_name
        handler: logging.Handler = CloudWatchLogHandler(
            log_group_name=self.log_group, log_stream_name=self.stream_name, **kwargs
        )
        handler.setLevel(self.level)
        return handler

    def emit(self, record: logging.LogRecord) -> None:
        handler = self.handler
        if handler is None:
            return
        if getattr(handler, "shutting_down", False) and not self.closed:
            # dictConfig closed it mid-task: rebuild on the same stream instead of dropping records.
            self.handler = handler = self._build_handler()
        handler.emit(record)

    def close(self) -> None:
        """Drain this process's records of the task (bounded); idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.handler is not None:
            self.handler.close()

    def _read_remote_logs(self, ti: Any, try_number: int, metadata: Any = None) -> tuple[list[str], list[str]]:
        stream_name = self._render_filename(ti, try_number)
        messages = [f"mwaa-logging: reading CloudWatch log_group: {self.log_group} log_stream: {stream_name}"]
        client = read_client(self.region_name, self.conn_id, self.settings.endpoint_url)
        try:
            lines = [
                f"[{_zulu(event.timestamp)}] {event.message}"
                for event in read_events(client, self.log_group, stream_name, self.settings.spill_to)
            ]
        except Exception as exc:
            if not is_missing_stream(exc):
                messages.append(f"mwaa-logging could not read {self.log_group}/{stream_name}: {exc!r}")
            return messages, []
        return messages, ["\n".join(lines)]


def _zulu(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000.0, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _remote_log_conn_id() -> str | None:
    from airflow.configuration import conf

    return conf.get("logging", "remote_log_conn_id", fallback=None) or None
