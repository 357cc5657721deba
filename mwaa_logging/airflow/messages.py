"""Airflow's structured task log lines to CloudWatch messages and back, in the provider's format.

Write side: each structlog event dict becomes one JSON message, its ``timestamp`` popped into the
event time (as the provider's ``CloudWatchRemoteLogIO`` does). Read side: each CloudWatch event
becomes one JSON line with the event time put back as ``timestamp``, the form Airflow's log reader
interleaves and renders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any

JsonDefault = Callable[[Any], Any]


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


def event_to_message(event: Mapping[str, Any], json_default: JsonDefault = json_serialize_legacy) -> tuple[str, int]:
    """One structlog event dict to ``(message, timestamp_ms)``; the event itself is left untouched."""
    body = dict(event)
    stamp = timestamp_ms(body.pop("timestamp", None))
    return json.dumps(body, default=json_default), stamp


def message_to_line(message: str, event_timestamp_ms: int) -> str:
    """One CloudWatch event to the JSON line Airflow's reader expects (``timestamp`` in ISO 8601).

    A message that is not a JSON object (written by something else) becomes ``{"event": message}``.
    """
    stamp = datetime.fromtimestamp(event_timestamp_ms / 1000.0, tz=timezone.utc).isoformat()
    try:
        parsed = json.loads(message)
    except ValueError:
        parsed = None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {"event": message}
    body["timestamp"] = stamp
    return json.dumps(body)
