"""The seams of the engine: what it needs from the outside world, and nothing more.

Concrete implementations live in adapters (``aws/``, ``spill/``, ``budgets/``); tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, cast, runtime_checkable

from mwaa_logging.events import LogEvent
from mwaa_logging.outcome import CallResult
from mwaa_logging.spillformat import SpillRecord

#: Monotonic seconds (``time.monotonic``); injected so timing logic is tested without sleeping.
Clock = Callable[[], float]


@runtime_checkable
class Transport(Protocol):
    """Talks to one CloudWatch Logs endpoint. Never raises for AWS or network errors: it classifies."""

    def put_log_events(self, group: str, stream: str, events: Sequence[LogEvent]) -> CallResult:
        """Send ``events`` (already valid: sorted, within every PutLogEvents limit) in one call."""
        ...

    def create_log_group(self, group: str, tags: Mapping[str, str] | None = None) -> CallResult: ...

    def create_log_stream(self, group: str, stream: str) -> CallResult: ...

    def put_retention_policy(self, group: str, days: int) -> CallResult: ...

    def tag_log_group(self, group: str, tags: Mapping[str, str]) -> CallResult:
        """Add ``tags`` to an existing group (TagResource, as watchtower does): NO_RESOURCE if it does not exist."""
        ...


@runtime_checkable
class SpillSink(Protocol):
    """Durable place for events CloudWatch could not take in time."""

    #: Where the events go, for messages and markers (a path, a URL).
    description: str

    def write(self, records: Sequence[SpillRecord]) -> str:
        """Store ``records`` durably; return where they went. Raise :class:`SpillError` on failure."""
        ...


@runtime_checkable
class DeadlineSpillSink(SpillSink, Protocol):
    """A spill target that can stop at a deadline (S3 at a close deadline), leaving the rest to the next target."""

    def write_before(self, records: Sequence[SpillRecord], deadline: float) -> str:
        """:meth:`write`, returning by ``deadline`` (``time.monotonic()``): records not stored by then are named in
        the :class:`PartialSpillError` (or :class:`SpillError`) raised."""
        ...


def write_before(sink: SpillSink, records: Sequence[SpillRecord], deadline: float | None) -> str:
    """Store ``records`` in ``sink``, by ``deadline`` if it can stop at one (None: no deadline).

    Not ``isinstance(sink, DeadlineSpillSink)``: on Python 3.12+ that imports ``inspect`` the first time, and a spill
    may come while the interpreter finalizes (a record logged from a ``__del__``), when nothing can be imported."""
    stop_by = getattr(sink, "write_before", None) if deadline is not None else None
    if stop_by is not None and callable(stop_by):
        return cast("str", stop_by(records, deadline))
    return sink.write(records)


class SpillError(Exception):
    """A spill target could not store records."""


class PartialSpillError(SpillError):
    """A target stored some records (at ``location``) and failed on the rest (``remaining``)."""

    def __init__(self, message: str, remaining: Sequence[SpillRecord], location: str) -> None:
        super().__init__(message)
        self.remaining = list(remaining)
        self.location = location


@runtime_checkable
class Budget(Protocol):
    """A rate budget for one kind of AWS call, shared by some scope (process, host, fleet).

    ``now`` is monotonic seconds. Implementations never block.
    """

    def acquire(self, now: float, tokens: float = 1.0) -> float:
        """Take ``tokens`` if available and return 0.0; else take nothing and return seconds to wait."""
        ...

    def on_throttled(self, now: float) -> None:
        """CloudWatch answered ThrottlingException: lower the rate (shared within the scope)."""
        ...

    def on_success(self, now: float) -> None:
        """A call went through: let the rate recover towards the configured ceiling."""
        ...
