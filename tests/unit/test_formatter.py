"""CloudWatchLogFormatter keeps watchtower's contract (dict messages as JSON, record attributes)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from mwaa_logging import CloudWatchLogFormatter


def record(msg: object, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("app", logging.INFO, "/x.py", 7, msg, args, exc_info)


def test_plain_messages_are_interpolated() -> None:
    assert CloudWatchLogFormatter().format(record("a %s %d", "b", 3)) == "a b 3"


def test_dict_messages_become_json_with_dates_and_unknown_objects_handled() -> None:
    when = datetime(2026, 11, 24, tzinfo=timezone.utc)
    out = CloudWatchLogFormatter().format(record({"when": when, "obj": object, 1: "int key"}))
    data = json.loads(out)
    assert data["when"].startswith("2026-11-24T00:00:00")
    assert data["obj"] == repr(object)
    assert data["1"] == "int key"


def test_record_attributes_are_added_without_modifying_the_record() -> None:
    formatter = CloudWatchLogFormatter(add_log_record_attrs=["levelname", "lineno"])
    rec = record("hello %s", "you")
    assert json.loads(formatter.format(rec)) == {"msg": "hello you", "levelname": "INFO", "lineno": 7}
    assert rec.msg == "hello %s"  # other handlers still see the original record


def test_exceptions_and_custom_formats_use_the_standard_formatter() -> None:
    out = CloudWatchLogFormatter().format(record("failed", exc=True))
    assert out.startswith("failed\nTraceback") and "ValueError: boom" in out
    assert CloudWatchLogFormatter("%(levelname)s %(message)s").format(record("x")) == "INFO x"


def test_custom_json_default_is_used() -> None:
    formatter = CloudWatchLogFormatter(json_serialize_default=lambda o: "custom")
    assert json.loads(formatter.format(record({"o": object()}))) == {"o": "custom"}
