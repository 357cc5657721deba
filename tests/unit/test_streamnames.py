"""Stream name templates: watchtower's placeholders, compiled once, CloudWatch-safe output."""

from __future__ import annotations

import logging
import os
import platform
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mwaa_logging.streamnames import MAX_STREAM_NAME, compile_stream_name, sanitize


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


@given(st.text(min_size=0, max_size=1200))
def test_sanitized_names_are_names_cloudwatch_takes_and_sanitize_is_idempotent(name: str) -> None:
    clean = sanitize(name)
    assert 1 <= len(clean) <= MAX_STREAM_NAME and not set(clean) & {":", "*"}
    assert sanitize(clean) == clean
    clean.encode("utf-8")  # no lone surrogate left


def test_a_long_name_keeps_its_start_and_differs_by_its_hash() -> None:
    a, b = "a" * 600, "a" * 599 + "b"
    assert sanitize(a)[:495] == a[:495] and sanitize(a)[495] == "~" and sanitize(a) != sanitize(b)
    assert sanitize("a" * 512) == "a" * 512
