"""Stream name templates: watchtower's placeholders, compiled once, CloudWatch-safe output."""

from __future__ import annotations

import logging
import os
import platform
import re

import pytest

from mwaa_logging.streamnames import compile_stream_name


def rec(name: str = "app.x", thread: str = "MainThread") -> logging.LogRecord:
    r = logging.LogRecord(name, logging.INFO, "f.py", 1, "m", (), None)
    r.threadName = thread
    return r


def test_default_placeholders() -> None:
    namer = compile_stream_name("{machine_name}/{program_name}/{logger_name}/{process_id}")
    name = namer(rec())
    assert name.startswith(platform.node().replace(":", "_") + "/")
    assert name.endswith(f"/app.x/{os.getpid()}")


def test_logger_and_thread_names_vary_per_record() -> None:
    namer = compile_stream_name("{logger_name}-{thread_name}")
    assert namer(rec("a", "t1")) == "a-t1"
    assert namer(rec("b", "t2")) == "b-t2"


def test_a_lone_surrogate_in_a_logger_name_becomes_a_replacement_character() -> None:
    """A logger named from undecodable bytes (os.fsdecode) could be neither sent nor spilled as text."""
    namer = compile_stream_name("{logger_name}")
    assert namer(rec("job-\udce9:x")) == "job-\ufffd_x"
    assert namer(rec("tâche-😀")) == "tâche-😀"


def test_strftime_is_utc_now_and_colons_are_replaced() -> None:
    name = compile_stream_name("day-{strftime:%Y-%m-%dT%H:%M}")(rec())
    assert re.fullmatch(r"day-\d{4}-\d\d-\d\dT\d\d_\d\d", name)


def test_unknown_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        compile_stream_name("{hostname}")
