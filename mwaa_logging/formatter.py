"""``CloudWatchLogFormatter``: watchtower's formatter contract, with a fast path for plain messages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import orjson

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def json_serialize_default(value: Any) -> Any:
    """watchtower's default: dates as ``isoformat()``, anything else as ``repr()``."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return repr(value)


class CloudWatchLogFormatter(logging.Formatter):
    """Formats a record into one CloudWatch message.

    Mapping messages (``logger.info({"k": 1})``) become JSON; ``add_log_record_attrs`` adds record
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
        """JSON text of ``data`` (orjson; the stdlib encoder for what orjson refuses)."""
        try:
            return orjson.dumps(data, default=self.json_serialize_default, option=_ORJSON_OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return json.dumps(data, default=self.json_serialize_default)
