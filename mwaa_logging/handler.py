"""``CloudWatchLogHandler``: a drop-in replacement for ``watchtower.CloudWatchLogHandler``.

``emit`` formats once, sizes once and appends to a buffer: no I/O, no waiting, thread-safe without the
handler lock. One sender thread per process delivers every handler's events.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from math import floor as _floor
from types import FrameType
from typing import Any, NamedTuple

from mwaa_logging.build import build_channel
from mwaa_logging.engine.channel import (
    CHECK_SENDER_MASK,
    LARGE_EVENT_BYTES,
    Channel,
    budget_stats,
    holds_logging_lock,
    seq_counter,
)
from mwaa_logging.engine.diagnostics import report
from mwaa_logging.engine.engine import (
    BEHIND_CLOSE_WAIT,
    forget_timed_out_wait,
    note_timed_out_wait,
    still_behind,
    timed_out_wait,
)
from mwaa_logging.engine.stats import Stats
from mwaa_logging.errors import WatchtowerError, WatchtowerWarning
from mwaa_logging.events import counted_size
from mwaa_logging.formatter import CloudWatchLogFormatter
from mwaa_logging.limits import EVENT_OVERHEAD_BYTES
from mwaa_logging.settings import Settings, SettingsError, wait_timeout, yes_no
from mwaa_logging.streamnames import (
    DEFAULT_LOG_STREAM_NAME,
    StreamNamer,
    compile_stream_name,
    is_static,
    sanitize,
)

#: Records of these loggers never reach CloudWatch through us: they are what sending produces.
SKIPPED_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "mwaa_logging", "redis")
_GROUP_NAME = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
_LOG_RECORD = logging.LogRecord
#: watchtower's default log group name (its module's ``__name__``).
DEFAULT_LOG_GROUP_NAME = "watchtower"


#: Stream name templates kept compiled, for all handlers (a triggerer's handler alternates between many streams).
MAX_COMPILED_NAMES = 256
#: use_queues=False: how long emit() tries for the channel's lock before it waits for delivery (held for micro- to
#: milliseconds, unless a signal handler interrupted its holder: then it does not wait)
LOCK_GLANCE = 0.05


class _CompiledName(NamedTuple):
    namer: StreamNamer
    static_pid: int | None  # -1: the name depends on the record
    static_stream: str
    pid: int  # the process that compiled it (a forked child compiles again)


_compiled_names: dict[str, _CompiledName] = {}
_skipped: dict[str, bool] = {}


def _remember_skipped(name: str) -> bool:
    if len(_skipped) > 10_000:
        _skipped.clear()
    skipped = _skipped[name] = any(name == p or name.startswith(p + ".") for p in SKIPPED_LOGGERS)
    return skipped


def _compile_name(template: str) -> _CompiledName:
    # rendered once from a probe record, whatever the template depends on: a format spec its value cannot take
    # (``{logger_name:d}``, ``{thread_name:%Y}``) is refused here, not met by every record (each went to the
    # handler's fallback stream with a note)
    probe = logging.LogRecord("probe", 0, "", 0, "", None, None)
    try:
        namer: StreamNamer = compile_stream_name(template)
        probe_stream = namer(probe)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise SettingsError(f"invalid setting log_stream_name={template!r}: {exc}") from exc
    # a name that depends only on the process is computed once per pid, not per record
    static_pid: int | None = -1
    static_stream = ""
    if is_static(template):
        static_pid, static_stream = probe.process, probe_stream
    if len(_compiled_names) >= MAX_COMPILED_NAMES:
        _compiled_names.clear()
    compiled = _compiled_names[template] = _CompiledName(namer, static_pid, static_stream, os.getpid())
    return compiled


def unformattable(record: logging.LogRecord, exc: Exception) -> str:
    """The message of a record whose formatting failed: its parts, never nothing."""
    args = safe_repr(getattr(record, "args", None), "<unprintable args>")
    msg = safe_repr(getattr(record, "msg", None), "<unprintable msg>")
    return f"[mwaa-logging: could not format this record ({describe_error(exc)})] msg={msg} args={args}"


def safe_repr(value: object, fallback: str) -> str:
    try:
        return repr(value)
    except Exception:
        return fallback


def describe_error(exc: BaseException) -> str:
    """``Type: message``, or the type alone when the message cannot be made (its ``__str__`` raises too)."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__} (its message cannot be printed)"


def _stacklevel_of_caller() -> int:
    """The ``stacklevel`` for a warning issued by the caller of this function that names the line that called into
    ``logging`` (the first frame outside ``logging`` and this package; 3.12's ``skip_file_prefixes`` is not in 3.10)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] in _OWN_MODULES:
        level, frame = level + 1, frame.f_back
    return level


_OWN_MODULES = frozenset({"logging", "mwaa_logging"})



def _check_sender(channel: Channel) -> None:
    """``channel.check_sender()`` for a record already queued: if it fails (no thread can be started, late at exit),
    the record is not queued again, and the exit flush still delivers or spills it."""
    try:
        channel.check_sender()
    except Exception as exc:
        report(f"could not wake the sender ({describe_error(exc)}); the record is queued")


def _serve_after_close(channel: Channel) -> None:
    """A record was queued on a closed ``channel``: have the sender serve the channel again (it retires a closed one
    once empty) and, once the interpreter's exit flush has run, deliver it now or spill it (see
    ``Engine.late_flush_timeout``). Never raises (the record is queued): what cannot be sent nor spilled is said,
    with its count, on stderr, without anything that may have to be imported (this also runs while the
    interpreter finalizes)."""
    try:
        channel.engine.serve(channel)
        timeout = channel.engine.late_flush_timeout(channel.settings.close_timeout)
        if timeout is not None:
            failures = channel.counters.spill_failures
            channel.close(timeout)
            # nothing else will send it now; a failed spill said so already (Engine.spill_at_deadline), a close() that
            # could not even try (a thread frozen by the finalization holds the channel's lock) did not
            if sys.is_finalizing() and channel.has_work() and channel.counters.spill_failures == failures:
                _say_unsent(channel, None)
    except Exception as exc:
        _say_unsent(channel, exc)


def _say_unsent(channel: Channel, exc: BaseException | None) -> None:
    try:
        pending = channel.pending_count()
        why = "the interpreter finalizes" if exc is None else describe_error(exc)
        text = (f"mwaa_logging: {pending} log events of log group {channel.destination.group} may be lost: they are "
                f"queued, but could not be sent nor spilled ({why})\n")
        os.write(2, text.encode("utf-8", "replace"))
    except Exception:
        with contextlib.suppress(Exception):
            os.write(2, b"mwaa_logging: log events may be lost: they could not be sent nor spilled\n")


def check_flags(**flags: object) -> dict[str, bool]:
    """watchtower's yes/no arguments as bools: ``True``/``False``, 1/0, or a config file's text (``"false"``,
    ``"yes"``: what ``spill_marker`` takes; watchtower would take ``"false"`` as true). Anything else raises."""
    parsed: dict[str, bool] = {}
    for name, value in flags.items():
        try:
            parsed[name] = yes_no(value)
        except (TypeError, ValueError):
            raise SettingsError(f"invalid setting {name}={value!r}: expected True or False (as text: true/false, "
                                "yes/no, on/off, 1/0)") from None
    return parsed


def validate_group_name(name: str) -> str:
    if not isinstance(name, str) or not _GROUP_NAME.match(name):
        raise SettingsError(
            f"invalid setting log_group_name={name!r}: expected 1-512 characters from a-z A-Z 0-9 . - _ / #"
        )
    return name


#: What calls ``flush()`` right before ``close()`` on Python 3.10 and 3.11 (which ignore ``flushOnClose``).
_LOGGING_SHUTDOWN_CODE = logging.shutdown.__code__


def _caller_code() -> Any:
    """The code object of the function that called the caller (None from C: an atexit hook, a new thread)."""
    try:
        return sys._getframe(2).f_code
    except ValueError:
        return None


#: How many callers up from ``close`` a ``logging.shutdown()`` frame is looked for: a subclass's close() calling
#: ours, or a handler that closes ours from its own close() (Airflow 2's task handler), is still that shutdown's.
_SHUTDOWN_FRAME_DEPTH = 4


def _logging_shutdown_frame() -> Any:
    """The frame of the ``logging.shutdown()`` call that (through at most a few closes) called the caller, else
    None."""
    try:
        frame: FrameType | None = sys._getframe(2)
    except ValueError:
        return None
    for _ in range(_SHUTDOWN_FRAME_DEPTH):
        if frame is None or frame.f_code is _LOGGING_SHUTDOWN_CODE:
            return frame
        frame = frame.f_back
    return None


class _ShutdownDeadlines:
    """One start time per ``logging.shutdown()`` call: each handler it closes gets its close_timeout from there."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        #: The call (its frame, kept so that no later call's frame can be the same object) and when its first close
        #: started.
        self._call: Any = None
        self._started = 0.0

    def remaining(self, call: Any, timeout: float) -> float:
        """Infinity outside a ``logging.shutdown()`` (``call`` None); within one, what is left of ``timeout``
        counted from that call's first close. (The frame of the last call is kept until the next one: with it, the
        handlers it held, a few closed ones.)"""
        if call is None:
            return math.inf
        now = self.clock()
        if call is not self._call:
            self._call, self._started = call, now
        return max(0.0, self._started + timeout - now)


_shutdown_deadlines = _ShutdownDeadlines()


class CloudWatchLogHandler(logging.Handler):
    """Ship records to CloudWatch Logs; accepts every ``watchtower.CloudWatchLogHandler`` argument.

    Extra keywords are mwaa-logging settings (``spill_to``, ``max_latency``, ``close_timeout``, ...), each
    also read from ``MWAA_LOGGING_<NAME>``; see README. Nothing here touches the network.

    ``emit`` reads a dozen attributes of the handler and its channel per record. CPython (3.11+) reads them from
    the instance's inline values, a specialized and cheap load, as long as the instance's ``__dict__`` is never
    materialized (by reading ``self.__dict__`` or ``vars(self)``) and its class keeps at most 30 attribute names;
    otherwise every read is a dict lookup (~2,300 more machine instructions per record, ~25 % of ``emit``;
    ``benchmarks/bench_instructions.py``).
    """

    #: ``logging.shutdown()`` calls ``flush()``, then ``close()``: each waited up to ``close_timeout`` for an
    #: endpoint that does not answer. ``close()`` flushes anyway; Python 3.12+ reads this and skips the flush,
    #: on 3.10 and 3.11 ``flush`` asks for delivery and returns (see :meth:`flush`).
    flushOnClose = False

    def __init__(
        self,
        log_group_name: str = DEFAULT_LOG_GROUP_NAME,
        log_stream_name: str = DEFAULT_LOG_STREAM_NAME,
        use_queues: bool = True,
        send_interval: Any = None,
        max_batch_size: int | None = None,
        max_batch_count: int | None = None,
        boto3_client: Any = None,
        boto3_profile_name: str | None = None,
        create_log_group: bool = True,
        log_group_tags: Mapping[str, str] | None = None,
        json_serialize_default: Callable[[Any], Any] | None = None,
        log_group_retention_days: int | None = None,
        create_log_stream: bool = True,
        max_message_size: int | None = None,
        log_group: str | None = None,
        stream_name: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # Everything that can fail is checked before logging.Handler.__init__ registers the handler,
        # so a bad setting never leaves a half-built handler for logging.shutdown() to trip over.
        handler_kwargs = {k: kwargs.pop(k) for k in ("level",) if k in kwargs}
        # as watchtower 3.4: a deprecated name given with a new name that is not its default is refused
        if log_group is not None:
            if log_group_name != DEFAULT_LOG_GROUP_NAME:
                raise WatchtowerError("Both log_group_name and deprecated log_group parameter specified")
            warnings.warn("Please use log_group_name instead of log_group", DeprecationWarning, stacklevel=2)
            log_group_name = log_group
        if stream_name is not None:
            if log_stream_name != DEFAULT_LOG_STREAM_NAME:
                raise WatchtowerError("Both log_stream_name and deprecated stream_name parameter specified")
            warnings.warn("Please use log_stream_name instead of stream_name", DeprecationWarning, stacklevel=2)
            log_stream_name = stream_name
        if boto3_client is not None and boto3_profile_name is not None:
            raise WatchtowerError("Either boto3_client or boto3_profile_name can be specified, but not both")
        flags = check_flags(use_queues=use_queues, create_log_group=create_log_group,
                            create_log_stream=create_log_stream)
        use_queues, create_log_group, create_log_stream = (
            flags["use_queues"], flags["create_log_group"], flags["create_log_stream"])
        if json_serialize_default is not None and not callable(json_serialize_default):
            raise SettingsError(f"invalid setting json_serialize_default={json_serialize_default!r}: expected a "
                                "function (as json.dumps's default) or None")
        overrides = dict(kwargs, max_batch_size=max_batch_size, max_batch_count=max_batch_count,
                         max_message_size=max_message_size)
        if send_interval is not None:
            overrides["send_interval"] = send_interval
        if not use_queues:
            overrides["send_interval"] = 0  # watchtower sends each record at once (see _wait_delivered)
        self.settings = Settings.resolve(overrides)
        self.log_group_name = validate_group_name(log_group_name)
        self.log_stream_name = log_stream_name
        self._channel = build_channel(  # builds the AWS client: a bad region or profile raises here
            log_group_name=self.log_group_name, settings=self.settings, boto3_client=boto3_client,
            boto3_profile_name=boto3_profile_name, create_log_group=create_log_group,
            create_log_stream=create_log_stream, log_group_tags=log_group_tags or None,
            log_group_retention_days=log_group_retention_days,
        )
        super().__init__(*args, **handler_kwargs)
        self.use_queues = use_queues
        self.send_interval = self.settings.send_interval
        self.max_batch_size = self.settings.max_batch_size
        self.max_batch_count = self.settings.max_batch_count
        self.max_message_size = self.settings.max_message_size
        self.create_log_group = create_log_group
        self.create_log_stream = create_log_stream
        self.log_group_retention_days = self._channel.destination.log_group_retention_days  # 7 for 7.0 or "7"
        self.json_serialize_default = json_serialize_default
        self.shutting_down = False
        self._warned_after_close = False
        self.setFormatter(CloudWatchLogFormatter(json_serialize_default=json_serialize_default))
        self._channel.engine.attach(self._channel)

    # -- stream names ---------------------------------------------------------------------------------

    @property
    def log_stream_name(self) -> str:
        return self._log_stream_name

    @log_stream_name.setter
    def log_stream_name(self, template: str) -> None:
        """Airflow's provider and MWAA's task logger assign this before every record: the same name again
        costs one comparison, a name used before is not compiled again."""
        if template == getattr(self, "_log_stream_name", None):  # never self.__dict__ (see the class docstring)
            return
        if not isinstance(template, str):
            raise SettingsError(f"invalid setting log_stream_name={template!r}: expected a string")
        compiled = _compiled_names.get(template)
        if compiled is None or compiled.pid != os.getpid():
            compiled = _compile_name(template)
        # emit() reads _static_pid, then _static_stream: the pid is invalidated first and set last
        self._static_pid: int | None = -1
        self._stream_namer = compiled.namer
        self._static_stream = compiled.static_stream
        self._static_pid = compiled.static_pid
        self._log_stream_name = template

    # -- logging.Handler ------------------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        """Filter, then emit without the handler lock (emit is thread-safe on its own)."""
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return False
            if isinstance(rv, _LOG_RECORD):
                record = rv
        self.emit(record)
        return record

    def emit(self, record: logging.LogRecord) -> None:
        try:
            skipped = _skipped.get(record.name)
            if skipped is None:
                skipped = _remember_skipped(record.name)
            if skipped:
                return  # our own records and botocore's; checked here since MWAA calls emit() directly
            msg = record.msg
            try:
                # what CloudWatchLogFormatter.format does for a str (getMessage()) or a dict (JSON: the Airflow 3 /
                # MWAA task log line), inlined
                if (self._plain_format and not record.exc_info and not record.exc_text and not record.stack_info
                        and not self._formatter.add_log_record_attrs):  # type: ignore[union-attr]
                    if type(msg) is str:
                        # record.message too, as logging.Formatter sets it: MWAA's handlers read it after emit()
                        record.message = message = msg % record.args if record.args else msg
                    elif type(msg) is dict:
                        message = self._formatter.dumps(msg)  # type: ignore[union-attr]
                    else:
                        message = self._formatted(record)
                else:
                    message = self._formatted(record)
            except Exception as exc:  # a bad record is still delivered, with what went wrong
                message = unformattable(record, exc)
            stream = self._static_stream if record.process == self._static_pid else self._stream_namer(record)
            channel = self._channel
            # Channel.append, inlined (queued_event too): size where the message is still in the CPU's cache,
            # then a lock-free deque append; the sender does the rest
            size = len(message) + EVENT_OVERHEAD_BYTES if message.isascii() else counted_size(message)
            channel.queued_bytes += size  # before the append: a drain never takes off bytes not yet added
            inbox = channel.inbox
            inbox.append((_floor(record.created * 1000), message,
                          size if EVENT_OVERHEAD_BYTES < size <= channel.max_event_size else -size,
                          next(seq_counter), stream))
            if channel.closed:  # looked at after the append (see _queued_after_close)
                self._queued_after_close(channel, size)
                return
            if channel.armed or not len(inbox) & CHECK_SENDER_MASK or size > LARGE_EVENT_BYTES:
                _check_sender(channel)
            if not self.use_queues:
                self._wait_delivered(channel)
        except RecursionError:
            raise
        except Exception as exc:
            if not self._emit_anyway(record, exc):
                self.handleError(record)

    def _wait_delivered(self, channel: Channel) -> None:
        """``use_queues=False``: as with watchtower, the record is delivered when emit() returns (MWAA's DAG processing
        handler relies on it: those processes may be killed without a flush). Waits until everything queued so far is
        delivered or spilled, at most ``close_timeout``. After a wait that timed out (an outage, a throttle), records
        are only queued until the backlog it left is settled and a delivery has succeeded since: one wait per outage
        or backlog, not one per record (under a throttle, each delivery re-armed it) nor per ``max_latency`` spill
        (spilled, the backlog is settled but nothing was delivered). Never raises (the record is queued), and does
        not wait where waiting could not end well: on the engine's own threads (a record they log would wait for
        themselves), where no sender thread can run (the wait would make calls itself, each as long as the endpoint
        holds it), with logging's module lock held (dictConfig: the sender logs through it), or when the channel's
        lock cannot be had at once (a signal handler that interrupted its holder)."""
        try:
            behind = timed_out_wait(channel)
            if behind is not None:
                mark, delivered = behind
                if not channel.reached(mark) or channel.counters.delivered <= delivered:
                    return
                forget_timed_out_wait(channel)
            engine = channel.engine
            if engine.on_own_thread() or engine.sender_missing() or holds_logging_lock():
                return
            if not channel.lock.acquire(timeout=LOCK_GLANCE):
                return
            channel.lock.release()
            delivered = channel.counters.delivered
            if not channel.flush(self.settings.close_timeout):
                # read without the lock (a signal handler may interrupt its holder): an estimate will do
                note_timed_out_wait(channel, channel.flush_mark(), delivered)
        except Exception:
            pass

    def _emit_anyway(self, record: logging.LogRecord, exc: Exception) -> bool:
        """Queue a record :meth:`emit` could not take (a ``created`` that is not a finite number, a stream name
        the template cannot render from it): at the time it arrived, to the handler's own stream if need be,
        saying why. False if even that fails."""
        try:
            try:
                message = self._formatted(record)
            except Exception as format_error:
                message = unformattable(record, format_error)
            created = getattr(record, "created", None)
            if isinstance(created, (int, float)) and not isinstance(created, bool) and math.isfinite(created):
                timestamp = _floor(created * 1000)
            else:
                timestamp = int(time.time() * 1000)
                message += (f" [mwaa-logging: record.created={safe_repr(created, '<unprintable>')} is not a time; "
                            "logged at arrival]")
            try:
                stream = self._stream_namer(record)
            except Exception:
                stream = self._unnamed_stream()
                message += f" [mwaa-logging: no stream name from this record ({describe_error(exc)})]"
            self._channel.queue(stream, timestamp, message)
            if self._channel.closed:  # after the append, as in emit()
                with contextlib.suppress(Exception):
                    self._after_close()
                _serve_after_close(self._channel)
            else:
                _check_sender(self._channel)
            return True
        except Exception:
            pass
        try:  # the last resort: that there was a record, and whose, rather than nothing
            name = getattr(record, "name", None)
            self._channel.append(self._unnamed_stream(), int(time.time() * 1000),
                                 f"[mwaa-logging: a record of logger {safe_repr(name, '<unprintable>')} could not be "
                                 "turned into text at all]")
            return True
        except Exception:
            return False

    def _unnamed_stream(self) -> str:
        return sanitize(f"{self._log_stream_name}-unnamed")

    def _formatted(self, record: logging.LogRecord) -> str:
        formatter = self._formatter  # what the ``formatter`` property returns, without the call
        message = formatter.format(record) if formatter is not None else record.getMessage()
        return message if type(message) is str else str(message)  # a custom formatter's bytes or None: as given

    @property  # type: ignore[override]
    def formatter(self) -> logging.Formatter | None:
        return self._formatter

    @formatter.setter
    def formatter(self, fmt: logging.Formatter | None) -> None:
        """Keep the plain-message fast path in step with the formatter (also when assigned directly)."""
        self._formatter = fmt
        self._plain_format = type(fmt) is CloudWatchLogFormatter and fmt.is_plain()

    def _queued_after_close(self, channel: Channel, size: int) -> None:
        """A record was queued on a closed channel (the channel stays closed: each such record comes here, and is
        counted). Looked at after the append, not before: a close() and the sender's retiring of the emptied channel
        could run between a look before and the append, leaving the record where nothing serves it. Once the
        interpreter's exit flush has run, nothing else will send it (an atexit function registered before ``logging``
        was imported runs after logging.shutdown(), so do daemon threads): deliver it now, by what is left of one
        close_timeout for all such records, else spill it.

        Nothing here raises: emit() would queue the record a second time (:meth:`_emit_anyway`)."""
        with contextlib.suppress(Exception):  # a warnings filter set to "error"
            self._after_close()
        if not len(channel.inbox) & CHECK_SENDER_MASK or channel.armed or size > LARGE_EVENT_BYTES:
            _check_sender(channel)  # as Channel.append does, but never raising: the record is queued
        _serve_after_close(channel)

    #: Whether a record after close() warns (``WatchtowerWarning``), as watchtower's does.
    warns_after_close = True

    def _after_close(self) -> None:
        """A record arrives after close(): warn (once, at the line that logged it), count it; a later close() flushes
        again."""
        with self._channel.lock:
            self._channel.counters.emitted_after_close += 1
        self.shutting_down = False  # before the warning: a warnings filter set to "error" raises it
        if not self._warned_after_close and self.warns_after_close:
            self._warned_after_close = True
            warnings.warn("Received message after logging system shutdown; it is delivered anyway",
                          WatchtowerWarning, stacklevel=_stacklevel_of_caller())

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Deliver (or spill) everything emitted so far; returns False if ``timeout`` (default
        ``close_timeout``) passed first."""
        if timeout is None and _caller_code() is _LOGGING_SHUTDOWN_CODE:
            return self._channel.flush(0.0)  # close() comes next, and waits
        return self._channel.flush(wait_timeout(timeout))

    def close(self, timeout: float | None = None) -> None:  # type: ignore[override]
        """Flush until ``timeout`` (default ``close_timeout``), then spill what is left. Idempotent.

        Closed by ``logging.shutdown()``, the deadline counts from the start of that shutdown's first close of one of
        these handlers: N handlers and an endpoint that does not answer take one close_timeout, not N."""
        if not self.shutting_down:
            self.shutting_down = True
            timeout = wait_timeout(timeout)
            if timeout is None:
                timeout = self.settings.close_timeout
                if still_behind(self._channel):  # its wait timed out, nothing delivered since: spill soon
                    timeout = min(timeout, BEHIND_CLOSE_WAIT)
            shared = _shutdown_deadlines.remaining(_logging_shutdown_frame(), self.settings.close_timeout)
            self._channel.close(min(timeout, shared))
        super().close()

    @property
    def cwl_client(self) -> Any:
        """The CloudWatch Logs client of this process (watchtower's attribute, which callers use to read their
        streams back or to hook the client's events): the ``boto3_client`` given, else the one built for it."""
        return getattr(self._channel.transport(), "client", None)

    def stats(self) -> Stats:
        """Counters of this handler: emitted, delivered, spilled by reason, retries, throttles, ..."""
        return self._channel.stats()

    def budget_stats(self) -> dict[str, Any]:
        """The throttle budgets' counters (``granted``, ``waited``, ``throttles``, ``rate``, ``scope``)."""
        return budget_stats(self._channel.budgets)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.log_group_name}:{self._log_stream_name} ({self.level})>"
