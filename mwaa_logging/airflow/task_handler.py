"""Airflow 2 task handler on the mwaa-logging engine, a drop-in for the provider's ``CloudwatchTaskHandler``.

Airflow 2 runs a task as two forked processes (the ``--local`` supervisor and the ``--raw`` task),
both with this handler, both writing to the task's one stream; each has its own engine sender, and
each drains it (bounded by ``close_timeout``) when logging shuts down. The raw task also keeps its lines in a
write-ahead file until they settle (``mwaa_logging.airflow.wal``): if it is killed (SIGKILL, the OOM killer), the
supervisor, which outlives it, ships what it had not sent. Only import this module inside Airflow 2: it subclasses
Airflow's ``FileTaskHandler``.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
import weakref
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.utils.log.file_task_handler import FileTaskHandler

from mwaa_logging.airflow.clients import UNSETTLED_READ_CLIENT_SECONDS, read_client_settled, write_client
from mwaa_logging.airflow.naming import LogGroupTarget, stream_name_for
from mwaa_logging.airflow.reading import is_missing_stream, read_events
from mwaa_logging.airflow.wal import WAL_DIRECTORY, WriteAheadLog, queue_dead_logs, remove, wal_key, write_ahead
from mwaa_logging.build import check_buildable
from mwaa_logging.handler import (
    _LOGGING_SHUTDOWN_CODE,
    CloudWatchLogHandler,
    _caller_code,
    _remember_skipped,
    _skipped,
)
from mwaa_logging.settings import Settings, wait_timeout

#: What this Airflow's ``FileTaskHandler.__init__`` accepts.
_FILE_HANDLER_PARAMETERS = frozenset(inspect.signature(FileTaskHandler.__init__).parameters)


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
        # What can fail is checked before FileTaskHandler.__init__ registers the handler: a bad setting raised after
        # it, and logging.shutdown() then closed the half-built handler ("Exception ignored in atexit callback ...
        # AttributeError: ... no attribute 'closed'" after the setting's own error).
        target = LogGroupTarget.from_arn(log_group_arn)
        resolved = Settings.resolve(settings)
        check_buildable(resolved)  # (the inner handlers are built at each task's set_context)
        rotation = {"max_bytes": max_bytes, "backup_count": backup_count, "delay": delay}
        super().__init__(base_log_folder=base_log_folder,  # Airflow before 2.10 has no rotation keywords
                         **{k: v for k, v in rotation.items() if k in _FILE_HANDLER_PARAMETERS})
        self.target = target
        self.log_group = self.target.log_group_name
        self.region_name = self.target.region_name
        self.conn_id = conn_id if conn_id is not None else _remote_log_conn_id()
        self.settings = resolved
        self._overrides = {k: v for k, v in settings.items() if v is not None}
        self.stream_name = ""
        self.closed = False
        #: The inner handler this handler built (never that of a copy's original: Airflow's trigger and task context
        #: loggers copy a handler, then call set_context on the copy, and close it) and ``id(self)``.
        self._built: tuple[CloudWatchLogHandler, int] | None = None
        #: The raw task process's write-ahead log; in the supervisor, the key of the files it recovers at close.
        self._wal: WriteAheadLog | None = None
        self._recover_key: str | None = None
        #: The process that made the read client, the client, and until when (``time.monotonic()``) to use it.
        self._reader: tuple[int, Any, float] | None = None

    def _render_filename(self, ti: Any, try_number: int) -> str:
        return stream_name_for(super()._render_filename(ti, try_number))

    def set_context(self, ti: Any, *, identifier: str | None = None) -> None:
        """Open the stream of this task try. The local log file is created empty, as the provider's handler does,
        and never written: the webserver asks the worker's (or triggerer's) log server for it while the task runs,
        and a missing file made every poll show ``Could not read served logs: 404`` and log a traceback."""
        with suppress(OSError):  # as before when it cannot be created: only that poll's message comes back
            self._init_file(ti, identifier=identifier)
        self.stream_name = self._render_filename(ti, ti.try_number)
        self._wal, self._recover_key = None, None
        if identifier is None and not getattr(ti, "is_trigger_log_context", False):
            key = wal_key(self.log_group, self.stream_name)
            if getattr(ti, "raw", False):
                self._wal = WriteAheadLog(self._wal_directory(), key, **_wal_modes())
            else:  # the --local supervisor: it outlives the raw task
                self._recover_key = key
        self.handler = self._stream_handler()
        self.closed = False

    def _stream_handler(self) -> CloudWatchLogHandler:
        """The inner handler of ``self.stream_name``: the one this handler built already, if it is open and writes
        that stream, else a new one.

        The --local supervisor calls set_context three times per try (init_run_context, LocalTaskJobRunner,
        StandardTaskRunner), and the forked raw task once more, after it logged "Running: [...]" and "Job N: Subtask
        ..." into the handler it inherited (whose channel the fork emptied of the supervisor's events). A new handler
        each time left the one before unclosed: logging.shutdown() no longer saw it, and the raw task, which ends
        with os._exit(), lost those lines whenever it ended within a send interval."""
        built = self._built
        handler = built[0] if built is not None and built[1] == id(self) else None
        if handler is not None and handler is self.handler and not handler.shutting_down:
            if handler.log_stream_name == self.stream_name:
                handler.setLevel(self.level)
                if self._wal is not None:
                    self._wal.watch(handler._channel)
                return handler
            handler.close()  # another stream on this handler (bounded by close_timeout): its lines are sent first
        handler = self._build_handler()
        self._built = (handler, id(self))
        return handler

    def _wal_directory(self) -> Path:
        return Path(self.local_base, WAL_DIRECTORY)

    def _build_handler(self) -> CloudWatchLogHandler:
        kwargs: dict[str, Any] = dict(self._overrides)
        if self.settings.endpoint_url is None:
            client = write_client(self.region_name, self.conn_id, self.settings.connect_timeout,
                                  self.settings.read_timeout)
            if client is not None:
                kwargs["boto3_client"] = client
        if self.settings.region_name is None:
            kwargs["region_name"] = self.region_name
        handler = _StreamHandler(log_group_name=self.log_group, log_stream_name=self.stream_name, **kwargs)
        handler.setLevel(self.level)
        if self._wal is not None:
            self._wal.watch(handler._channel)
        return handler

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        """Drop what the inner handler never ships (botocore's, mwaa_logging's records) before taking this handler's
        lock: the sender logs those, and ``logging.shutdown()`` holds the lock while close() waits for the sender."""
        skipped = _skipped.get(record.name)
        if skipped is None:
            skipped = _remember_skipped(record.name)
        return False if skipped else bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        handler = self.handler
        if handler is None:
            return
        if getattr(handler, "shutting_down", False) and not _registered(handler):
            # dictConfig closed it (and this handler) mid-task, and forgot it: logging.shutdown() would not close it
            # again. Rebuild on the same stream, registered, instead of leaving the records to the exit hooks (which
            # the forked raw task, ending with os._exit(), never runs). Closed by logging.shutdown() or close(), it
            # takes the record after close (CloudWatchLogHandler delivers or spills it): a new handler made then
            # was waited for in full once more by flush() and close().
            self.handler = handler = self._build_handler()
            self._built = (handler, id(self))
            self.closed = False
        handler.emit(record)
        wal = self._wal
        if wal is not None:  # after queueing it (see mwaa_logging.airflow.wal)
            write_ahead(wal, handler, record)

    def flush(self) -> None:
        """Deliver what was emitted so far (bounded by ``close_timeout``). From logging.shutdown(), which calls close()
        next (that waits), ask for delivery and return: it waited the full close_timeout for an endpoint that does
        not answer (CloudWatchLogHandler.flush saw this method as its caller, not logging.shutdown)."""
        handler = self.handler
        if handler is None:
            return
        if _caller_code() is _LOGGING_SHUTDOWN_CODE and isinstance(handler, CloudWatchLogHandler):
            handler.flush(0.0)
        else:
            handler.flush()

    def close(self) -> None:
        """Drain this process's records of the task (bounded); idempotent. The supervisor first queues what a dead
        raw task process left unsent; the raw task removes its write-ahead file once everything settled."""
        if self.closed:
            return
        self.closed = True
        recovered = self._recover() if self.handler is not None else []
        if self.handler is not None:
            self.handler.close()
        if self._wal is not None:
            self._wal.finish()
        for path in recovered:
            remove(path)

    def _recover(self) -> list[Path]:
        """Queue the unsettled lines of dead task processes of this stream (see :func:`queue_dead_logs`)."""
        handler = self.handler
        if self._recover_key is None or not isinstance(handler, CloudWatchLogHandler):
            return []
        return queue_dead_logs(handler, self._wal_directory(), self._recover_key)

    def _read_client(self) -> Any:
        """The client that reads streams back, made once per process: the UI polls a running task's log every few
        seconds, and each poll built a hook, looked the connection up and made a client (with a ``role_arn``
        connection, an STS AssumeRole too)."""
        now = time.monotonic()
        if self._reader is None or self._reader[0] != os.getpid() or now >= self._reader[2]:
            client, settled = read_client_settled(self.region_name, self.conn_id, self.settings.endpoint_url)
            # a fallback because the connection could not be looked up is tried again a minute later
            self._reader = (os.getpid(), client, math.inf if settled else now + UNSETTLED_READ_CLIENT_SECONDS)
        return self._reader[1]

    def _read_remote_logs(self, ti: Any, try_number: int, metadata: Any = None) -> tuple[list[str], list[str]]:
        stream_name = self._render_filename(ti, try_number)
        messages = [f"mwaa-logging: reading CloudWatch log_group: {self.log_group} log_stream: {stream_name}"]
        client = self._read_client()
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


class _StreamHandler(CloudWatchLogHandler):
    """The inner handler of a task try's stream. A close that comes before an earlier close's deadline shares that
    deadline (after it, a close gets its own close_timeout: with none left, pending lines were spilled unsent):
    logging.shutdown() closes it (it is a registered handler), a record logged by another thread after that reopens
    it, and the task handler's close() then closed it again with a full close_timeout of its own.

    A record after close() does not warn: Airflow's own threads log after its supervisor closed the handler (a
    metrics thread's "Process not found"), and Airflow shows warnings in the task's log."""

    warns_after_close = False

    def close(self, timeout: float | None = None) -> None:  # type: ignore[override]
        pid, now = os.getpid(), time.monotonic()
        first = _close_deadlines.get(self)
        if first is None or first[0] != pid or now >= first[1]:  # after the deadline: a close_timeout of its own
            wait = wait_timeout(timeout)
            first = _close_deadlines[self] = (pid, now + (self.settings.close_timeout if wait is None else wait))
        super().close(max(0.0, first[1] - now))


#: When each inner handler's close() must be done by, and in which process (a forked child closes it anew).
_close_deadlines: weakref.WeakKeyDictionary[CloudWatchLogHandler, tuple[int, float]] = weakref.WeakKeyDictionary()


def _registered(handler: logging.Handler) -> bool:
    """Whether ``handler`` is still one logging.shutdown() closes (dictConfig forgets every handler it closes)."""
    return any(ref() is handler for ref in list(getattr(logging, "_handlerList", ())))


def _wal_modes() -> dict[str, int]:
    """The permissions Airflow gives task log files and folders (the supervisor may be another user)."""
    from airflow.configuration import conf

    return {
        "file_mode": int(conf.get("logging", "file_task_handler_new_file_permissions", fallback="0o664"), 8),
        "dir_mode": int(conf.get("logging", "file_task_handler_new_folder_permissions", fallback="0o775"), 8),
    }


def _zulu(timestamp_ms: int) -> str:
    """The event's time for the UI's line, to the millisecond: Airflow 2 sorts the lines it shows by it and drops a
    line equal to the one before (to the second, a line logged five times within one second showed once)."""
    moment = datetime.fromtimestamp(timestamp_ms // 1000, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{timestamp_ms % 1000:03d}Z"


def _remote_log_conn_id() -> str | None:
    from airflow.configuration import conf

    return conf.get("logging", "remote_log_conn_id", fallback=None) or None
