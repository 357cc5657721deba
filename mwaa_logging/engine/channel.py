"""A channel: the buffers of one handler (or ``open_stream``) and the collaborators its events go through.

Application threads only ever call :meth:`Channel.append` (no I/O, no waiting), :meth:`Channel.flush` and
:meth:`Channel.close` (bounded by a deadline). The sender thread owns delivery (see ``engine/delivery.py``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat as _repeat
from itertools import starmap as _starmap
from operator import itemgetter
from time import sleep as _sleep
from typing import TYPE_CHECKING, Any, TypeVar

from mwaa_logging.engine.diagnostics import report
from mwaa_logging.engine.stats import Counters, Stats
from mwaa_logging.events import (
    MESSAGE,
    SEQ,
    SIZE,
    STREAM,
    TIMESTAMP,
    LogEvent,
    QueuedEvent,
    as_events,
    counted_size,
    queued_event,
)
from mwaa_logging.limits import EVENT_OVERHEAD_BYTES
from mwaa_logging.protocols import Budget, SpillSink, Transport
from mwaa_logging.retry import Backoff
from mwaa_logging.settings import Settings
from mwaa_logging.splitting import new_split_id, split_message, truncate_message

if TYPE_CHECKING:
    from mwaa_logging.engine.engine import Engine

#: Process-wide emission counter (an event's ``seq``); ``next()`` on it is atomic in CPython.
seq_counter = itertools.count()
_size_of, _stream_of = itemgetter(SIZE), itemgetter(STREAM)
#: Application threads look at the sender on every 64th queued message (see ``Channel.check_sender``) ...
CHECK_SENDER_MASK = 63
#: ... and wake it on every 1024th (it may have a full batch to send). A message counting more than
#: ``LARGE_EVENT_BYTES`` looks at once: 63 of them could otherwise pass the memory guard's alarm unseen.
WAKE_EVERY_MASK = 1023
LARGE_EVENT_BYTES = 64 * 1024
#: While the sender is busy (a call can block up to ``read_timeout``), an inbox that holds more than
#: ``max_buffer_bytes`` divided by this many bytes per event (at least ``INBOX_ALARM_MIN`` events), or more
#: counted bytes than ``max_buffer_bytes`` divided by ``INBOX_ALARM_SHARE``, makes application threads call the
#: engine's memory guard: the queue is not left to grow without bound behind a hung call (see
#: ``Engine.relieve``). The count bounds the per-event overhead of small messages, the bytes that of large ones.
INBOX_ALARM_BYTES_PER_EVENT = 1024
INBOX_ALARM_MIN = 1024
INBOX_ALARM_SHARE = 4
#: How long stats() waits for the channel's lock before it reads the figures without it (see locked_within).
SNAPSHOT_LOCK_WAIT = 1.0
EMPTY_MESSAGE = "(empty log message)"
#: At a close deadline, how long a spill target that can stop (S3) may take before what it has not stored goes to
#: the local directory: close() returns at most this long after its deadline (plus the local writes).
DEADLINE_SPILL_WAIT = 1.0
_timestamp_of = itemgetter(TIMESTAMP)


@dataclass
class GroupSettingsOwed:
    """What watchtower applies to the group whether or not it creates it, not yet applied by a channel:
    ``"retention"`` (``log_group_retention_days``), ``"tags"`` (``log_group_tags``); and its failed calls so far
    (see ``delivery.settle_group``)."""

    settings: list[str]
    failures: int = 0
    #: After a failed call, not before this time (the engine's clock).
    retry_at: float = 0.0
    #: A close() or the exit flush waited for them until its deadline: none waits again (the sender still applies
    #: them if the process lives on).
    waited_out: bool = False


#: How often close() looks whether the sender applied what a channel owes its group (see ``await_group_settings``).
GROUP_SETTINGS_POLL = 0.01

#: Channels that owe their group a setting (see :class:`GroupSettingsOwed`): the sender applies it at its next pass
#: over the channel with a CreateLogGroup token (``delivery.settle_group``), or creating the group does. Not a
#: channel attribute (emit() reads a channel's attributes inline only while it has at most 30); kept across a fork
#: (calls made are not made again).
group_settings_owed: weakref.WeakKeyDictionary[Channel, GroupSettingsOwed] = weakref.WeakKeyDictionary()


def owes_group_settings(channel: Channel) -> bool:
    """Whether ``channel`` owes its group a setting the sender can apply now: it has delivered (its group exists;
    a new group gets them from the create path). The sender keeps such a channel, closed and empty, until then."""
    return bool(group_settings_owed) and channel in group_settings_owed and bool(channel.counters.delivered)


@dataclass(frozen=True)
class Destination:
    """Where a channel's streams go and what may be created there."""

    group: str
    create_log_group: bool = True
    create_log_stream: bool = True
    log_group_tags: Mapping[str, str] | None = None
    log_group_retention_days: int | None = None


@dataclass
class Budgets:
    """One budget per kind of call (PutLogEvents, CreateLogStream, CreateLogGroup)."""

    put: Budget
    create_stream: Budget
    create_group: Budget


class Held:
    """Events one thread took out of the inbox, a buffer or flight, until it records them delivered, spilled or
    back in a buffer (``size``: their counted bytes; ``buffer`` None: queued events taken from the inbox).

    Counted pending meanwhile (see :meth:`Channel.hold`). Work on a channel's events runs through
    ``delivery.rescuing``: if it raises, what its thread still holds is spilled (reason ``internal_error``) or
    put back, so an unexpected exception at any step (splitting, settling a call, a spill target) loses nothing
    and the counters still add up. (Cutting a batch takes nothing until it is cut: if it raised, the events would
    stay in their buffer.)
    """

    __slots__ = ("buffer", "events", "owner", "size")

    def __init__(self, buffer: StreamBuffer | None, events: list[LogEvent], size: int) -> None:
        self.buffer = buffer
        self.events = events
        self.size = size
        self.owner = threading.get_ident()


HeldT = TypeVar("HeldT", bound=Held)


class InFlight(Held):
    """A batch handed to the transport; ``abandoned`` once close() spilled it at its deadline (it is then no
    longer held by the sender)."""

    __slots__ = ("abandoned",)

    def __init__(self, buffer: StreamBuffer, events: list[LogEvent], size: int) -> None:
        super().__init__(buffer, events, size)
        self.abandoned = False


class StreamBuffer:
    """Pending events of one log stream. ``pending`` is appended by emit; ``ready`` is sorted, sender-owned."""

    __slots__ = ("backoff", "bytes", "count", "in_flight", "last_call_for", "late_below_ms", "late_grace_until",
                 "marker_reasons", "marker_where", "missing", "pending", "ready", "retry_at", "since",
                 "spilled_unmarked", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.pending: list[LogEvent] = []
        self.ready: list[LogEvent] = []
        #: Counted bytes and events in pending + ready (not in flight).
        self.bytes = 0
        self.count = 0
        #: Monotonic time the buffer last became non-empty (None when empty).
        self.since: float | None = None
        self.in_flight: InFlight | None = None
        self.backoff = Backoff()
        self.retry_at = 0.0
        #: The flush deadline for which the sender already made a last call before its backoff ended.
        self.last_call_for = math.inf
        #: Engine time until which no event is spilled for max_latency: set when events arrive that are already
        #: older than max_latency (a backfill with old timestamps), so that they get max_latency from their arrival.
        self.late_grace_until = -math.inf
        #: During that grace, the timestamp (ms) below which events are those that arrived late: they keep it; the
        #: others (logged on time) are spilled at max_latency as usual.
        self.late_below_ms = -math.inf
        self.spilled_unmarked = 0
        self.marker_where: set[str] = set()
        self.marker_reasons: set[str] = set()
        #: What is still to be made after a ResourceNotFound answer (``"group"``, its ``"retention"``, the
        #: ``"stream"``: its budget had no token, or the call failed): made before the next put, which could only
        #: be refused again; a stage done is not made again.
        self.missing: str | None = None

    def is_empty(self) -> bool:
        return self.count == 0 and self.in_flight is None


class Channel:
    """The buffers of one handler plus its transport, spill target and budgets."""

    def __init__(
        self,
        destination: Destination,
        settings: Settings,
        transport_factory: Callable[[], Transport],
        spill: SpillSink,
        budgets: Budgets,
        engine: Engine,
        fallback_spill: SpillSink | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.destination = destination
        self.settings = settings
        self.spill = spill
        self.fallback_spill = fallback_spill
        self.budgets = budgets
        self.engine = engine
        self._transport_factory = transport_factory
        #: This process's transport (``transport_factory`` builds another one after a fork).
        self._transport: Transport | None = transport
        self._transport_pid = os.getpid() if transport is not None else -1
        # an event must also fit in a batch alone
        self._max_event_bytes = min(settings.max_message_size, settings.max_batch_size) - EVENT_OVERHEAD_BYTES
        #: Most bytes one queued event may count; larger ones are split or truncated by the sender.
        self.max_event_size = self._max_event_bytes + EVENT_OVERHEAD_BYTES
        #: Queued events, or their counted bytes, above which application threads call the memory guard while the
        #: sender is busy.
        self.inbox_alarm = max(INBOX_ALARM_MIN, settings.max_buffer_bytes // INBOX_ALARM_BYTES_PER_EVENT)
        self.inbox_alarm_bytes = settings.max_buffer_bytes // INBOX_ALARM_SHARE
        owed = [name for name, value in (("retention", destination.log_group_retention_days),
                                         ("tags", destination.log_group_tags)) if value]
        if owed:
            group_settings_owed[self] = GroupSettingsOwed(owed)
        self._init_state()

    def _init_state(self) -> None:
        self.lock = threading.Lock()
        self.settled_cond = threading.Condition(self.lock)
        self.buffers: dict[str, StreamBuffer] = {}
        self.counters = Counters()
        #: Events settled (delivered or spilled), for flush() targets.
        self.settled = 0
        #: The sender sends partial batches at once until ``settled`` reaches this (sticky flush request).
        self.flush_target = 0
        #: Pieces beyond the first that the sender made of split messages (a queued message counts as one
        #: event until then; see :meth:`flush_mark`).
        self.extra_pieces = 0
        #: Deadlines (engine clock) of the threads waiting in flush(), to be notified when events settle; no
        #: stream's backoff outlasts the earliest without one more call (see ``delivery.retry_due``).
        self.flush_deadlines: list[float] = []
        self.closed = False
        self.pending_bytes = 0
        #: Events taken out of the inbox, the buffers or flight and not yet recorded delivered, spilled or back in a
        #: buffer (a call on the wire, a spill write under way), by the thread that holds them (see :class:`Held`),
        #: and their number and counted bytes: pending for :meth:`stats`, so that emitted == delivered + spilled +
        #: pending holds at every moment.
        self.held: set[Held] = set()
        self.settling = 0
        self.settling_bytes = 0
        #: Until this monotonic time, tokens count as scarce: partial batches wait longer to fill up.
        self.scarce_until = 0.0
        #: Events queued by application threads, not yet buffered by the sender, and their counted bytes (added
        #: before an event is appended, taken off when it is drained; an estimate for the memory guard's alarm).
        self.inbox: deque[QueuedEvent] = deque()
        self.queued_bytes = 0
        #: Set by the sender when it has nothing of this channel to do: the next append wakes it.
        self.armed = True

    def reset_after_fork(self) -> None:
        """In a forked child: the parent owns every buffered event; start empty, with fresh locks."""
        self._init_state()
        self._transport = None

    # -- application side -------------------------------------------------------------------------

    def append(self, stream: str, timestamp: int, message: str) -> None:
        """Queue one message for ``stream`` (see :meth:`queue`) and, now and then, look at the sender
        (:meth:`check_sender`). Never does I/O or waits (it may yield the GIL).

        ``CloudWatchLogHandler.emit`` inlines this; keep the two in step.
        """
        queued, size = self.queue(stream, timestamp, message)
        if not queued & CHECK_SENDER_MASK or self.armed or size > LARGE_EVENT_BYTES:
            self.check_sender()

    def queue(self, stream: str, timestamp: int, message: str) -> tuple[int, int]:
        """Size one message and append it to the inbox, lock-free; return how many are queued and its counted
        size. Splitting and buffering happen in the sender (:meth:`drain_inbox`)."""
        inbox = self.inbox
        event = queued_event(timestamp, message, next(seq_counter), stream, self.max_event_size)
        size = abs(event[SIZE])
        self.queued_bytes += size
        inbox.append(event)
        return len(inbox), size

    def check_sender(self) -> None:
        """Called by application threads on the first queued message and then on every 64th: wake the sender
        if it sleeps or may have a full batch to send; while it works, yield the GIL once.

        The yield bounds how long the sender waits for the GIL. It gives the GIL up about 14 times per
        PutLogEvents call (socket waits, gzip, hashing) and, against a CPU-bound application thread, waits a
        whole switch interval (5 ms) each time to get it back: an 11 ms call took 60-80 ms, the sender fell
        behind the application and flush() waited for the backlog. Yielding every 64 messages costs a
        ``sleep(0)`` (about a microsecond) per 64 records, and only while the sender is working.

        A working sender may be blocked in a call for up to ``read_timeout``; if the inbox grows past its alarm
        (:meth:`inbox_alarmed`) meanwhile, the engine's memory guard moves it into the buffers and enforces
        ``max_buffer_bytes`` (spilling the oldest events) in the sender's place.
        """
        queued = len(self.inbox)
        if self.armed or not queued & WAKE_EVERY_MASK:
            self.armed = False
            self.engine.wake()
        elif self.engine.busy:
            if self.inbox_alarmed():
                self.engine.relieve()
            _sleep(0)

    def inbox_alarmed(self) -> bool:
        """Whether the inbox holds more than ``inbox_alarm`` events or ``inbox_alarm_bytes`` counted bytes."""
        return len(self.inbox) > self.inbox_alarm or self.queued_bytes > self.inbox_alarm_bytes

    def drain_inbox(self) -> int:
        """Move queued events into their stream buffers (sender side). Returns how many were queued.

        The common case (one stream, every message of ordinary size) runs in C and moves the very tuples the
        application threads queued: no Python code per event, and no message is read again (on this thread it
        is no longer in the CPU's cache). Anything else takes the per-event path.
        """
        inbox = self.inbox
        if not inbox:
            return 0
        now = self.engine.clock()
        with self.lock:
            # counted under the lock: the sender, close() and the memory guard all drain, and a pop from an
            # empty deque in the middle of this list would lose the events popped before it
            count = len(inbox)
            if not count:
                return 0
            queued = list(_starmap(inbox.popleft, _repeat((), count)))  # exactly ``count`` pops, in C
            sizes = list(map(_size_of, queued))
            streams = set(map(_stream_of, queued))
            simple = len(streams) == 1 and min(sizes) > 0
            total = sum(sizes) if simple else sum(map(abs, sizes))
            # back to zero whenever the queue is empty: an update lost between threads (possible before
            # Python 3.11, which can switch threads inside ``+=``) does not last
            self.queued_bytes = self.queued_bytes - total if inbox else 0
            # emitted now, held until buffered: if splitting (or anything else) raises, they are rescued
            self.counters.emitted += count
            held = self.hold(Held(None, as_events(queued), total))
            if simple:
                (stream,) = streams
                self._buffer(stream, now, as_events(queued), total)
            else:
                self._buffer_mixed(queued, now)
            self.release(held)
        return count

    def _buffer(self, stream: str, now: float, events: list[LogEvent], total: int) -> None:
        """Append sized ``events`` (``total`` counted bytes) to ``stream``'s buffer (lock held)."""
        buffer = self._buffer_of(stream, now)
        buffer.pending.extend(events)
        buffer.bytes += total
        buffer.count += len(events)
        self.pending_bytes += total

    def _buffer_of(self, stream: str, now: float) -> StreamBuffer:
        buffer = self.buffers.get(stream)
        if buffer is None:
            buffer = self.buffers[stream] = StreamBuffer(stream)
        if buffer.since is None:
            buffer.since = now
        return buffer

    def _buffer_mixed(self, queued: list[QueuedEvent], now: float) -> None:
        """Queued events of several streams, or with unusual messages (empty or oversized: replaced, split or
        truncated, never dropped), into their buffers (lock held).

        Everything that may raise comes before the first change to the channel: if it does, the events are still
        whole in the caller's :class:`Held`.
        """
        by_stream: dict[str, list[LogEvent]] = {}
        truncate = self.settings.oversize == "truncate"
        split_events = split_chunks = truncated = extra = 0
        for event in queued:
            events = by_stream.setdefault(event[STREAM], [])
            if event[SIZE] >= 0:
                events.append(event[:STREAM])
                continue
            message = event[MESSAGE]
            if not message:
                pieces = [EMPTY_MESSAGE]
            elif truncate:
                pieces = [truncate_message(message, self._max_event_bytes)]
                truncated += 1
            else:
                pieces = split_message(message, max_bytes=self._max_event_bytes, split_id=new_split_id())
                split_events += 1
                split_chunks += len(pieces)
            extra += len(pieces) - 1
            # the pieces share the message's timestamp and seq: stable sorts keep them in order
            timestamp, seq = event[TIMESTAMP], event[SEQ]
            events.extend((timestamp, piece, counted_size(piece), seq) for piece in pieces)
        counters = self.counters
        counters.split_events += split_events
        counters.split_chunks += split_chunks
        counters.truncated_events += truncated
        counters.emitted += extra  # a queued message counted as one event; its other pieces count now
        self.extra_pieces += extra
        if self.flush_target > self.settled:  # a flush under way waits for every piece
            self.flush_target += extra
        for stream, events in by_stream.items():
            self._buffer(stream, now, events, sum(map(_size_of, events)))

    def hold(self, held: HeldT) -> HeldT:
        """Record that the calling thread took ``held``'s events out of the inbox, a buffer or flight (lock held).
        They count as pending until :meth:`release`."""
        self.held.add(held)
        self.settling += len(held.events)
        self.settling_bytes += held.size
        return held

    def release(self, held: Held) -> None:
        """``held``'s events are now counted delivered or spilled, or are back in a buffer or the inbox, or another
        thread took them over (an abandoned flight); lock held. Releasing twice changes nothing."""
        if held in self.held:
            self.held.remove(held)
            self.settling -= len(held.events)
            self.settling_bytes -= held.size

    def oldest_unsettled(self) -> int | None:
        """The smallest timestamp (ms) among events appended and not yet delivered or spilled (queued, buffered, in
        flight or held by a thread), None when there is none. Cheap: ``ready`` is sorted, and the inbox and pending
        lists hold what arrived since the sender last looked."""
        with self.lock:
            oldest = [min(map(_timestamp_of, self.inbox))] if self.inbox else []
            for buffer in self.buffers.values():
                if buffer.ready:
                    oldest.append(buffer.ready[0][TIMESTAMP])
                if buffer.pending:
                    oldest.append(min(map(_timestamp_of, buffer.pending)))
            oldest.extend(min(map(_timestamp_of, held.events)) for held in self.held if held.events)
        return min(oldest, default=None)

    def pending_count(self) -> int:
        """Events appended and not yet delivered nor spilled (as ``stats().pending``), counted without a copy of the
        counters (this runs while the interpreter finalizes too, when ``copy`` may have nothing left to import)."""
        return len(self.inbox) + sum(b.count for b in list(self.buffers.values())) + self.settling

    def has_work(self) -> bool:
        """Anything queued, buffered or in flight."""
        return bool(self.inbox) or any(not b.is_empty() for b in list(self.buffers.values()))

    @contextlib.contextmanager
    def locked_within(self, timeout: float) -> Iterator[bool]:
        """The lock, if it can be had within ``timeout``; False when not. An application's call may come from a
        signal handler that interrupted this very thread while it held the lock (a ``stats()`` in the main loop,
        a SIGTERM handler that flushes): waiting for it there would never end, and would stop the sender too."""
        got = self.lock.acquire(timeout=max(timeout, 0.0))
        try:
            yield got
        finally:
            if got:
                self.lock.release()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything appended so far is delivered or spilled; False at the deadline."""
        timeout = self.settings.close_timeout if timeout is None else timeout
        with self.locked_within(timeout) as locked:
            if not locked:
                return False
            mark = self.flush_mark()
            if self.reached(mark):
                return True
            self.flush_target = max(self.flush_target, mark[0])
            flush_deadline = self.engine.clock() + timeout
            self.flush_deadlines.append(flush_deadline)
        self.engine.wake()
        try:
            if self.engine.sender_missing():  # no sender thread can run: do its work here
                return self.engine.work_inline(lambda: self.reached(mark), timeout)
            if holds_logging_lock():
                # dictConfig/logging.shutdown hold logging's module lock: waiting here could starve the
                # sender (botocore logs through that lock). Ask for delivery and return.
                return False
            deadline = time.monotonic() + timeout
            with self.settled_cond:
                while not self.reached(mark):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self.settled_cond.wait(remaining)
                return True
        finally:
            with self.lock:
                self.flush_deadlines.remove(flush_deadline)

    def flush_mark(self) -> tuple[int, int]:
        """What a flush() started now waits for (call with the lock held): every event appended so far.

        The sender drains the inbox under the lock, so emitted + queued counts them all. A queued message counts
        as one event until the sender splits it; the pieces it makes after the mark raise the bar by as many
        (also those of later messages: a flush may wait a little longer than needed, never return early).
        """
        return self.counters.emitted + len(self.inbox), self.extra_pieces

    def reached(self, mark: tuple[int, int]) -> bool:
        """Whether everything counted by ``mark`` (see :meth:`flush_mark`) is delivered or spilled."""
        target, extra_pieces = mark
        return self.settled >= target + self.extra_pieces - extra_pieces

    def close(self, timeout: float | None = None) -> bool:
        """Flush what was appended before close() started until the deadline, then spill whatever of it is still
        pending (an S3 target gets ``DEADLINE_SPILL_WAIT``, then the rest goes to the local directory). True if
        nothing was pending at the deadline (events spilled before it, e.g. after ``max_latency``, do not make it
        False).

        The channel is closed as close() starts: records logged meanwhile by other threads take the handler's
        after-close path (queued, counted, sent) and do not keep close() busy until its deadline (threads logging
        in a loop made it spill everything pending on a healthy endpoint). The channel stays with the sender until it
        is empty (it retires it then), so a later flush() or a record emitted after close() is still served; a
        close() of a closed channel flushes what it still holds.

        Where no sender thread can run (see ``Engine.sender_missing``) the calling thread does its work. Every import
        this needs is done at module load: it also runs while the interpreter finalizes (a record logged from a
        ``__del__``), when no module can be imported any more.
        """
        timeout = self.settings.close_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self.locked_within(timeout) as locked:
            if not locked:
                return False
            if self.closed and not self.has_work():
                return True
            self.closed = True
        in_logging_lock = holds_logging_lock()
        markers = self.counters.markers
        flushed = self.flush(timeout)
        # the last delivery may have queued a spill marker: flush it too (once per marker: a flush started now also
        # waits for what other threads logged meanwhile, which must not keep close() busy)
        while flushed and self.counters.markers != markers:
            markers = self.counters.markers
            remaining = deadline - time.monotonic()
            flushed = remaining > 0 and self.flush(remaining)
        if flushed:
            self.await_group_settings(deadline)
        if not flushed and (not in_logging_lock or self.engine.sender_missing()):
            with self.locked_within(DEADLINE_SPILL_WAIT) as locked:
                pass  # a signal handler interrupted this thread in the lock: leave the events pending, not spilled
            if not locked:
                return False
            self.engine.spill_at_deadline(self, "close()")
        self.engine.wake()
        return flushed

    def await_group_settings(self, deadline: float) -> None:
        """Wait until ``deadline`` (``time.monotonic()``) for the sender to apply the retention and tags this channel
        owes its group (``delivery.settle_group``, once the channel has delivered: its group exists); say what is
        left then. watchtower applies them in its constructor: a handler closed before its sender had a
        CreateLogGroup token never applied them."""
        owed = group_settings_owed.get(self)
        if owed is None or owed.waited_out or not owes_group_settings(self) or self.engine.sender_missing():
            return
        self.engine.wake()
        while self in group_settings_owed and time.monotonic() < deadline:
            _sleep(GROUP_SETTINGS_POLL)
        if self in group_settings_owed:
            owed.waited_out = True  # one wait per process: close() then the exit flush did not wait twice
            report(f"{' and '.join(owed.settings)} of log group {self.destination.group} not applied yet at the close "
                   "deadline: the sender applies them if this process lives on")

    def reopen(self) -> None:
        """Accept events again after close() (they are delivered, not dropped)."""
        with self.lock:
            if not self.closed:
                return
            self.closed = False
        self.engine.attach(self)

    # -- shared ---------------------------------------------------------------------------------------

    def transport(self) -> Transport:
        """The transport for this process (rebuilt after fork: connection pools are not fork-safe)."""
        pid = os.getpid()
        if self._transport is None or self._transport_pid != pid:
            self._transport = self._transport_factory()
            self._transport_pid = pid
        return self._transport

    def stats(self) -> Stats:
        return Stats.of(*self.snapshot())

    def snapshot(self) -> tuple[Counters, int, int, float]:
        """A copy of the counters (queued events counted emitted), then the pending events, their counted bytes and
        the age of the oldest, all of one moment."""
        now = self.engine.clock()
        with self.locked_within(SNAPSHOT_LOCK_WAIT) as locked:
            if locked:
                return self._snapshot_at(now)
        # A signal handler interrupted this thread in the lock (no other thread can change what it guards meanwhile):
        # the figures as they are. Should the lock be held this long elsewhere, a figure changing under the copy
        # makes it try again.
        for _ in range(10):
            try:
                return self._snapshot_at(now)
            except RuntimeError:  # changed size during iteration
                continue
        return self._snapshot_at(now)

    def _snapshot_at(self, now: float) -> tuple[Counters, int, int, float]:
        pending = sum(b.count for b in list(self.buffers.values())) + self.settling  # settling: in flight too
        pending_bytes = self.pending_bytes + self.queued_bytes + self.settling_bytes
        oldest = min((b.since for b in list(self.buffers.values()) if b.since is not None), default=None)
        queued = len(self.inbox)
        counters = copy.deepcopy(self.counters)
        counters.emitted += queued
        return counters, pending + queued, pending_bytes, 0.0 if oldest is None else now - oldest


#: Callbacks run after events of a channel settle (a delivered batch, a spill write): the Airflow 2 task handler's
#: write-ahead log records how far delivery got. Kept outside :class:`Channel` (no attribute added to what emit()
#: reads), weakly keyed: a channel without one costs an empty-mapping test per settled batch.
settle_watchers: weakref.WeakKeyDictionary[Channel, Callable[[], None]] = weakref.WeakKeyDictionary()


def budget_stats(budgets: Budgets) -> dict[str, Any]:
    """Each budget's own counters (granted, waited, throttles, rate, scope), where it keeps any."""
    result: dict[str, Any] = {}
    for kind in ("put", "create_stream", "create_group"):
        stats = getattr(getattr(budgets, kind), "stats", None)
        if callable(stats):
            result[kind] = stats()
    return result


def holds_logging_lock() -> bool:
    """True when the calling thread holds ``logging``'s module lock (dictConfig, logging.shutdown)."""
    lock = getattr(logging, "_lock", None)
    is_owned = getattr(lock, "_is_owned", None)
    return bool(is_owned()) if is_owned is not None else False
