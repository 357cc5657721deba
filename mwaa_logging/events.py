"""The unit every layer passes around: one log event, already sized."""

from __future__ import annotations

from typing import NamedTuple

from mwaa_logging.limits import EVENT_OVERHEAD_BYTES


class LogEvent(NamedTuple):
    """One CloudWatch log event.

    ``size`` is what CloudWatch counts against the batch limit: UTF-8 bytes of ``message`` + 26.
    ``seq`` is a process-wide emission counter; it keeps the order of events that share a timestamp.
    """

    timestamp: int
    message: str
    size: int
    seq: int


def counted_size(message: str) -> int:
    """Bytes CloudWatch counts for ``message``: UTF-8 length + the per-event overhead."""
    if message.isascii():
        return len(message) + EVENT_OVERHEAD_BYTES
    return len(message.encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD_BYTES


def make_event(timestamp: int, message: str, seq: int) -> LogEvent:
    """Build a sized event (the slow, readable path; the handler inlines this)."""
    return LogEvent(timestamp, message, counted_size(message), seq)
