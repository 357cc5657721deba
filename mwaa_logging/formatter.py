"""``CloudWatchLogFormatter``: watchtower's formatter contract, with a fast path for plain messages."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
#: datetimes, dates, times and dataclasses go to the default function, as with json.dumps
_ORJSON_DEFAULT_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: Values orjson writes as json.dumps does, whatever the default function (the common case: one type check each).
_PLAIN = frozenset({str, int, bool, type(None)})
#: Containers deeper than this are left to json.dumps (which says so for a cycle).
_MAX_DEPTH = 100


def json_serialize_default(value: Any) -> Any:
    """watchtower's default: dates as ``isoformat()``, anything else as ``repr()``."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return repr(value)


class _NotAsJson(Exception):
    """orjson would write a value the default function returned otherwise than json.dumps."""


def _orjson_writes_as_json(value: Any, depth: int = 0) -> bool:
    """Whether orjson (datetimes and dataclasses passed to the default function) writes ``value`` as json.dumps
    would: not a UUID or an Enum (orjson writes them itself, json.dumps asks the default function), nor a NaN or
    infinite float (orjson: ``null``; json.dumps: ``NaN``, ``Infinity``), nor a float or tuple subclass (orjson asks
    the default function, json.dumps writes a number or an array). Anything else orjson does not know goes to the
    default function, as with json.dumps (see :meth:`CloudWatchLogFormatter._default`)."""
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_orjson_writes_as_json(item, depth + 1) for item in value.values())
    if kind is list or kind is tuple or (isinstance(value, list) and not isinstance(value, Enum)):
        return all(_orjson_writes_as_json(item, depth + 1) for item in value)
    return not isinstance(value, (UUID, Enum, float, tuple))


class CloudWatchLogFormatter(logging.Formatter):
    """Formats a record into one CloudWatch message.

    Mapping messages (``logger.info({"k": 1})``) become JSON, as ``json.dumps(msg, default=json_serialize_default)``
    writes it (watchtower's), compact and with non-ASCII characters as UTF-8; ``add_log_record_attrs`` adds record
    attributes to that JSON (a plain message goes under ``msg``). Unlike watchtower, the record itself is
    never modified, so other handlers see it unchanged.
    """

    add_log_record_attrs: Sequence[str] = ()

    def __init__(self, *args: Any, json_serialize_default: Callable[[Any], Any] | None = None,
                 add_log_record_attrs: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_serialize_default = json_serialize_default or globals()["json_serialize_default"]
        # an instance attribute even when empty: emit() reads it per record, and Python 3.11 does not specialize
        # a class attribute read through an instance (a generic attribute lookup each time)
        self.add_log_record_attrs = tuple(type(self).add_log_record_attrs if add_log_record_attrs is None
                                          else add_log_record_attrs)
        self._plain = self._fmt in (None, "%(message)s") and isinstance(self._style, logging.PercentStyle)

    def is_plain(self) -> bool:
        """True when formatting a plain str message is just ``record.getMessage()``
        (``add_log_record_attrs`` may still be set later; callers check it per record)."""
        return self._plain

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        if self.add_log_record_attrs:
            data = dict(msg) if isinstance(msg, Mapping) else {"msg": record.getMessage()}
            for name in self.add_log_record_attrs:
                if name != "msg":
                    data[name] = getattr(record, name, None)
            return self.dumps(data)
        if type(msg) is dict or isinstance(msg, Mapping):  # the exact type first: an ABC check costs ~100 ns
            return self.dumps(msg)
        if self._plain and not (record.exc_info or record.exc_text or record.stack_info):
            record.message = message = record.getMessage()  # as logging.Formatter.format does
            return message
        return super().format(record)

    def dumps(self, data: Mapping[Any, Any]) -> str:
        """JSON text of ``data`` as ``json.dumps(data, default=self.json_serialize_default)`` writes it (what
        watchtower sends), compact and with non-ASCII characters as they are. orjson writes it when it writes
        every value as json.dumps does; json.dumps itself otherwise (a UUID, an Enum, a NaN, ...)."""
        for value in data.values():  # the common case (str, int, bool, None values) costs one check each
            if type(value) not in _PLAIN:
                return self._dumps_any(data)
        try:
            return orjson.dumps(data, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # an int above 64 bits, a str that is not valid Unicode, a mapping that is no dict
            return self._stdlib_dumps(data)

    def _dumps_any(self, data: Mapping[Any, Any]) -> str:
        if _orjson_writes_as_json(data):
            try:
                return orjson.dumps(data, default=self._default, option=_ORJSON_DEFAULT_OPTIONS).decode()
            except TypeError:  # (orjson.JSONEncodeError is one): _NotAsJson, or what orjson cannot write
                pass
        return self._stdlib_dumps(data)

    def _default(self, value: Any) -> Any:
        """The default function, for orjson: what orjson would write otherwise than json.dumps is refused."""
        if isinstance(value, (float, tuple)):  # subclasses: json.dumps writes a number, an array
            raise _NotAsJson
        result = self.json_serialize_default(value)
        if not _orjson_writes_as_json(result):
            raise _NotAsJson
        return result

    def _stdlib_dumps(self, data: Mapping[Any, Any]) -> str:
        try:
            text = json.dumps(data, default=self.json_serialize_default, separators=(",", ":"), ensure_ascii=False)
        except TypeError:
            if not isinstance(data, dict):
                raise
            # keys json.dumps refuses (a UUID, a datetime; watchtower lost the record): orjson writes them as text
            return orjson.dumps(data, default=self.json_serialize_default, option=_ORJSON_OPTIONS).decode()
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escaped, as json.dumps does by default
            text = json.dumps(data, default=self.json_serialize_default, separators=(",", ":"))
        return text
