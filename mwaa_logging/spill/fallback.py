"""A chain of spill targets: the first that takes the records wins (S3, then the local directory)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence

from mwaa_logging.protocols import Clock, PartialSpillError, SpillError, SpillSink, write_before
from mwaa_logging.spillformat import SpillRecord

__all__ = ["FallbackSpillSink", "PartialSpillError"]

#: After a target failed, skip it for this long (seconds) so every spill does not pay its timeout again.
DEFAULT_COOLDOWN = 30.0
#: Called after a write that a target failed and a later one stored: ``(failures, stored_by)``, where ``failures``
#: names each failed target (its description) and its error, and ``stored_by`` describes the target that stored
#: the rest.
FallbackHook = Callable[[Sequence[tuple[str, str]], str], None]


class FallbackSpillSink:
    """Tries each sink in order; records a sink could not store go to the next one.

    Nothing is stored twice: after a :class:`PartialSpillError` only the remaining records move on.
    A sink that raised anything (a :class:`SpillError`, or any other exception: an encoder's bug) failed, and is
    skipped for ``cooldown`` seconds (the last sink is always tried).
    Raises :class:`SpillError` only when the last sink fails too: a :class:`PartialSpillError` if some sink stored
    some of the records (``remaining``: those no sink stored; ``location``: every location that stored some).
    A write that fell back and was stored calls ``on_fallback`` (the handler says it in the log and counts it: the
    records are not where ``spill_to`` says).
    """

    def __init__(
        self, sinks: Sequence[SpillSink], *, cooldown: float = DEFAULT_COOLDOWN, clock: Clock = time.monotonic,
        on_fallback: FallbackHook | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("FallbackSpillSink needs at least one sink")
        self.sinks = list(sinks)
        self.description = " -> ".join(sink.description for sink in self.sinks)
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._skip_until = [float("-inf")] * len(self.sinks)
        #: Failed writes per sink description, and records that went to a later sink.
        self.failures: dict[str, int] = {sink.description: 0 for sink in self.sinks}
        self.records_fallen_back = 0
        self.last_error: str | None = None
        self.on_fallback = on_fallback

    def write(self, records: Sequence[SpillRecord]) -> str:
        return self._write(records, None)

    def write_before(self, records: Sequence[SpillRecord], deadline: float) -> str:
        """:meth:`write`, with ``deadline`` (``time.monotonic()``) for every sink but the last that can stop at one
        (S3): what it has not stored by then goes to the next sink. The last sink stores the rest, whatever the
        time."""
        return self._write(records, deadline)

    def _write(self, records: Sequence[SpillRecord], deadline: float | None) -> str:
        if not records:
            return self.sinks[0].description
        pending = list(records)
        locations: list[str] = []
        failed: list[tuple[str, str]] = []
        last = len(self.sinks) - 1
        for index, sink in enumerate(self.sinks):
            if index < last and self._clock() < self._skip_until[index]:
                continue
            try:
                locations.append(write_before(sink, pending, deadline) if index < last else sink.write(pending))
            except PartialSpillError as exc:
                locations.append(exc.location)
                self._failed(index, sink, exc)
                failed.append((sink.description, str(exc)))
                pending = exc.remaining
            except Exception as exc:  # an encoder's TypeError, a bug: that target failed, the next one may store them
                self._failed(index, sink, exc)
                failed.append((sink.description, str(exc) if isinstance(exc, SpillError) else repr(exc)))
            else:
                if index > 0:
                    with self._lock:
                        self.records_fallen_back += len(pending)
                where = locations[0] if len(locations) == 1 else " + ".join(locations)
                if failed and self.on_fallback is not None:
                    with contextlib.suppress(Exception):  # stored: a failing hook must not get them stored twice
                        self.on_fallback(failed, sink.description)
                return where
        message = f"every spill target failed ({self.description}): {self.last_error}"
        if locations:  # some were stored: only the rest is still to be stored (nothing is stored twice)
            raise PartialSpillError(message, pending, " + ".join(locations))
        raise SpillError(message)

    def _failed(self, index: int, sink: SpillSink, exc: Exception) -> None:
        with self._lock:
            self.failures[sink.description] = self.failures.get(sink.description, 0) + 1
            self._skip_until[index] = self._clock() + self.cooldown
            self.last_error = str(exc) if isinstance(exc, SpillError) else repr(exc)
