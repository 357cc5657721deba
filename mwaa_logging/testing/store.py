"""Direct access to moto's CloudWatch Logs storage, for the fast PutLogEvents path and inspection.

moto internals relied on (moto 5.x, ``moto/logs/models.py``): ``logs_backends[account][region]``
is a ``LogsBackend`` whose ``groups`` maps names to ``LogGroup`` (``streams``, ``retention_in_days``,
``subscription_filters``); a ``LogStream`` keeps ``events`` (a list of ``LogEvent`` with
``ingestion_time``, ``timestamp``, ``message``, ``event_id``), ``stored_bytes``,
``last_ingestion_time`` and ``upload_sequence_token``. Events appended here are what moto's own
GetLogEvents / FilterLogEvents / DescribeLogStreams read.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from moto.core.base_backend import BackendDict
from moto.core.utils import utcnow
from moto.logs.models import LogStream, logs_backends
from moto.s3.models import s3_backends

from mwaa_logging.testing.eventlog import EventLog

#: Guards stream bookkeeping across every store of this process.
_store_lock = threading.Lock()
_ids_lock = threading.Lock()
_next_event_id = 10**12


def _reserve_event_ids(count: int) -> int:
    """First of ``count`` event ids unique in this process (moto pages FilterLogEvents by them)."""
    global _next_event_id
    with _ids_lock:
        first = _next_event_id
        _next_event_id += count
        return first


class ResourceNotFound(Exception):
    """The log group or stream does not exist."""


class LogsStore:
    """The moto CloudWatch Logs storage of one account."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    def find_stream(self, region: str, group: str, stream: str) -> tuple[LogStream, int | None]:
        """The stream and its group's retention in days; :class:`ResourceNotFound` if missing."""
        backend = logs_backends[self.account_id][region]
        log_group = backend.groups.get(group)
        if log_group is None:
            raise ResourceNotFound("The specified log group does not exist.")
        log_stream = log_group.streams.get(stream)
        if log_stream is None:
            raise ResourceNotFound("The specified log stream does not exist.")
        retention = log_group.retention_in_days
        return log_stream, int(retention) if retention else None

    def append(
        self, log_stream: LogStream, timestamps: Sequence[int], messages: Sequence[str], now_ms: int
    ) -> str:
        """Store events as moto would, much faster; returns the next sequence token."""
        if log_stream.log_group.subscription_filters:
            # Rare in our tests: let moto deliver to its subscription targets itself.
            with _store_lock:
                return str(log_stream.put_log_events(
                    [{"timestamp": t, "message": m} for t, m in zip(timestamps, messages, strict=True)]
                ))
        first_id = _reserve_event_ids(len(timestamps))
        with _store_lock:
            events = log_stream.events
            if not isinstance(events, EventLog):
                events = log_stream.events = EventLog(events)
            events.add_batch(timestamps, messages, now_ms, first_id)
            log_stream.stored_bytes += sum(map(len, messages))
            log_stream.last_ingestion_time = utcnow()
            log_stream.upload_sequence_token += 1
            return f"{log_stream.upload_sequence_token:056d}"

    def events(self, group: str, stream: str, region: str | None = None) -> list[tuple[int, str]]:
        """Stored ``(timestamp, message)`` of a stream in arrival order (first region holding it)."""
        regions = [region] if region else list(logs_backends[self.account_id].keys())
        for name in regions:
            try:
                log_stream, _ = self.find_stream(name, group, stream)
            except ResourceNotFound:
                continue
            events = log_stream.events
            if isinstance(events, EventLog):
                return events.pairs()
            return [(event.timestamp, event.message) for event in list(events)]
        raise ResourceNotFound(f"no log stream {group!r} / {stream!r}")

    def streams(self, region: str | None = None) -> dict[str, list[str]]:
        """Log group name -> its stream names."""
        result: dict[str, list[str]] = {}
        account = logs_backends[self.account_id]
        for name in [region] if region else list(account.keys()):
            for group_name, log_group in account[name].groups.items():
                result.setdefault(group_name, []).extend(log_group.streams)
        return result

    def drop_account(self) -> None:
        """Forget everything moto holds for this account (every service), freeing the memory."""
        if self.account_id in s3_backends:
            for s3_backend in list(s3_backends[self.account_id].values()):
                for bucket in list(s3_backend.buckets.values()):
                    for key in list(bucket.keys.values()):
                        if hasattr(key, "dispose"):
                            key.dispose()  # closes the temporary file behind the object
        buckets: Any = s3_backends.bucket_accounts
        for name, (_, account) in list(buckets.items()):
            if account == self.account_id:
                buckets.pop(name, None)
        for backend_dict in list(BackendDict._instances):  # type: ignore[misc]
            if self.account_id in backend_dict:
                with contextlib.suppress(KeyError):
                    del backend_dict[self.account_id]
