"""Airflow's structured task log lines to CloudWatch messages and back, in the provider's format.

Write side: each structlog event dict becomes one JSON message, its ``timestamp`` popped into the
event time (as the provider's ``CloudWatchRemoteLogIO`` does). Read side: each CloudWatch event
becomes one JSON line with the event time put back as ``timestamp``, the form Airflow's log reader
interleaves and renders. CloudWatch keeps milliseconds: :func:`event_time` is the ``timestamp`` a
line reads back with, to the microsecond, which is what Airflow compares to drop a line it has twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

JsonDefault = Callable[[Any], Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def json_serialize_legacy(value: Any) -> str | None:
    """The provider's default: datetimes as ISO 8601, anything else JSON cannot encode as ``null``."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return None


def timestamp_ms(value: object, default_ms: int | None = None) -> int:
    """Milliseconds since the epoch for an event's ``timestamp`` (ISO string, datetime or number).

    Accepts the ``Z`` suffix on every Python version; falls back to ``default_ms`` (or now) when the
    value is missing or unreadable, so a line is never lost over its timestamp.
    """
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if parsed is None:
        return default_ms if default_ms is not None else time.time_ns() // 1_000_000
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def event_time(event_timestamp_ms: int) -> datetime:
    """The ``timestamp`` (UTC) of a line read back from an event of this CloudWatch time."""
    return _EPOCH + event_timestamp_ms * _MS


def event_to_message(event: Mapping[str, Any], json_default: JsonDefault = json_serialize_legacy) -> tuple[str, int]:
    """One structlog event dict to ``(message, timestamp_ms)``; the event itself is left untouched."""
    body = dict(event)
    stamp = timestamp_ms(body.pop("timestamp", None))
    return json.dumps(body, default=json_default), stamp


def align_local_timestamp(event: dict[str, Any], event_timestamp_ms: int) -> None:
    """Give ``event`` the ``timestamp`` its line reads back with from CloudWatch (milliseconds).

    ``event`` is what Airflow then writes to the task's local file. While a task runs, Airflow shows
    that file and CloudWatch's copy merged, and drops a line it has twice only when both copies are
    equal, ``timestamp`` included: a local copy to the microsecond would show every line twice.
    """
    value = event.get("timestamp")
    if isinstance(value, datetime):
        event["timestamp"] = event_time(event_timestamp_ms)
    elif isinstance(value, str):
        event["timestamp"] = event_time(event_timestamp_ms).isoformat().replace("+00:00", "Z")


def message_to_line(message: str, event_timestamp_ms: int) -> str:
    """One CloudWatch event to the JSON line Airflow's reader expects (``timestamp`` in ISO 8601).

    A message that is not a JSON object (written by something else) becomes ``{"event": message}``.
    """
    stamp = event_time(event_timestamp_ms).isoformat()
    try:
        parsed = json.loads(message)
    except ValueError:
        parsed = None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {"event": message}
    body["timestamp"] = stamp
    return json.dumps(body)
