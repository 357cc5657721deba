"""Airflow 3 remote task logging on the mwaa-logging engine (Airflow's ``RemoteLogIO`` protocol).

In Airflow 3 the task runs in a child process that sends its log lines to its supervisor; the
supervisor runs :attr:`CloudWatchRemoteLogIO.processors` on every line, then calls
:meth:`~CloudWatchRemoteLogIO.upload` once the task has ended. Here each line is appended to the
task's engine stream (never blocks, no logging handler that ``dictConfig`` could close), and
``upload`` is a bounded drain of that one stream: when it returns, every line is in CloudWatch or
spilled. ``read``/``stream`` give the Airflow UI the complete log back.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from mwaa_logging.airflow.clients import UNSETTLED_READ_CLIENT_SECONDS, read_client_settled, write_client
from mwaa_logging.airflow.messages import (
    JsonDefault,
    align_local_timestamp,
    event_to_message,
    json_serialize_legacy,
    message_to_line,
)
from mwaa_logging.airflow.naming import LogGroupTarget, stream_name_for
from mwaa_logging.airflow.reading import is_missing_stream, read_events
from mwaa_logging.build import check_buildable
from mwaa_logging.engine.stats import Stats
from mwaa_logging.reader import ReadEvent
from mwaa_logging.settings import Settings

SOURCE_PREFIX = "mwaa-logging: reading CloudWatch"
#: A stream nothing was written to for this long, and never uploaded, is closed when the next stream opens (every
#: DAG file's processor log opens a stream a day, and Airflow uploads none of them).
IDLE_STREAM_SECONDS = 900.0

#: Airflow's log response: (sources shown in a collapsed group, lines or line generators).
LogResponse = tuple[list[str], list[str]]
StreamingLogResponse = tuple[list[str], list[Iterator[str]]]


class Stream(Protocol):
    """What the IO needs from an engine stream (:func:`mwaa_logging.open_stream`)."""

    def write(self, message: str, timestamp_ms: int | None = None) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def close(self, timeout: float | None = None) -> bool: ...

    def stats(self) -> Stats: ...


StreamOpener = Callable[..., Stream]
ClientFactory = Callable[[], Any]
EventReader = Callable[[Any, str, str, "str | None"], Iterator[ReadEvent]]


def _open_engine_stream(log_group_name: str, log_stream_name: str, **kwargs: Any) -> Stream:
    from mwaa_logging import open_stream

    stream: Stream = open_stream(log_group_name, log_stream_name, **kwargs)
    return stream


class CloudWatchRemoteLogIO:
    """``REMOTE_TASK_LOG`` for Airflow 3: task lines into CloudWatch streams named like the provider's.

    ``settings`` are mwaa-logging settings (``spill_to``, ``max_latency``, ...; ``MWAA_LOGGING_*``
    variables fill the rest). ``conn_id`` is the Airflow AWS connection for credentials.
    """

    def __init__(
        self,
        *,
        base_log_folder: str | os.PathLike[str],
        log_group_arn: str,
        remote_base: str = "",
        delete_local_copy: bool = True,
        conn_id: str | None = None,
        settings: Mapping[str, Any] | None = None,
        json_default: JsonDefault | None = None,
        open_stream: StreamOpener = _open_engine_stream,
        write_client_factory: ClientFactory | None = None,
        read_client_factory: ClientFactory | None = None,
        event_reader: EventReader = read_events,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_log_folder = Path(base_log_folder).expanduser()
        #: Airflow 3 names task log files under the folder as configured, a leading ``~`` unexpanded (the provider
        #: compares with that), or expanded: both are ours
        self._base_folders = tuple(dict.fromkeys((Path(base_log_folder), self.base_log_folder)))
        self.remote_base = remote_base
        self.delete_local_copy = delete_local_copy
        self.target = LogGroupTarget.from_arn(log_group_arn)
        self.conn_id = conn_id
        self.settings = Settings.resolve(settings)  # validate now: a typo fails at startup, not per line
        check_buildable(self.settings)
        self._overrides = {k: v for k, v in (settings or {}).items() if v is not None}
        self.json_default: JsonDefault = json_default or json_serialize_legacy
        self._open_stream = open_stream
        self._write_client_factory = write_client_factory or self._default_write_client
        self._read_client_factory = read_client_factory
        self._event_reader = event_reader
        self._write_client: Any = None
        self._client_pid = 0
        self._read_client: Any = None
        self._read_client_until = 0.0
        self._streams: dict[str, Stream] = {}
        self._clock = clock
        #: At the last look for idle streams: when, and how many events each stream had been given by then.
        self._looked_at = clock()
        self._emitted_when_looked: dict[str, int] = {}
        #: Streams closed while idle whose lines were partly spilled: their local copies are kept at upload.
        self._closed_with_spills: set[str] = set()
        self._stream_names: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._processors: tuple[Callable[[Any, str, Any], Any], ...] | None = None
        self.errors = 0

    # -- Airflow-facing properties -------------------------------------------------------------
    @property
    def log_group(self) -> str:
        return self.target.log_group_name

    @property
    def region_name(self) -> str:
        return self.target.region_name

    @property
    def processors(self) -> tuple[Callable[[Any, str, Any], Any], ...]:
        """One structlog processor that appends each task line to its task's stream.

        Airflow reads this inside the block where the supervisor has fetched the remote logging
        connection, so the client (and its credentials) are made here, once.
        """
        if self._processors is None:
            self._make_write_client()
            self._processors = (self._process,)
        return self._processors

    def _make_write_client(self) -> None:
        """One client for every stream of this process: the connection's (unless ``endpoint_url`` is set), else one
        built from the settings. A client per stream cost ~0.5 MB and ~40 ms each: the DAG processor opens a stream
        per DAG file a day."""
        from mwaa_logging.aws.clients import make_logs_client

        client = self._write_client_factory() if self.settings.endpoint_url is None else None
        if client is None:
            client = make_logs_client(region_name=self.settings.region_name or self.region_name,
                                      endpoint_url=self.settings.endpoint_url,
                                      connect_timeout=self.settings.connect_timeout,
                                      read_timeout=self.settings.read_timeout)
        self._write_client, self._client_pid = client, os.getpid()

    def read_client(self) -> Any:
        """The CloudWatch Logs client used to read streams back (made on first use; one made without the connection
        because its lookup failed is made again a minute later)."""
        now = self._clock()
        if self._read_client is None or now >= self._read_client_until:
            if self._read_client_factory is not None:
                client, settled = self._read_client_factory(), True
            else:
                client, settled = read_client_settled(self.region_name, self.conn_id, self.settings.endpoint_url)
            self._read_client = client
            self._read_client_until = math.inf if settled else now + UNSETTLED_READ_CLIENT_SECONDS
        return self._read_client

    # -- write path ---------------------------------------------------------------------------
    def _process(self, logger: Any, method_name: str, event: Any) -> Any:
        """Ship ``event``; its local copy (written next, by Airflow) gets the timestamp CloudWatch keeps."""
        try:
            stream_name = self._stream_name_of(logger)
            if stream_name is not None and isinstance(event, Mapping):
                message, timestamp_ms = event_to_message(event, self.json_default)
                self._stream(stream_name).write(message, timestamp_ms)
                if isinstance(event, dict):
                    align_local_timestamp(event, timestamp_ms)
        except Exception as exc:  # a logging processor must never break the task's logging
            self._report(exc)
        return event

    def _stream_name_of(self, logger: Any) -> str | None:
        """The stream of the task log file ``logger`` writes to; None for stdout, sockets, other folders."""
        name = getattr(getattr(logger, "_file", None), "name", None)
        if not isinstance(name, str):
            return None
        if name not in self._stream_names:
            relative = self._under_base(Path(name))
            self._stream_names[name] = None if relative is None else stream_name_for(relative.as_posix())
        return self._stream_names[name]

    def _stream(self, stream_name: str) -> Stream:
        stream = self._streams.get(stream_name)
        if stream is None:
            with self._lock:
                stream = self._streams.get(stream_name)
                if stream is None:
                    self._close_idle_streams()
                    stream = self._open_stream(self.log_group, stream_name, **self._engine_kwargs())
                    self._streams[stream_name] = stream
        return stream

    def _close_idle_streams(self) -> None:
        """Close the streams given no event since the previous look, at least :data:`IDLE_STREAM_SECONDS` ago, with
        nothing pending (under ``_lock``). A later line of one opens it again."""
        now = self._clock()
        if now - self._looked_at < IDLE_STREAM_SECONDS:
            return
        emitted_before, self._emitted_when_looked, self._looked_at = self._emitted_when_looked, {}, now
        for name, stream in list(self._streams.items()):
            stats = stream.stats()
            if stats.pending or emitted_before.get(name) != stats.emitted:
                self._emitted_when_looked[name] = stats.emitted
                continue
            del self._streams[name]
            # a thread that took the stream before it left _streams may write meanwhile: judged after the close
            if not stream.close(timeout=0) or stream.stats().spilled_total:
                self._closed_with_spills.add(name)
        live = set(self._streams)
        self._stream_names = {k: v for k, v in list(self._stream_names.items()) if v is None or v in live}

    def _engine_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(self._overrides)
        if self._write_client is None or self._client_pid != os.getpid():  # a forked child: not its parent's sockets
            self._make_write_client()
        kwargs["boto3_client"] = self._write_client
        if self.settings.region_name is None:
            kwargs["region_name"] = self.region_name
        return kwargs

    def _report(self, exc: BaseException) -> None:
        self.errors += 1
        if self.errors == 1:
            print(f"mwaa-logging: could not ship a task log line: {exc!r}", file=sys.stderr)

    # -- upload: bounded drain ----------------------------------------------------------------
    def upload(self, path: os.PathLike[str] | str, ti: Any = None) -> None:
        """Drain the task's stream (bounded by ``close_timeout``); then delete the local copy.

        The local file is kept unless every line reached CloudWatch: if any was spilled (during the task,
        or at the deadline), a second copy survives on the worker (Airflow serves CloudWatch's copy once it
        exists; the local one is there to inspect, and the spill to replay).
        """
        relative = self._relative(Path(path))
        stream_name = stream_name_for(relative.as_posix())
        with self._lock:
            stream = self._streams.pop(stream_name, None)
            self._stream_names = {k: v for k, v in list(self._stream_names.items()) if v != stream_name}
            self._emitted_when_looked.pop(stream_name, None)
            all_delivered = stream_name not in self._closed_with_spills
            self._closed_with_spills.discard(stream_name)
        if stream is not None:
            drained = stream.close(timeout=self.settings.close_timeout)
            all_delivered = all_delivered and drained and not stream.stats().spilled_total
        if all_delivered and self.delete_local_copy:
            self._delete_local(self.base_log_folder / relative)

    def _relative(self, path: Path) -> Path:
        relative = self._under_base(path)
        return path if relative is None else relative

    def _under_base(self, path: Path) -> Path | None:
        """``path`` relative to the base log folder, None if it is not under it."""
        for base in self._base_folders:
            with contextlib.suppress(ValueError):
                return path.relative_to(base)
        return None

    def _delete_local(self, local: Path) -> None:
        base = self.base_log_folder.resolve()
        local = local.resolve()
        if base not in local.parents:
            return
        local.unlink(missing_ok=True)
        parent = local.parent
        if parent != base and parent.exists() and not any(parent.iterdir()):
            shutil.rmtree(parent, ignore_errors=True)

    # -- read path ----------------------------------------------------------------------------
    def stream(self, relative_path: str, ti: Any) -> StreamingLogResponse:
        """Airflow 3.0.4+ streaming read: one generator of JSON lines for the whole stream."""
        stream_name = stream_name_for(relative_path)
        source = f"{SOURCE_PREFIX} log_group: {self.log_group} log_stream: {stream_name}"
        return [source], [self._lines(stream_name)]

    def read(self, relative_path: str, ti: Any) -> LogResponse:
        """Airflow 3.0 read: every line of the stream (with a trailing newline each)."""
        sources, streams = self.stream(relative_path, ti)
        return sources, [f"{line}\n" for lines in streams for line in lines]

    def _lines(self, stream_name: str) -> Iterator[str]:
        try:
            for event in self._event_reader(self.read_client(), self.log_group, stream_name, self.settings.spill_to):
                yield message_to_line(event.message, event.timestamp)
        except Exception as exc:
            if is_missing_stream(exc):
                note = f"No log stream {stream_name!r} in CloudWatch log group {self.log_group!r} (yet)."
            else:
                note = f"mwaa-logging could not read {self.log_group}/{stream_name}: {exc!r}"
            yield message_to_line(note, _now_ms())

    def _default_write_client(self) -> Any:
        return write_client(self.region_name, self.conn_id, self.settings.connect_timeout, self.settings.read_timeout)


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
