"""The engine: one background sender thread per process serving every channel (handler) and stream.

It wakes when a batch is full, a send interval or retry delay is up, a flush is requested, or a channel
is closed. Forked children get a fresh engine state (the parent keeps and sends what it buffered);
pending events are flushed at interpreter exit, and spilled if the deadline passes.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import math
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from types import FrameType

from mwaa_logging.engine.channel import Channel, owes_group_settings
from mwaa_logging.engine.delivery import (
    DEADLINE_SPILL_WAIT,
    Context,
    relieve_memory,
    rescuing,
    service_channel,
    spill_everything,
)
from mwaa_logging.engine.diagnostics import report
from mwaa_logging.engine.stats import Counters, Stats
from mwaa_logging.protocols import Clock
from mwaa_logging.retry import Random

#: Longest the sender sleeps without a reason: a backstop against a missed wake-up.
_MAX_IDLE = 1.0

#: How long closing a channel, or the exit flush, waits for delivery when a wait for it timed out in this process and
#: nothing was delivered since (see :func:`still_behind`), before spilling what is left.
BEHIND_CLOSE_WAIT = 1.0
#: Channels whose wait for delivery timed out (``use_queues=False``): the process, the flush mark of the backlog it
#: left, and the delivered count then.
_timed_out_waits: weakref.WeakKeyDictionary[Channel, tuple[int, tuple[int, int], int]] = weakref.WeakKeyDictionary()


def note_timed_out_wait(channel: Channel, mark: tuple[int, int], delivered: int) -> None:
    """A wait for ``channel``'s delivery timed out, leaving the backlog up to ``mark`` when it had delivered
    ``delivered`` events (see :func:`timed_out_wait`, :func:`still_behind`)."""
    _timed_out_waits[channel] = (os.getpid(), mark, delivered)


def timed_out_wait(channel: Channel) -> tuple[tuple[int, int], int] | None:
    """The backlog mark and delivered count of ``channel``'s last timed-out wait in this process (a forked child's
    counters start again: its parent's backlog is not its own), until :func:`forget_timed_out_wait`."""
    noted = _timed_out_waits.get(channel)
    return None if noted is None or noted[0] != os.getpid() else (noted[1], noted[2])


def forget_timed_out_wait(channel: Channel) -> None:
    _timed_out_waits.pop(channel, None)


def still_behind(channel: Channel) -> bool:
    """Whether a wait for ``channel``'s delivery timed out in this process and nothing was delivered since: the
    endpoint most likely still fails, and closing it waits :data:`BEHIND_CLOSE_WAIT`, not a full close_timeout again
    (a DAG file processor, a new process for each file, took 2 x close_timeout a file while CloudWatch hung)."""
    noted = timed_out_wait(channel)
    return noted is not None and channel.counters.delivered <= noted[1]


#: Longest a thread doing the sender's work (no sender thread can run) sleeps between passes.
_INLINE_PAUSE = 0.05


class Engine:
    """Owns the channels of this process and the thread that delivers their events."""

    def __init__(self, clock: Clock = time.monotonic, wall_clock: Clock = time.time,
                 random_source: Random = random.random, *, start_thread: bool = True) -> None:
        self.clock = clock
        self._ctx = Context(clock=clock, wall_ms=lambda: wall_clock() * 1000.0, random=random_source)
        self._start_thread = start_thread
        self._channels: list[Channel] = []
        #: Counters of the channels retired (closed and emptied), so that :meth:`stats` keeps counting them, and each
        #: retired channel's share, taken back if it is attached again (a record logged after close()). Kept here,
        #: weakly: an attribute more on Channel would take emit()'s reads off CPython's inline values.
        self._retired = Counters()
        self._retired_as: weakref.WeakKeyDictionary[Channel, Counters] = weakref.WeakKeyDictionary()
        self._reset_thread_state()

    def _reset_thread_state(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopped = False
        #: True while the sender thread works (False while it sleeps); see ``Channel.check_sender``.
        self.busy = False
        self._guard_wake = threading.Event()
        self._guard: threading.Thread | None = None
        #: Set when the exit hook starts; then the deadline (``time.monotonic()``) of records logged after close().
        self._exited = False
        #: Set by the atexit hook, which runs after non-daemon threads were joined (see ``at_last_exit``).
        self._exited_last = False
        #: Set by the exit hook: whether the atexit hook runs after it (see ``_atexit_follows``).
        self._atexit_follows = False
        self._late_deadline: float | None = None
        #: Why no sender thread could be started (None: one could, or none was tried); see :meth:`wake`.
        self._no_sender: str | None = None
        self._said_inline = False
        self._inline_lock = threading.Lock()

    # -- channels ---------------------------------------------------------------------------------

    def wall_ms(self) -> float:
        """Wall-clock time in ms (the injected wall clock)."""
        return self._ctx.wall_ms()

    def attach(self, channel: Channel) -> None:
        with self._lock:
            if channel not in self._channels:
                self._channels.append(channel)
                share = self._retired_as.pop(channel, None)
                if share is not None:
                    self._retired.subtract(share)
        self.wake()

    def serve(self, channel: Channel) -> None:
        """:meth:`attach` ``channel`` unless it is served (cheap: for every record logged after close()). Called after
        the record was queued: the sender retires a closed channel only while it is empty, under the lock (see
        :meth:`_retire`), so either it sees the record or this sees the channel gone."""
        if channel not in self._channels:
            self.attach(channel)

    def detach(self, channel: Channel) -> None:
        with self._lock:
            if channel in self._channels:
                self._channels.remove(channel)

    def channels(self) -> list[Channel]:
        with self._lock:
            return list(self._channels)

    # -- the sender -------------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the sender to look at the buffers now (cheap; called from emit on transitions only).

        Never raises: where no sender thread can be started (Python 3.12+ refuses new threads once the interpreter
        exits, as in the atexit hooks of a forked child that had not logged yet; a thread limit), the sender's work
        is done on the threads that wait for it (see :meth:`sender_missing` and :meth:`work_inline`).
        """
        if self._thread is None or self._pid != os.getpid():
            try:
                self._ensure_thread()
            except Exception as exc:  # RuntimeError: can't create new thread at interpreter shutdown
                self._no_sender = f"{type(exc).__name__}: {exc}"
        self._wake.set()

    def sender_missing(self) -> bool:
        """Whether no sender thread of this process can do the work now: none could be started, or the interpreter
        finalizes (threads other than the main one no longer run). flush() and close() then do it themselves."""
        if not self._start_thread:
            return False  # an engine driven by run_once() (tests)
        if sys.is_finalizing():
            return True
        thread = self._thread
        return thread is None or not thread.is_alive() or self._pid != os.getpid()

    def on_own_thread(self) -> bool:
        """Whether the calling thread is this engine's sender or memory guard (which must never wait for the sender)."""
        current = threading.current_thread()
        return current is self._thread or current is self._guard

    def work_inline(self, done: Callable[[], bool], timeout: float) -> bool:
        """The sender's passes on the calling thread until ``done()`` or ``timeout`` seconds passed (no sender thread
        can run: see :meth:`sender_missing`); returns ``done()``. One thread at a time does them."""
        deadline = time.monotonic() + timeout
        if not self._inline_lock.acquire(timeout=max(0.0, timeout)):
            return done()
        try:
            if self._no_sender is not None and not self._said_inline:
                self._said_inline = True
                report(f"no sender thread can be started ({self._no_sender}): log events are sent by the thread "
                       "that flushes or closes", level=logging.DEBUG)
            while not done():
                if deadline - time.monotonic() <= 0:
                    return False
                delay = self.run_once()
                remaining = deadline - time.monotonic()
                if done() or remaining <= 0:
                    break
                if delay > 0:
                    time.sleep(min(delay, remaining, _INLINE_PAUSE))
            return done()
        finally:
            self._inline_lock.release()

    def spill_at_deadline(self, channel: Channel, what: str) -> None:
        """Spill everything ``channel`` holds (a close deadline passed): an S3 target gets ``DEADLINE_SPILL_WAIT``,
        then the rest goes to the local directory. What no target could store is said, with its count, if nothing
        else will send it (the interpreter's exit flush has run)."""
        spill_by = time.monotonic() + DEADLINE_SPILL_WAIT
        failures = channel.counters.spill_failures
        rescuing(channel, partial(spill_everything, channel, reason="close_deadline", deadline=spill_by), what)
        if self._exited and channel.counters.spill_failures > failures:
            _say_lost_at_exit(channel)

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # backstop when the at-fork hook did not run (e.g. os.fork in C code)
            self.after_fork_in_child()
        with self._lock:
            self._thread = self._running(self._thread, self._run, "mwaa-logging-sender")

    def _running(self, thread: threading.Thread | None, target: Callable[[], None],
                 name: str) -> threading.Thread | None:
        """``thread`` if it runs, else a new daemon thread running ``target`` (none if this engine starts none)."""
        if not self._start_thread or self._stopped or (thread is not None and thread.is_alive()):
            return thread
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def relieve(self) -> None:
        """Ask the memory guard to relieve channels whose inbox passed its alarm (cheap; from application threads).

        The sender drains inboxes and enforces ``max_buffer_bytes`` between calls, but one call can block for
        up to ``read_timeout`` (an endpoint that accepts the connection and never answers). The guard, a second
        daemon thread started on first need, does that work meanwhile, so memory stays bounded.
        """
        guard = self._guard
        if guard is None or not guard.is_alive() or self._pid != os.getpid():
            try:
                self._ensure_guard()
            except Exception as exc:  # as in wake(): no thread can be started; the sender or close() drains
                self._no_sender = self._no_sender or f"{type(exc).__name__}: {exc}"
        self._guard_wake.set()

    def _ensure_guard(self) -> None:
        if self._pid != os.getpid():
            self.after_fork_in_child()
        with self._lock:
            self._guard = self._running(self._guard, self._guard_run, "mwaa-logging-memory-guard")

    def _guard_run(self) -> None:
        while not self._stopped:
            self._guard_wake.wait()
            self._guard_wake.clear()
            self.relieve_now()

    def relieve_now(self) -> None:
        """The memory guard's pass: relieve every channel whose inbox is above its alarm."""
        for channel in self.channels():
            if channel.inbox_alarmed():  # the guard must survive anything; what it held is rescued
                rescuing(channel, partial(relieve_memory, channel), "the memory guard")

    def run_once(self) -> float:
        """Service every channel once; return seconds until the sender next needs to run (inf: idle)."""
        next_wake = math.inf
        for channel in self.channels():
            # the sender must survive anything: what it held is rescued, the rest stays buffered
            due = rescuing(channel, partial(service_channel, channel, self._ctx), "the sender")
            next_wake = min(next_wake, self.clock() + 1.0 if due is None else due)
            if channel.closed and not channel.has_work() and not owes_group_settings(channel):
                self._retire(channel)
        return next_wake - self.clock()

    def _retire(self, channel: Channel) -> None:
        """Stop serving ``channel`` (closed, nothing left); its counters stay in :meth:`stats`. Looked at again under
        the lock: a record logged after close() is queued, then its channel attached (see :meth:`attach`), so it is
        either seen here or attaches the channel again."""
        with self._lock:
            if channel in self._channels and not channel.has_work():
                self._channels.remove(channel)
                if channel.has_work():  # queued since the check above: its emit may have seen the channel still here
                    self._channels.append(channel)
                    return
                with channel.lock:
                    share = self._retired_as[channel] = copy.deepcopy(channel.counters)
                self._retired.add(share)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.clear()
            self.busy = True
            try:
                delay = self.run_once()
            finally:
                self.busy = False
            if delay > 0:
                self._wake.wait(min(delay, _MAX_IDLE))

    # -- lifecycle --------------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """The child starts empty: buffered events belong to the parent, which sends them."""
        self._reset_thread_state()
        self._retired = Counters()  # the parent's (a retired channel attached again here gives its share back)
        for channel in self._channels:
            channel.reset_after_fork()

    def flush_all(self, timeout: float) -> bool:
        """Flush every channel within one overall deadline."""
        deadline = self.clock() + timeout
        ok = True
        for channel in self.channels():
            ok = channel.flush(max(0.0, deadline - self.clock())) and ok
        return ok

    @property
    def exited(self) -> bool:
        """Whether the interpreter's last exit flush has run: what is written later, nothing else will send."""
        return self._exited_last

    def late_flush_timeout(self, close_timeout: float) -> float | None:
        """How long a record logged after close() may wait to be delivered before it is spilled: None before the exit
        hook ran (a later flush or close sends it); after it, what is left of one ``close_timeout`` shared by every
        such record (0 once the interpreter finalizes: the sender can no longer run). Also None between the exit hook
        and the atexit hook, which delivers in batches what non-daemon threads log meanwhile (sent one by one, a
        thread's 500 records took 500 calls); not at the end of a multiprocessing child, where no atexit hook runs."""
        if not self._exited or (self._atexit_follows and not self._exited_last):
            return None
        now = time.monotonic()
        if self._late_deadline is None:
            self._late_deadline = now + close_timeout
        return 0.0 if sys.is_finalizing() else max(0.0, self._late_deadline - now)

    def at_last_exit(self) -> None:
        """atexit, after non-daemon threads were joined: what they wrote to streams after :meth:`at_exit` (queued,
        and sent by the sender meanwhile) is delivered within one more close_timeout, the rest spilled."""
        self._exited_last = True
        if not self._exited or any(channel.has_work() for channel in self.channels()):
            self.at_exit()

    def at_exit(self) -> None:
        """Interpreter exit: deliver what is pending within the channels' close_timeout, spill the rest."""
        if not self._exited:
            self._atexit_follows = _atexit_follows()
        self._exited = True
        channels = self.channels()
        if not channels:
            return
        timeout = max(BEHIND_CLOSE_WAIT if still_behind(c) else c.settings.close_timeout for c in channels)
        deadline = time.monotonic() + timeout
        if self.flush_all(timeout):
            for channel in channels:
                channel.await_group_settings(deadline)
        else:
            spill_by = time.monotonic() + DEADLINE_SPILL_WAIT  # one wait for S3, whatever the number of channels
            for channel in self.channels():
                failures = channel.counters.spill_failures
                rescuing(channel, partial(spill_everything, channel, reason="close_deadline", deadline=spill_by),
                         "exit")
                if channel.counters.spill_failures > failures:
                    _say_lost_at_exit(channel)

    def stats(self) -> Stats:
        """Counters of every channel of this process, summed (also of channels closed and retired)."""
        total = Counters()
        with self._lock:  # one moment: a channel is either served or retired
            total.add(self._retired)
            channels = list(self._channels)
        pending = pending_bytes = 0
        oldest = 0.0
        for channel in channels:
            counters, channel_pending, channel_pending_bytes, age = channel.snapshot()
            total.add(counters)
            pending += channel_pending
            pending_bytes += channel_pending_bytes
            oldest = max(oldest, age)
        return Stats.of(total, pending, pending_bytes, oldest)


def _atexit_follows() -> bool:
    """Whether the interpreter's atexit hooks run after the exit hook now running: ``threading._shutdown()`` was called
    by the interpreter's own shutdown (no Python caller), not at the end of a multiprocessing child (its
    ``Process._bootstrap`` calls it, then ``os._exit()``)."""
    shutdown = getattr(threading, "_shutdown", None)
    code = getattr(shutdown, "__code__", None)
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    return frame is not None and frame.f_back is None


def _say_lost_at_exit(channel: Channel) -> None:
    """After a spill at exit that failed: what no target could take ends with the process. Say so with the count
    (the last word was "keeping N events in memory")."""
    pending = channel.pending_count()
    if pending:
        fallback = channel.fallback_spill.description if channel.fallback_spill is not None else "nothing"
        report(f"{pending} log events of log group {channel.destination.group} are lost: the process exits, they "
               f"were not delivered and no spill target could store them ({channel.spill.description}, then "
               f"{fallback})", level=logging.ERROR)


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine (created on first use; hooks for fork and exit installed once)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine()
                _install_hooks(_engine)
    return _engine


def _install_hooks(engine: Engine) -> None:
    ref = weakref.ref(engine)

    def call(method: Callable[[Engine], None]) -> Callable[[], None]:
        def hook() -> None:
            target = ref()
            if target is not None:
                method(target)

        return hook

    os.register_at_fork(after_in_child=call(Engine.after_fork_in_child))
    # threading's exit hooks run before non-daemon threads are joined and before atexit (so before
    # logging.shutdown), also at the end of multiprocessing's forked children; atexit runs after the join (what those
    # threads wrote meanwhile), and is the fallback.
    register = getattr(threading, "_register_atexit", None)
    with contextlib.suppress(RuntimeError):
        if register is not None:
            register(call(Engine.at_exit))
    atexit.register(call(Engine.at_last_exit))
