"""CloudWatchLogFormatter keeps watchtower's contract (dict messages as JSON, record attributes)."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import uuid
from collections import OrderedDict, namedtuple
from collections.abc import Callable
from datetime import date, datetime, time, timezone
from typing import Any

import pytest
import watchtower
from hypothesis import given, settings
from hypothesis import strategies as st

from mwaa_logging import CloudWatchLogFormatter
from mwaa_logging.airflow.messages import json_serialize_legacy


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


# -- json.dumps semantics, as watchtower's CloudWatchLogFormatter writes a dict message --------------------------


class Colour(enum.Enum):
    RED = 1


class Size(str, enum.Enum):
    BIG = "big"


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float):
    pass


Point = namedtuple("Point", "x y")


TRY_ID = uuid.UUID(int=9)


@dataclasses.dataclass
class Task:
    name: str = "load"
    try_id: uuid.UUID = TRY_ID


def epoch_ms(value: Any) -> Any:
    """A user's default: datetimes as epoch milliseconds, anything else as text."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else str(value)


DEFAULTS: dict[str, Callable[[Any], Any] | None] = {
    "watchtower's": None, "epoch_ms": epoch_ms, "airflow_legacy": json_serialize_legacy,
    "a_dict": lambda value: (value.name if isinstance(value, enum.Enum)  # what json.dumps asks for again below
                             else {"type": type(value).__name__, "level": Colour.RED, "ratio": float("nan")}),
}
VALUES: dict[str, Any] = {
    "datetime": datetime(2026, 11, 24, 8, 0, 1, 234567, tzinfo=timezone.utc), "naive": datetime(2026, 1, 2, 3, 4),
    "date": date(2026, 11, 24), "time": time(8, 30), "uuid": uuid.UUID(int=7), "enum": Colour.RED,
    "str_enum": Size.BIG, "int_enum": Level.HIGH, "dataclass": Task(), "nan": float("nan"), "inf": float("inf"),
    "-inf": float("-inf"), "float_subclass": Ratio(0.5), "namedtuple": Point(1, 2), "big_int": 2**70,
    "ordered": OrderedDict(b=1, a=uuid.UUID(int=3)), "bytes": b"\x00x", "set": {1},
    "nested": {"when": [date(2026, 1, 1), {"id": uuid.UUID(int=2), "ratio": float("nan")}], "é": "ü"},
    "plain": {"event": "line", "n": 1, "ok": True, "none": None, "pi": 3.25, "list": [1, "a", (2, 3)]},
}


def compact(text: str) -> str:
    """``text`` (JSON, NaN allowed) with compact separators and non-ASCII characters as they are."""
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def theirs(msg: dict[Any, Any], default: Callable[[Any], Any] | None) -> str:
    return watchtower.CloudWatchLogFormatter(json_serialize_default=default).format(record(dict(msg)))


@pytest.mark.parametrize("default", list(DEFAULTS.values()), ids=list(DEFAULTS))
@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_dict_messages_are_written_as_watchtowers_json_dumps_writes_them(value: Any,
                                                                         default: Callable[[Any], Any] | None) -> None:
    """A user's json_serialize_default was never called for what orjson writes itself (datetimes, UUIDs, enums,
    dataclasses), and NaN became null: the same message, compact and with UTF-8 as the only differences."""
    msg = {"v": value, "k": "text"}
    ours = CloudWatchLogFormatter(json_serialize_default=default).format(record(msg))
    assert ours == compact(theirs(msg, default))


def test_a_users_default_is_called_for_datetimes() -> None:
    when = datetime(2026, 11, 24, tzinfo=timezone.utc)
    out = CloudWatchLogFormatter(json_serialize_default=epoch_ms).format(record({"when": when}))
    assert out == '{"when":1795478400000}'


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=5),
    st.datetimes(timezones=st.sampled_from([None, timezone.utc])), st.dates(), st.uuids(),
    st.sampled_from([Colour.RED, Size.BIG, Level.HIGH, Task(), Ratio(1.5), Point(1, 2), b"x"]),
)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(msg=st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4), default=st.sampled_from(list(DEFAULTS)))
def test_any_dict_message_is_written_as_watchtower_writes_it(msg: dict[str, Any], default: str) -> None:
    """The same text, but for how a float is spelled (orjson: ``1e-6``, json.dumps: ``1e-06``: the same number)."""
    ours = CloudWatchLogFormatter(json_serialize_default=DEFAULTS[default]).format(record(msg))
    assert compact(ours) == compact(theirs(msg, DEFAULTS[default]))
