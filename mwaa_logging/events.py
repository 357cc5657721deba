"""The unit every layer passes around: one log event, already sized.

An event is a plain ``(timestamp, message, size, seq)`` tuple, read by position (``event[MESSAGE]``).
Not a NamedTuple on purpose: CPython's garbage collector stops tracking a plain tuple of ints and
strings after its first collection, but tracks a tuple subclass for life, and with tens of thousands
of buffered events every collection would walk them all (nearly half of the sender's CPU went there).
"""

from __future__ import annotations

from typing import Final

from mwaa_logging.limits import EVENT_OVERHEAD_BYTES

#: ``(timestamp, message, size, seq)``: epoch milliseconds; the message; what CloudWatch counts against
#: the batch limit (UTF-8 bytes of the message + 26); a process-wide emission counter that keeps the order
#: of events sharing a timestamp.
LogEvent = tuple[int, str, int, int]

TIMESTAMP: Final = 0
MESSAGE: Final = 1
SIZE: Final = 2
SEQ: Final = 3


def counted_size(message: str) -> int:
    """Bytes CloudWatch counts for ``message``: UTF-8 length + the per-event overhead."""
    if message.isascii():
        return len(message) + EVENT_OVERHEAD_BYTES
    return len(message.encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD_BYTES


def make_event(timestamp: int, message: str, seq: int) -> LogEvent:
    """Build a sized event (the slow, readable path; the sender builds them in bulk)."""
    return (timestamp, message, counted_size(message), seq)
