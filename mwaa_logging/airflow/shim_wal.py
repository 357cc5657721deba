"""Airflow 2 through the watchtower shim: a SIGKILLed raw task's unsent lines are shipped by its supervisor.

On MWAA 2.x, and with the Amazon provider's ``CloudwatchTaskHandler`` under ``MWAA_LOGGING_PATCH_WATCHTOWER``, the
task handler is not ours: in ``set_context`` it builds a ``watchtower.CloudWatchLogHandler`` (ours, through the shim)
and keeps it as ``.handler``. Airflow 2 hands each task handler its task instance through
``airflow.utils.log.logging_mixin.set_context``; :func:`install` wraps that function so that, right after, such an
inner handler takes the role :class:`mwaa_logging.airflow.task_handler.CloudwatchTaskHandler` has: in the ``--raw``
task process it writes each line it queued ahead (:mod:`mwaa_logging.airflow.wal`, same files and keys), in the
``--local`` supervisor it ships, when it closes, what dead task processes of its stream left unsent. The role is a
subclass the handler's class is switched to: no other handler's ``emit`` changes.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, TypeVar, cast

from mwaa_logging.airflow.wal import WAL_DIRECTORY, WriteAheadLog, queue_dead_logs, remove, wal_key, write_ahead
from mwaa_logging.engine.diagnostics import report
from mwaa_logging.handler import CloudWatchLogHandler

_INSTALLED = "_mwaa_logging_write_ahead"


def install() -> bool:
    """Wrap Airflow 2's ``logging_mixin.set_context`` (idempotent); False where there is no Airflow 2."""
    airflow = sys.modules.get("airflow")
    if airflow is None or not str(getattr(airflow, "__version__", "")).startswith("2."):
        return False
    from airflow.utils.log import logging_mixin

    original = logging_mixin.set_context
    if getattr(original, _INSTALLED, False):
        return True

    @functools.wraps(original)
    def set_context(logger: logging.Logger, value: Any) -> Any:
        task_handlers = _handlers_of(logger)  # before: set_context turns propagation off
        result = original(logger, value)
        try:
            for handler in task_handlers:
                assign_role(handler, value)
        except Exception as exc:  # never break Airflow's logging: the task only loses the protection
            report(f"no write-ahead log for this task's lines ({exc!r}): if its process is killed, its unsent lines "
                   "are lost")
        return result

    setattr(set_context, _INSTALLED, True)
    logging_mixin.set_context = set_context
    return True


def _handlers_of(logger: logging.Logger | None) -> list[logging.Handler]:
    """The handlers Airflow's ``set_context`` visits (the logger's, then its parents' while it propagates)."""
    found: list[logging.Handler] = []
    while logger is not None:
        found.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    return found


def assign_role(task_handler: Any, ti: Any) -> None:
    """Give the shim handler inside ``task_handler`` (just given ``ti``) its role in this process of the task."""
    inner = getattr(task_handler, "handler", None)
    if not isinstance(inner, CloudWatchLogHandler) or not isinstance(inner, _shim_class()):
        return
    if not hasattr(ti, "raw") or getattr(ti, "is_trigger_log_context", False):  # not a task instance's own run
        return
    from mwaa_logging.airflow.task_handler import _wal_modes

    directory = Path(_base_log_folder(), WAL_DIRECTORY)
    key = wal_key(inner.log_group_name, inner._stream_namer(logging.makeLogRecord({})))
    if isinstance(inner, _WritingAhead) and inner._mwaa_wal.pid == os.getpid() and inner._mwaa_wal.key == key:
        return  # the context set again in this process: its file goes on
    if isinstance(inner, _TaskProcessRole):  # e.g. a forked child setting the context on the handler it inherited
        inner.__class__ = inner._mwaa_base
    if ti.raw:
        wal = WriteAheadLog(directory, key, **_wal_modes())
        wal.watch(inner._channel)
        _switch(inner, _WritingAhead)._mwaa_wal = wal
    else:  # the --local supervisor: it outlives the raw task
        _switch(inner, _ShippingDeadLogs)._mwaa_recover = (directory, key, os.getpid())


def _shim_class() -> type:
    from mwaa_logging.compat import _shim_class as shim

    return shim()


def _base_log_folder() -> str:
    """Airflow's ``[logging] base_log_folder`` (MWAA's task handler gives its own base class an empty one)."""
    from airflow.configuration import conf

    return str(conf.get("logging", "base_log_folder"))


class _TaskProcessRole(CloudWatchLogHandler):
    """What a shim handler becomes in a task's process (the subclasses below, over its own class ``_mwaa_base``)."""

    _mwaa_base: type


_Role = TypeVar("_Role", bound="_TaskProcessRole")


class _WritingAhead(_TaskProcessRole):
    """In the raw task process: each queued line is also written ahead; the file goes once everything settled."""

    _mwaa_wal: WriteAheadLog

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        write_ahead(self._mwaa_wal, self, record)  # after queueing it (see mwaa_logging.airflow.wal)

    def close(self, timeout: float | None = None) -> None:
        super().close(timeout)
        self._mwaa_wal.finish()


class _ShippingDeadLogs(_TaskProcessRole):
    """In the supervisor: at close, ship what dead task processes of the stream left unsent, then remove it."""

    _mwaa_recover: tuple[Path, str, int] | None

    def close(self, timeout: float | None = None) -> None:
        recover, self._mwaa_recover = self._mwaa_recover, None
        recovered: list[Path] = []
        if recover is not None and recover[2] == os.getpid():  # not in a forked child that inherited it
            try:
                recovered = queue_dead_logs(self, recover[0], recover[1])
            except Exception as exc:  # never break the close
                report(f"cannot ship the lines dead task processes left in {recover[0]} ({exc!r}); they stay there")
        super().close(timeout)
        for path in recovered:
            remove(path)


#: ``(role, the handler's own class)`` -> ``role`` over that class.
_role_classes: dict[tuple[type, type], type] = {}


def _switch(handler: CloudWatchLogHandler, role: type[_Role]) -> _Role:
    """Make ``handler`` a ``role`` over its own class (the shim's, or a subclass of it); return it."""
    base = type(handler)
    cls = _role_classes.get((role, base))
    if cls is None:
        cls = _role_classes[role, base] = type(base.__name__, (role, base), {
            "__module__": base.__module__, "__doc__": base.__doc__, "_mwaa_base": base})
    handler.__class__ = cls
    return cast(_Role, handler)
