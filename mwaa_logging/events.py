"""The unit every layer passes around: one log event, already sized.

An event is a plain ``(timestamp, message, size, seq)`` tuple, read by position (``event[MESSAGE]``).
Not a NamedTuple on purpose: CPython's garbage collector stops tracking a plain tuple of ints and
strings after its first collection, but tracks a tuple subclass for life, and with tens of thousands
of buffered events every collection would walk them all (nearly half of the sender's CPU went there).
"""

from __future__ import annotations

from typing import Final, cast

from mwaa_logging.limits import EVENT_OVERHEAD_BYTES

#: ``(timestamp, message, size, seq)``: epoch milliseconds; the message; what CloudWatch counts against
#: the batch limit (UTF-8 bytes of the message + 26); a process-wide emission counter that keeps the order
#: of events sharing a timestamp.
LogEvent = tuple[int, str, int, int]

TIMESTAMP: Final = 0
MESSAGE: Final = 1
SIZE: Final = 2
SEQ: Final = 3

#: What application threads queue for the sender: ``(timestamp, message, size, seq, stream)``, a LogEvent
#: with its stream appended. Sized where it is logged, while the message is still in the CPU's cache; the
#: sender then buffers these very tuples as events (see :func:`as_events`) without reading the message again.
#: A negative ``size`` marks a message that is empty or larger than one event may be (the sender replaces,
#: splits or truncates it, see ``Channel.drain_inbox``); its magnitude is still the counted size.
QueuedEvent = tuple[int, str, int, int, str]

STREAM: Final = 4


def counted_size(message: str) -> int:
    """Bytes CloudWatch counts for ``message``: UTF-8 length + the per-event overhead."""
    if message.isascii():
        return len(message) + EVENT_OVERHEAD_BYTES
    return len(message.encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD_BYTES


def queued_event(timestamp: int, message: str, seq: int, stream: str, max_size: int) -> QueuedEvent:
    """A message sized for the queue; ``size`` is negative when it is empty or counts more than ``max_size``
    bytes (the handler's ``emit`` inlines this)."""
    size = counted_size(message)
    return (timestamp, message, size if EVENT_OVERHEAD_BYTES < size <= max_size else -size, seq, stream)


def as_events(queued: list[QueuedEvent]) -> list[LogEvent]:
    """Queued events used as LogEvents, no copy: everything downstream reads events by position (the first
    four fields) and never by length, so the trailing stream is carried along unread."""
    return cast("list[LogEvent]", queued)


def make_event(timestamp: int, message: str, seq: int) -> LogEvent:
    """Build a sized event (the slow, readable path; the sender builds them in bulk)."""
    return (timestamp, message, counted_size(message), seq)
