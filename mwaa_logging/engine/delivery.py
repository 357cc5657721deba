"""Delivery of one channel's buffers, run by the sender thread: batch, budget, send, classify, retry or spill.

The sender is the one owner of retries. Every event ends delivered or spilled with a reason.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, TypeVar, cast

from mwaa_logging.batching import batch_end, partition_by_age, rejected_slices, sort_key
from mwaa_logging.engine.channel import DEADLINE_SPILL_WAIT as DEADLINE_SPILL_WAIT  # also imported from here
from mwaa_logging.engine.channel import (
    Channel,
    Held,
    InFlight,
    StreamBuffer,
    group_settings_owed,
    owes_group_settings,
    settle_watchers,
)
from mwaa_logging.engine.diagnostics import report
from mwaa_logging.events import MESSAGE, SEQ, SIZE, STREAM, TIMESTAMP, LogEvent, QueuedEvent
from mwaa_logging.limits import CREATE_LOG_STREAM_TPS, MAX_AGE_MS
from mwaa_logging.outcome import CallResult, Outcome
from mwaa_logging.protocols import Budget, Clock, PartialSpillError, write_before
from mwaa_logging.retry import Random
from mwaa_logging.spillformat import SpillReason, SpillRecord

_by_timestamp = itemgetter(TIMESTAMP)
_size = itemgetter(SIZE)
R = TypeVar("R")
#: Spill reason of events held by work that raised an unexpected exception (the detail names it).
INTERNAL_ERROR = SpillReason.INTERNAL_ERROR.value
#: A stream whose events no spill target could take waits this long before they are tried again.
SPILL_RETRY_DELAY = 5.0
#: Reasons whose events CloudWatch can still take: when no spill target can, they are sent instead.
SENDABLE_REASONS = frozenset({SpillReason.MEMORY_CAP.value, SpillReason.MAX_LATENCY.value})
#: Channels whose spill targets all failed, and until when (engine clock) the memory cap and max_latency are not
#: enforced by spilling: their events are sent meanwhile (a stream paused after each failed spill sent nothing
#: while its buffers stayed above the cap, with CloudWatch healthy and the disk full).
_spill_paused: weakref.WeakKeyDictionary[Channel, float] = weakref.WeakKeyDictionary()


def _spill_paused_now(channel: Channel) -> bool:
    return _spill_paused.get(channel, -math.inf) > channel.engine.clock()


def _counted_bytes(events: Sequence[LogEvent]) -> int:
    """Sum of the events' counted sizes (in C: this runs for every event sent)."""
    return sum(map(_size, events))


@dataclass
class Context:
    """What the sender passes down: time sources and randomness (injected for tests)."""

    clock: Clock
    wall_ms: Clock
    random: Random


#: While tokens are scarce (the budget made us wait, or CloudWatch throttled), partial batches wait this many
#: send intervals (at most a quarter of max_latency) so that each call carries more events.
SCARCE_INTERVAL_FACTOR = 4.0
#: How long one sign of scarcity counts.
SCARCE_WINDOW = 10.0
#: A stream whose backoff would outlast a waiting flush()/close() is called once this long before its deadline
#: (room for creating a missing stream and one more call under a budget lowered to 1 call/s).
LAST_CALL_MARGIN = 2.0


def service_channel(channel: Channel, ctx: Context) -> float:
    """Send what is due in ``channel``; return the monotonic time it next needs attention (inf: idle).

    One batch at a time, always from the stream whose oldest pending event is oldest (no stream starves);
    a full batch is due at once, a partial one after the send interval (longer while tokens are scarce).
    The streams due are kept in a heap by their oldest event, so a pass over n of them costs O(n log n), not
    O(n^2) (1,000 streams due at once took 0.5 s of CPU, 4,000 took 7 s). Empty streams are forgotten
    (see :func:`_forget_idle`): a process that writes to ever new streams does not keep them all.
    """
    channel.drain_inbox()
    now = ctx.clock()
    with channel.lock:
        buffers: list[StreamBuffer] = []
        idle: list[StreamBuffer] = []
        for buffer in channel.buffers.values():
            (idle if buffer.is_empty() else buffers).append(buffer)
        if idle:
            _forget_idle(channel, idle, now)
        known_streams = len(channel.buffers)
    if not buffers:
        channel.armed = True  # idle: the next append wakes the sender
        if channel.inbox:  # raced with an append: come back at once
            channel.armed = False
            return now
        return _settle_owed(channel, ctx)
    _enforce_memory_cap(channel, buffers)
    for buffer in buffers:
        _expire(channel, buffer, ctx)
    pass_ = _Pass(channel, ctx)
    for buffer in buffers:
        pass_.consider(buffer)
    while pass_.heap:
        channel.drain_inbox()
        pass_.look_again()
        _, _, _, buffer = heapq.heappop(pass_.heap)
        if not pass_.still_first(buffer):
            continue
        now = pass_.now
        if buffer.missing is not None:
            if buffer.retry_at > now:  # the last call before a flush deadline (one per deadline) is this create
                buffer.last_call_for = pass_.last_call
            if not _create_owed(channel, buffer, ctx):
                pass_.consider(buffer)  # not due until its create budget has a token or its backoff ends
                continue
        # the time now, after the creates and expiry spills above (network and disk): a host budget takes a reading
        # more than a second older than another process's for another clock, and starts over with a full bucket
        now = ctx.clock()
        wait = channel.budgets.put.acquire(now)
        if wait > 0:
            channel.scarce_until = now + SCARCE_WINDOW
            return min(pass_.next_wake, now + wait)
        if buffer.retry_at > now:  # the last call before a flush deadline: only one per deadline
            buffer.last_call_for = pass_.last_call
        _send_one(channel, buffer, ctx)
        channel.drain_inbox()  # what came meanwhile, a spill marker the delivery queued too
        pass_.look_again()
        pass_.consider(buffer)
    # a stream that appeared during this pass gets looked at now, not after the idle backstop
    owed_at = _settle_owed(channel, ctx)
    return pass_.now if len(channel.buffers) != known_streams else min(pass_.next_wake, owed_at)


def _settle_owed(channel: Channel, ctx: Context) -> float:
    """:func:`settle_group` once the channel has delivered (its group exists: a new group gets its settings from
    the create path, and asking before would cost calls answered ResourceNotFound); when it next needs to run."""
    return settle_group(channel, ctx) if owes_group_settings(channel) else math.inf


#: An empty stream that failed its last call is forgotten only after this many seconds without events (longer than
#: any backoff), so that a stream refused again and again keeps backing off rather than calling at once.
FORGET_AFTER_BACKOFF = 60.0


def _forget_idle(channel: Channel, idle: Sequence[StreamBuffer], now: float) -> None:
    """Drop empty streams from ``channel.buffers`` (lock held; only the sender, at the start of a pass): an Airflow 3
    supervisor or triggerer sets a new stream name per task try on one handler, and kept every stream for the
    process's life (~1-2 KB each, scanned on every wake-up). Kept: a stream some thread still holds events of (they
    may be put back), one that owes a spill marker, and one still backing off."""
    busy = {id(held.buffer) for held in channel.held if held.buffer is not None}
    for buffer in idle:
        if buffer.spilled_unmarked or id(buffer) in busy:
            continue
        if buffer.backoff.attempts and now < buffer.retry_at + FORGET_AFTER_BACKOFF:
            continue
        if channel.buffers.get(buffer.stream) is buffer:
            del channel.buffers[buffer.stream]


class _Pass:
    """One pass of the sender over a channel: the streams due now, in a heap by their oldest event."""

    def __init__(self, channel: Channel, ctx: Context) -> None:
        self.channel = channel
        self.ctx = ctx
        self.heap: list[tuple[int, int, int, StreamBuffer]] = []
        self.next_wake = math.inf
        self._order = itertools.count()
        self.look_again()

    def look_again(self) -> None:
        """Read the time and what flush()/close() ask for now."""
        channel = self.channel
        self.now = now = self.ctx.clock()
        with channel.lock:
            # not "or closed": records logged after close() (the channel stays closed) are batched as before it
            self.flushing = channel.settled < channel.flush_target
            self.last_call = min(channel.flush_deadlines, default=math.inf) - LAST_CALL_MARGIN
        self.interval = _send_interval(channel, now)

    def _due(self, buffer: StreamBuffer) -> float:
        """When ``buffer`` should send next (its backoff, the send interval; at once when full or flushing)."""
        due = retry_due(buffer, self.last_call)
        if due > self.now:
            return due
        settings = self.channel.settings
        since = buffer.since if buffer.since is not None else self.now
        if self.flushing or buffer.bytes >= settings.max_batch_size or buffer.count >= settings.max_batch_count:
            return due
        return max(due, since + self.interval)

    def _head(self, buffer: StreamBuffer) -> tuple[int, int] | None:
        """The (timestamp, seq) of ``buffer``'s oldest event, once its appended events are in order; None if it is
        not due now (then :attr:`next_wake` keeps when it is) or has nothing to send."""
        if buffer.count == 0:
            return None
        due = self._due(buffer)
        if due > self.now:
            self.next_wake = min(self.next_wake, due)
            return None
        _expire(self.channel, buffer, self.ctx)  # what arrived during this pass too: not sent if CloudWatch refuses it
        with self.channel.lock:
            if not buffer.ready:
                return None
            head = buffer.ready[0]
        return head[TIMESTAMP], head[SEQ]

    def consider(self, buffer: StreamBuffer) -> None:
        """Put ``buffer`` in the heap if it is due now."""
        head = self._head(buffer)
        if head is not None:
            heapq.heappush(self.heap, (*head, next(self._order), buffer))

    def still_first(self, buffer: StreamBuffer) -> bool:
        """Whether ``buffer``, just taken from the heap, is still due with the oldest event it was pushed with; if
        something changed it meanwhile (another thread spilled its head, older events arrived), it goes back in
        by what it holds now."""
        head = self._head(buffer)
        if head is None:
            return False
        if self.heap and head > self.heap[0][:2]:
            heapq.heappush(self.heap, (*head, next(self._order), buffer))
            return False
        return True


def retry_due(buffer: StreamBuffer, last_call: float) -> float:
    """When ``buffer`` may be called again: when its backoff ends, or at ``last_call`` (a waiting flush()'s
    deadline minus :data:`LAST_CALL_MARGIN`; infinite when none waits) if the backoff would end later.

    A flush() or close() thus does not give up, nor close() spill, without one more call when the backoff (up
    to 20 s, longer than the default ``close_timeout``) would end after it: tasks that end together under
    throttling would otherwise spill what CloudWatch could take by then. One such call per deadline, and only
    when the throttle budget grants it, so a failing endpoint is not hammered.
    """
    if buffer.retry_at > last_call and buffer.last_call_for != last_call:
        return last_call
    return buffer.retry_at


def _send_interval(channel: Channel, now: float) -> float:
    interval = channel.settings.send_interval
    if now < channel.scarce_until:
        return max(interval, min(interval * SCARCE_INTERVAL_FACTOR, channel.settings.max_latency / 4))
    return interval


def _send_one(channel: Channel, buffer: StreamBuffer, ctx: Context) -> None:
    """Send the first batch of ``buffer`` (a token was taken) and settle the result."""
    settings = channel.settings
    with channel.lock:
        if not buffer.ready:  # close() took them meanwhile
            return
        end = batch_end(buffer.ready, 0, max_bytes=settings.max_batch_size, max_count=settings.max_batch_count)
        batch, size = _remove_ready_head(channel, buffer, end)
        flight = buffer.in_flight = channel.hold(InFlight(buffer, batch, size))
    try:
        result = channel.transport().put_log_events(channel.destination.group, buffer.stream, batch)
    except Exception as exc:  # a transport never raises by contract; if one does, retry rather than strand
        report(f"PutLogEvents raised {exc!r}; the batch will be retried")
        result = CallResult(Outcome.TRANSIENT, error_code=type(exc).__name__, message=str(exc), ambiguous=True)
    _settle_put(channel, buffer, flight, result, ctx)
    with channel.lock:
        if buffer.count == 0:
            buffer.since = None


def _take_pending(channel: Channel, buffer: StreamBuffer) -> None:
    """Move appended events into the sorted ``ready`` list.

    ``pending`` is in emission (seq) order, so a stable sort on the timestamp alone puts it in
    (timestamp, seq) order, at C speed. It then usually starts after ``ready``'s last event and is
    appended as is; only a clock that went backwards costs a merge. (Sorting all of ``ready`` with a
    Python key on every wake-up made the sender's work grow with the buffer: O(n^2) per batch.)
    """
    with channel.lock:
        pending = buffer.pending
        if not pending:
            return
        pending.sort(key=_by_timestamp)
        buffer.pending = []
        max_latency = channel.settings.max_latency
        if pending[0][TIMESTAMP] < (late_below := channel.engine.wall_ms() - max_latency * 1000):  # logged that late
            buffer.late_grace_until = channel.engine.clock() + max_latency
            buffer.late_below_ms = late_below  # what is older arrived late (on-time events that old are spilled)
        ready = buffer.ready
        if not ready:
            buffer.ready = pending
        elif sort_key(ready[-1]) <= sort_key(pending[0]):
            ready.extend(pending)
        else:
            ready.extend(pending)
            ready.sort(key=sort_key)


def _remove_ready_head(channel: Channel, buffer: StreamBuffer, end: int) -> tuple[list[LogEvent], int]:
    """Remove ``ready[:end]`` (caller holds the lock) and update the accounting; return it and its counted
    bytes."""
    taken = buffer.ready[:end]
    del buffer.ready[:end]
    size = _counted_bytes(taken)
    buffer.bytes -= size
    buffer.count -= len(taken)
    channel.pending_bytes -= size
    return taken, size


def _expire(channel: Channel, buffer: StreamBuffer, ctx: Context) -> None:
    """Spill events CloudWatch cannot take (too old/new) or that waited past ``max_latency``."""
    _take_pending(channel, buffer)
    wall = int(ctx.wall_ms())
    on_time_cutoff = wall - int(channel.settings.max_latency * 1000)
    in_grace, late_below = False, buffer.late_below_ms  # in a grace: events older than late_below arrived late
    if _spill_paused_now(channel):  # no spill target can take them: late events are sent late, not kept back
        latency_cutoff = -math.inf
    elif ctx.clock() < buffer.late_grace_until:  # logged already late (old timestamps): they are tried for
        latency_cutoff = wall - MAX_AGE_MS  # max_latency from their arrival; only what CloudWatch refuses goes
        in_grace = True
    else:
        latency_cutoff = on_time_cutoff
    with channel.lock:
        ready = buffer.ready
        if not ready:
            return
        if ready[0][TIMESTAMP] >= latency_cutoff and ready[-1][TIMESTAMP] < wall + 3_600_000:
            if not in_grace:
                return  # the common case: nothing old, nothing far in the future
            first_on_time = bisect.bisect_left(ready, late_below, key=_by_timestamp)
            if first_on_time == len(ready) or ready[first_on_time][TIMESTAMP] >= on_time_cutoff:
                return  # only events that arrived late are that old: their grace holds
        sendable, too_old, too_new = partition_by_age(ready, wall)

        def overdue(timestamp: int) -> bool:  # (the events that arrived on time, in a grace)
            return timestamp < latency_cutoff or (in_grace and late_below <= timestamp < on_time_cutoff)

        late = [e for e in sendable if overdue(e[TIMESTAMP])]
        if late:
            sendable = [e for e in sendable if not overdue(e[TIMESTAMP])]
        removed = len(ready) - len(sendable)
        if not removed:
            return
        buffer.ready = sendable
        gone = [(channel.hold(Held(buffer, events, _counted_bytes(events))), reason)
                for events, reason in ((too_old, SpillReason.TOO_OLD), (too_new, SpillReason.TOO_NEW),
                                       (late, SpillReason.MAX_LATENCY)) if events]
        size = sum(held.size for held, _ in gone)
        buffer.bytes -= size
        buffer.count -= removed
        if buffer.count == 0:
            buffer.since = None  # emptied: the next event starts a fresh wait (and the age in stats() ends)
        channel.pending_bytes -= size
    for held, reason in gone:
        detail = buffer.backoff.history[-1] if reason is SpillReason.MAX_LATENCY and buffer.backoff.history else ""
        spill_held(channel, [held], reason.value, detail)


def relieve_memory(channel: Channel) -> None:
    """Move ``channel``'s inbox into its buffers and spill above ``max_buffer_bytes`` (the memory guard's work,
    done while the sender is blocked in a call; every step takes the channel lock, as ``close()``'s spill does)."""
    channel.drain_inbox()
    with channel.lock:
        buffers = [b for b in channel.buffers.values() if not b.is_empty()]
    _enforce_memory_cap(channel, buffers)


def _enforce_memory_cap(channel: Channel, buffers: Sequence[StreamBuffer]) -> None:
    """Above ``max_buffer_bytes``, spill the oldest events of the largest buffers."""
    cap = channel.settings.max_buffer_bytes
    if channel.pending_bytes <= cap or _spill_paused_now(channel):
        return
    for buffer in sorted(buffers, key=lambda b: b.bytes, reverse=True):
        excess = channel.pending_bytes - int(cap * 0.9)
        if excess <= 0:
            return
        _take_pending(channel, buffer)
        with channel.lock:
            end, freed = 0, 0
            while end < len(buffer.ready) and freed < excess:
                freed += buffer.ready[end][SIZE]
                end += 1
            gone, size = _remove_ready_head(channel, buffer, end)
            if buffer.count == 0 and buffer.in_flight is None:
                buffer.since = None
            held = channel.hold(Held(buffer, gone, size)) if gone else None
        if held is not None:
            spill_held(channel, [held], SpillReason.MEMORY_CAP.value, f"buffers above {cap} bytes")


def _settle_put(channel: Channel, buffer: StreamBuffer, flight: InFlight, result: CallResult,
                ctx: Context) -> bool:
    """Act on one PutLogEvents result. True when the batch is settled, False when it waits for a retry."""
    now = ctx.clock()
    batch = flight.events
    counters = channel.counters
    outcome = result.outcome
    with channel.lock:
        buffer.in_flight = None
        counters.put_calls += 1
        counters.bytes_sent += result.wire_bytes
        if flight.abandoned:  # close() spilled this batch at its deadline while we were sending it
            if outcome in (Outcome.OK, Outcome.PARTIAL):
                counters.duplicates += len(batch)
            return True
    # the sender still holds the batch: each path below records it delivered, spilled or requeued
    if outcome is Outcome.OK:
        _delivered(channel, flight, ctx)
        channel.budgets.put.on_success(now)
        return True
    if outcome is Outcome.PARTIAL:
        rejected_idx: set[int] = set()
        with channel.lock:
            channel.release(flight)
            rejected: list[tuple[Held, str]] = []
            for start, stop, reason in rejected_slices(len(batch), result.rejected):  # type: ignore[arg-type]
                rejected_idx.update(range(start, stop))
                rejected.append((channel.hold(Held(buffer, batch[start:stop], _counted_bytes(batch[start:stop]))),
                                 reason))
            accepted = [e for i, e in enumerate(batch) if i not in rejected_idx]
            delivered = channel.hold(Held(buffer, accepted, _counted_bytes(accepted)))
        for held, reason in rejected:
            spill_held(channel, [held], reason, result.message)
        _delivered(channel, delivered, ctx)
        channel.budgets.put.on_success(now)
        return True
    if outcome is Outcome.NO_RESOURCE:
        created = _create_resources(channel, buffer, _missing_stage(result), ctx)
        if created is None:
            spill_held(channel, [flight], SpillReason.NO_RESOURCE.value, result.message)
            return True
        if created:
            retry_at = _backoff(buffer, "no_resource", ctx)
            if buffer.backoff.history[-2:-1] != ("no_resource",):
                # just created: retry at once (also after throttles, e.g. a new stream's first calls); if the
                # resource is still missing on that retry, back off
                retry_at = buffer.retry_at = now
        else:  # not created yet: its create waits for a token (retry_at set then) or backs off
            retry_at = buffer.retry_at if buffer.retry_at > now else _backoff(buffer, "no_resource", ctx)
        _requeue(channel, flight, retry_at=retry_at)
        return False
    if outcome in (Outcome.THROTTLED, Outcome.TRANSIENT):
        with channel.lock:
            counters.retries += 1
            if outcome is Outcome.THROTTLED:
                counters.throttled += 1
            if result.ambiguous:
                counters.ambiguous_failures += 1
        if outcome is Outcome.THROTTLED:
            channel.budgets.put.on_throttled(now)
            channel.scarce_until = now + SCARCE_WINDOW
        _requeue(channel, flight, retry_at=_backoff(buffer, result.error_code or outcome.value, ctx))
        return False
    # INVALID or AUTH: retrying the same call cannot help; keep the lines, slow this stream down.
    reason = SpillReason.AUTH if outcome is Outcome.AUTH else SpillReason.INVALID
    count = len(flight.events)
    spilled = spill_held(channel, [flight], reason.value, f"{result.error_code}: {result.message}")
    if spilled.where is None:  # where they are said, not where spill_to would have them
        fate = (f"no spill target could store its {count} events (reason {reason.value}); they are kept in memory and "
                "tried again")
    elif spilled.kept:
        fate = (f"{count - spilled.kept} of its {count} events are spilled to {spilled.where} (reason "
                f"{reason.value}); no spill target could store the other {spilled.kept}, kept in memory and tried "
                "again")
    else:
        fate = f"its events are spilled to {spilled.where} (reason {reason.value})"
    report(f"PutLogEvents to log group {channel.destination.group} refused ({result.error_code}: {result.message}): "
           f"{fate}", key=f"refused: {channel.destination.group} {result.error_code} {spilled.where is None} "
           f"{spilled.kept > 0}")  # (a spill file's name changes every time: said once a minute all the same)
    if outcome is Outcome.AUTH:
        buffer.retry_at = _backoff(buffer, result.error_code or "auth", ctx)
        return False
    return True


def _backoff(buffer: StreamBuffer, reason: str, ctx: Context) -> float:
    buffer.backoff = buffer.backoff.failed(reason)
    buffer.retry_at = ctx.clock() + buffer.backoff.delay(ctx.random)
    return buffer.retry_at


def _requeue(channel: Channel, held: Held, retry_at: float) -> None:
    """Put a batch whose call failed back at the head of its stream (it was the head: order is kept)."""
    with channel.lock:
        _put_back(channel, held, retry_at)


def _put_back(channel: Channel, held: Held, retry_at: float, *, reorder: bool = False) -> None:
    """Return held events to where they came from (lock held): a buffer, retried at ``retry_at`` (``reorder``:
    sorted in, for events that were not its head), or the inbox (queued events, drained again later)."""
    channel.release(held)
    buffer, events = held.buffer, held.events
    if buffer is None:
        channel.inbox.extendleft(reversed(cast("list[QueuedEvent]", events)))
        channel.queued_bytes += held.size
        channel.counters.emitted -= len(events)  # counted again when drained
        return
    buffer.ready[:0] = events
    if reorder:
        buffer.ready.sort(key=sort_key)
    buffer.bytes += held.size
    buffer.count += len(events)
    channel.pending_bytes += held.size
    buffer.retry_at = retry_at
    if buffer.since is None:  # taken from a buffer they emptied: they wait again, not forever
        buffer.since = channel.engine.clock()


def _delivered(channel: Channel, held: Held, ctx: Context) -> None:
    buffer, events = held.buffer, held.events
    assert buffer is not None  # only buffered events are sent
    with channel.lock:
        counters = channel.counters
        counters.delivered += len(events)
        counters.counted_bytes_delivered += held.size
        channel.release(held)
        channel.settled += len(events)
        if buffer.backoff.attempts:
            buffer.backoff = buffer.backoff.reset()
        if buffer.spilled_unmarked and channel.settings.spill_marker:
            # queued before waiters wake, so close() sees it as work still to do
            marker = marker_message(buffer.spilled_unmarked, buffer.marker_reasons, buffer.marker_where)
            channel.queue(buffer.stream, int(ctx.wall_ms()), marker)
            buffer.spilled_unmarked = 0
            buffer.marker_where.clear()
            buffer.marker_reasons.clear()
            counters.markers += 1
        if channel.flush_deadlines:
            channel.settled_cond.notify_all()
    if settle_watchers:
        notify_settled(channel)


def notify_settled(channel: Channel) -> None:
    """Run ``channel``'s settle watcher, if any (see ``channel.settle_watchers``); it never breaks delivery."""
    watcher = settle_watchers.get(channel)
    if watcher is None:
        return
    try:
        watcher()
    except Exception as exc:
        report(f"a settle watcher of log group {channel.destination.group} failed: {exc!r}")


MARKER_PREFIX = "[mwaa-logging] "


def marker_message(count: int, reasons: set[str], where: set[str]) -> str:
    """The event written into a stream after some of its events were spilled."""
    return (f"{MARKER_PREFIX}{count} log events of this stream were not sent to CloudWatch "
            f"({', '.join(sorted(reasons))}) and are stored in {', '.join(sorted(where))}; "
            f"`mwaa-logging replay` can put them back.")


class Spilled(NamedTuple):
    """What :func:`spill_held` did: where the events it stored are (``None``: it stored none; ``""``: there were
    none to store), and how many it could not store and put back (kept in memory, tried again)."""

    where: str | None
    kept: int


def spill_held(channel: Channel, helds: Sequence[Held], reason: str, detail: str = "",
               deadline: float | None = None) -> Spilled:
    """Write held events to the spill target (the fallback directory for what it could not store) in one write,
    and count them spilled. ``deadline`` (``time.monotonic()``) bounds a target that can stop at one (S3).

    A target that fails in any way, not only with ``SpillError``, counts as failed. Events no target could store go
    back where they came from (their stream then waits :data:`SPILL_RETRY_DELAY`); those a target did store
    (a :class:`PartialSpillError` names the rest) are counted spilled, where they are, never put back to be
    stored or sent again: a disk that filled up after one stream's file was written keeps only the other streams'
    events.
    """
    group = channel.destination.group
    now = int(channel.engine.wall_ms())
    per_held = [[SpillRecord(group, stream, timestamp, message, reason, detail, now)
                 for stream, timestamp, message in _lines(held)] for held in helds]
    records = [record for held_records in per_held for record in held_records]
    if not records:
        with channel.lock:
            for held in helds:
                channel.release(held)
        return Spilled("", 0)
    stores: list[tuple[str, set[int]]] = []  # (location, ids of the records stored there)
    pending: list[SpillRecord] = records
    try:
        stores.append((write_before(channel.spill, pending, deadline), set(map(id, pending))))
        pending = []
    except Exception as exc:
        if isinstance(exc, PartialSpillError):  # only what it could not store moves on
            pending = _stored_there(stores, exc, pending)
        report(f"spill to {channel.spill.description} failed ({exc!r}); using {_fallback_description(channel)}",
               key=f"spill failed: {channel.spill.description}")
        with channel.lock:
            channel.counters.spill_failures += 1
        if channel.fallback_spill is not None:
            try:
                stores.append((channel.fallback_spill.write(pending), set(map(id, pending))))
                pending = []
            except Exception as exc2:
                if isinstance(exc2, PartialSpillError):
                    pending = _stored_there(stores, exc2, pending)
                report(f"fallback spill failed too ({exc2!r}); keeping {len(pending)} events in memory",
                       key=f"fallback spill failed: {_fallback_description(channel)}")
    kept = len(pending)
    stored_ids = set().union(*(ids for _, ids in stores))
    with channel.lock:
        retry_at = channel.engine.clock() + SPILL_RETRY_DELAY
        sendable = reason in SENDABLE_REASONS
        if kept and sendable:  # CloudWatch can take them: keep sending; spill again after the delay
            _spill_paused[channel] = retry_at
        for held, held_records in zip(helds, per_held, strict=True):
            buffer = held.buffer
            stored = [id(record) in stored_ids for record in held_records]
            count = sum(stored)
            if count < len(held.events):  # what no target stored goes back; what one did is spilled, not again
                if count:
                    channel.release(held)
                    rest = [event for event, done in zip(held.events, stored, strict=True) if not done]
                    held = channel.hold(Held(buffer, rest, sum(abs(event[SIZE]) for event in rest)))
                _put_back(channel, held, buffer.retry_at if sendable and buffer is not None else retry_at,
                          reorder=True)
                if not count:
                    continue
            else:
                channel.release(held)
            channel.counters.spilled[reason] += count
            channel.settled += count
            if buffer is not None:
                buffer.spilled_unmarked += count
                buffer.marker_where.update(where for where, ids in stores
                                           if any(id(record) in ids for record in held_records))
                buffer.marker_reasons.add(reason)
        if channel.flush_deadlines and stores:
            channel.settled_cond.notify_all()
    if settle_watchers and stores:
        notify_settled(channel)
    return Spilled(" + ".join(where for where, _ in stores) if stores else None, kept)


def _stored_there(stores: list[tuple[str, set[int]]], exc: PartialSpillError,
                  pending: list[SpillRecord]) -> list[SpillRecord]:
    """After a target stored some of ``pending`` and raised ``exc``: add where it stored which to ``stores``; return
    the records of ``pending`` (the very objects) still to be stored. A target that names copies of the records
    it did not store, not the records themselves, is matched by value (equal records are interchangeable)."""
    remaining_ids = set(map(id, exc.remaining))
    rest = [record for record in pending if id(record) in remaining_ids]
    if len(rest) != len(exc.remaining):
        left = Counter(exc.remaining)
        rest = []
        for record in pending:
            if left[record] > 0:
                left[record] -= 1
                rest.append(record)
    rest_ids = set(map(id, rest))
    stored = {id(record) for record in pending if id(record) not in rest_ids}
    if stored:
        stores.append((exc.location, stored))
    return rest


def _lines(held: Held) -> list[tuple[str, int, str]]:
    """``(stream, timestamp, message)`` of each held event (queued events taken from the inbox carry their
    stream)."""
    if held.buffer is not None:
        stream = held.buffer.stream
        return [(stream, e[TIMESTAMP], e[MESSAGE]) for e in held.events]
    return [(q[STREAM], q[TIMESTAMP], q[MESSAGE]) for q in cast("list[QueuedEvent]", held.events)]


def rescuing(channel: Channel, work: Callable[[], R], what: str) -> R | None:
    """Run ``work`` on ``channel``'s events (the sender's pass, the memory guard's, a close deadline's spill).

    If it raises, the exception is reported and what this thread still holds (taken out of the inbox, a buffer
    or flight, see :class:`Held`) is spilled with reason :data:`INTERNAL_ERROR` and the exception as detail, or,
    if that fails too, put back: nothing is lost and the counters add up. Returns None then.
    """
    try:
        return work()
    except Exception as exc:
        report(f"{what} failed on log group {channel.destination.group}: {exc!r}; its events are spilled")
        rescue(channel, exc)
        return None


def rescue(channel: Channel, exc: BaseException) -> None:
    """Spill (reason :data:`INTERNAL_ERROR`) what the calling thread holds of ``channel`` after ``exc``."""
    me = threading.get_ident()
    with channel.lock:
        mine = [held for held in channel.held if held.owner == me]
        for held in mine:
            if isinstance(held, InFlight) and held.buffer is not None and held.buffer.in_flight is held:
                held.buffer.in_flight = None
    if not mine:
        return
    try:
        spill_held(channel, mine, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
    except Exception as again:
        report(f"spilling after {exc!r} failed too ({again!r}); the events are kept in memory")
        with channel.lock:
            retry_at = channel.engine.clock() + SPILL_RETRY_DELAY
            for held in mine:
                if held in channel.held:
                    _put_back(channel, held, retry_at, reorder=True)


def _fallback_description(channel: Channel) -> str:
    return channel.fallback_spill.description if channel.fallback_spill is not None else "nothing"


def _create_owed(channel: Channel, buffer: StreamBuffer, ctx: Context) -> bool:
    """Make the calls ``buffer`` owes (see :attr:`StreamBuffer.missing`) before it puts again. True: the put may go
    now (created; or not allowed, which the put's answer then spills); False: not yet (``retry_at`` set)."""
    assert buffer.missing is not None
    now = ctx.clock()
    if _create_resources(channel, buffer, buffer.missing, ctx) is False:
        if buffer.retry_at <= now:  # the call failed (the budget's wait sets retry_at itself)
            _backoff(buffer, "no_resource", ctx)
        return False
    return True


def _missing_stage(result: CallResult) -> str:
    """What a ResourceNotFound answer says is missing: the ``group`` or the ``stream``."""
    return "group" if "group" in result.message.lower() else "stream"


def _create_resources(channel: Channel, buffer: StreamBuffer, stage: str, ctx: Context) -> bool | None:
    """Make what is missing, from ``stage`` on: the ``group``, its ``retention`` policy, the ``stream``. True: done
    (put now); False: try later, from the stage ``buffer.missing`` names (when a budget has no token yet,
    ``buffer.retry_at`` is set to this stream's turn); None: not allowed. A stage done is not made again."""
    destination = channel.destination
    transport = channel.transport()
    buffer.missing = None
    if stage == "group":
        if not destination.create_log_group:
            report(f"log group {destination.group} does not exist and create_log_group is false: its events are "
                   f"spilled to {channel.spill.description}")
            return None
        answers: list[CallResult] = []

        def create_group() -> CallResult:
            answers.append(transport.create_log_group(destination.group, destination.log_group_tags))
            return answers[-1]

        created = _create(channel, channel.budgets.create_group, ctx, f"CreateLogGroup {destination.group}",
                          create_group, buffer)
        if created is not True:
            buffer.missing = "group" if created is False else None
            return created
        if answers and answers[-1].error_code is None:  # made by this call, with the tags; not one another made
            _settled_group(channel, "tags")
        stage = "retention" if destination.log_group_retention_days else "stream"
    if stage == "retention":  # before the stream: a retention never set would keep the group's logs for good
        days = destination.log_group_retention_days or 0
        if _create(channel, channel.budgets.create_group, ctx, f"PutRetentionPolicy {destination.group}",
                   lambda: transport.put_retention_policy(destination.group, days), buffer) is False:
            buffer.missing = "retention"
            return False  # (refused for good: said, and the stream is made all the same)
        _settled_group(channel, "retention")
    if not destination.create_log_stream:
        report(f"a log stream of {destination.group} does not exist and create_log_stream is false: its events are "
               f"spilled to {channel.spill.description}")
        return None
    outcome: list[Outcome] = []

    def create_stream() -> CallResult:
        answer = transport.create_log_stream(destination.group, buffer.stream)
        outcome.append(answer.outcome)
        return answer

    created = _create(channel, channel.budgets.create_stream, ctx, f"CreateLogStream {buffer.stream}", create_stream,
                      buffer)
    if outcome == [Outcome.NO_RESOURCE] and stage == "stream":  # the group was missing, not the stream
        return _create_resources(channel, buffer, "group", ctx)
    if created is False:
        buffer.missing = "stream"
    return created


#: A retention policy or tags call for a group that exists is made at most this many times (each failure said),
#: this many seconds apart.
GROUP_SETTING_TRIES = 3
GROUP_SETTING_RETRY = 1.0


def settle_group(channel: Channel, ctx: Context) -> float:
    """Apply the ``log_group_retention_days`` and ``log_group_tags`` the channel owes (see
    :class:`GroupSettingsOwed`) to its group, as watchtower 3.4 does in its constructor for a group that exists
    too; the sender calls this at the end of its passes over the channel while some are owed, once the channel has
    delivered (so also once its lines are all sent), never the constructor. Returns when it next needs to run (inf:
    nothing owed). close() and the exit flush wait for it within their deadline (``Channel.await_group_settings``).

    PutRetentionPolicy, and TagResource (see ``BotocoreTransport.tag_log_group``), under the CreateLogGroup budget.
    Puts never wait for them: without a token now, they are tried again once the budget has one. A group that does
    not exist (any more) is left to the create path, which applies both when it creates it. A throttled or failed
    call is tried again :data:`GROUP_SETTING_RETRY` s later, :data:`GROUP_SETTING_TRIES` calls in all; refused
    (access denied, an invalid value, a client without the call), it is not. Every failure is said, as a failed
    create is."""
    owed = group_settings_owed.get(channel)
    if owed is None:
        return math.inf
    now = ctx.clock()
    if now < owed.retry_at:
        return owed.retry_at
    destination = channel.destination
    transport = channel.transport()
    budget = channel.budgets.create_group
    for setting in list(owed.settings):
        now = ctx.clock()
        wait = budget.acquire(now)
        if wait > 0:
            return now + wait
        what = f"{'PutRetentionPolicy' if setting == 'retention' else 'TagResource'} {destination.group}"
        try:
            if setting == "retention":
                answer = transport.put_retention_policy(destination.group, destination.log_group_retention_days or 0)
            else:
                answer = transport.tag_log_group(destination.group, destination.log_group_tags or {})
        except Exception as exc:  # a client that lacks the call (a wrapper given as boto3_client): never stops puts
            answer = CallResult(Outcome.INVALID, error_code=type(exc).__name__, message=str(exc))
        with channel.lock:
            channel.counters.create_calls += 1
        outcome = answer.outcome
        if outcome is Outcome.OK:
            budget.on_success(ctx.clock())
        elif outcome is Outcome.NO_RESOURCE:  # the put's ResourceNotFound leads to the create, which applies it
            if not destination.create_log_group:
                report(f"{what} failed: {answer.error_code} {answer.message}")
        else:
            if outcome is Outcome.THROTTLED:
                budget.on_throttled(ctx.clock())
            owed.failures += 1
            final = outcome in (Outcome.AUTH, Outcome.INVALID) or owed.failures >= GROUP_SETTING_TRIES
            report(f"{what} failed: {answer.error_code} {answer.message}"
                   + ("" if final else f"; tried again in {GROUP_SETTING_RETRY:g} s"))
            if not final:
                owed.retry_at = ctx.clock() + GROUP_SETTING_RETRY
                return owed.retry_at
        _settled_group(channel, setting)
    return math.inf


def _settled_group(channel: Channel, setting: str) -> None:
    """``setting`` (``"retention"``, ``"tags"``) is no longer owed to the channel's group."""
    owed = group_settings_owed.get(channel)
    if owed is not None and setting in owed.settings:
        owed.settings = [name for name in owed.settings if name != setting]
        if not owed.settings:
            group_settings_owed.pop(channel, None)


#: Per create budget, the engine time of the last turn given to a stream waiting for one of its tokens.
_create_turns: weakref.WeakKeyDictionary[Budget, float] = weakref.WeakKeyDictionary()
#: Streams waiting for a create token ask the budget one at a time, this far apart (CloudWatch's CreateLogStream
#: quota: 50 calls/s): about 50 checks a second, however many wait.
CREATE_TURN_SECONDS = 1.0 / CREATE_LOG_STREAM_TPS
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_create_turns.clear)  # the parent's queue is not the child's


def _create(channel: Channel, budget: Budget, ctx: Context, what: str, call: Callable[[], CallResult],
            waiting: StreamBuffer | None) -> bool | None:
    """One Create*/Put* call under its budget. True: done; False: try later (``waiting`` gets ``retry_at`` when the
    budget has a token, if it has none now); None: refused for good. A throttle slows the budget down."""
    now = ctx.clock()
    if (wait := budget.acquire(now)) > 0:
        if waiting is not None and waiting.retry_at <= now:  # (a last call before a deadline keeps its turn)
            # Streams that wait for this budget take turns, CREATE_TURN_SECONDS apart: all retrying at the next
            # token made each token cost as many budget checks (Redis round trips) as streams were waiting. Not a
            # ``wait`` apart: measured at a throttle's 1 call/s floor, that kept them 1 s apart once the budget
            # had recovered, and their lines went past max_latency.
            slot = max(now, _create_turns.get(budget, now)) + min(wait, CREATE_TURN_SECONDS)
            _create_turns[budget] = waiting.retry_at = slot
        return False
    answer = call()
    with channel.lock:
        channel.counters.create_calls += 1
    if answer.outcome is Outcome.OK:
        budget.on_success(ctx.clock())
        return True
    if answer.outcome is Outcome.THROTTLED:
        budget.on_throttled(ctx.clock())
    report(f"{what} failed: {answer.error_code} {answer.message}")
    return None if answer.outcome in (Outcome.AUTH, Outcome.INVALID) else False


def spill_everything(channel: Channel, reason: str, deadline: float | None = None) -> None:
    """Spill every pending and in-flight event of ``channel`` now (close deadline, interpreter exit), every stream in
    one write (many streams' files are made durable together); ``deadline`` bounds a target that can stop (S3)."""
    rescuing(channel, channel.drain_inbox, "draining the queue")  # what cannot be buffered is spilled there
    with channel.lock:
        work: list[Held] = []
        for buffer in channel.buffers.values():
            events, size = buffer.ready + buffer.pending, buffer.bytes
            flight = buffer.in_flight
            if flight is not None and not flight.abandoned:
                flight.abandoned = True
                channel.release(flight)  # the sender no longer holds it: this thread does
                # nor is it the stream's work any more (a later close() would wait out its deadline for the call)
                buffer.in_flight = None
                events, size = flight.events + events, flight.size + size
            buffer.ready, buffer.pending = [], []
            channel.pending_bytes -= buffer.bytes
            buffer.bytes = buffer.count = 0
            buffer.since = None
            if events:
                work.append(channel.hold(Held(buffer, events, size)))
    for held in work:
        held.events.sort(key=sort_key)
    spill_held(channel, work, reason, deadline=deadline)
