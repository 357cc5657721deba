"""Log stream name templates (watchtower's placeholders), compiled once into a function of the record."""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import string
import sys
from collections.abc import Callable
from datetime import datetime, timezone

from mwaa_logging.spillformat import valid_unicode

STATIC_FIELDS = frozenset({"machine_name", "program_name", "process_id"})
RECORD_FIELDS = frozenset({"logger_name", "thread_name"})
KNOWN_FIELDS = STATIC_FIELDS | RECORD_FIELDS | {"strftime"}
DEFAULT_LOG_STREAM_NAME = "{machine_name}/{program_name}/{logger_name}/{process_id}"
_FORBIDDEN = str.maketrans({":": "_", "*": "_"})

StreamNamer = Callable[[logging.LogRecord], str]


def template_fields(template: str) -> set[str]:
    """Placeholder names used in ``template``; raises ValueError for unknown ones or bad syntax."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = fields - KNOWN_FIELDS
    if unknown or "" in fields:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; known: {sorted(KNOWN_FIELDS)}")
    return fields


#: CloudWatch's longest log stream name, in characters.
MAX_STREAM_NAME = 512
#: A shortened name ends in ``~`` and this many hex digits of the full name's SHA-256.
_DIGEST_CHARS = 16


def sanitize(name: str) -> str:
    """The stream name CloudWatch accepts for ``name``; the same for the writer and every reader.

    CloudWatch forbids ':' and '*' in stream names; they become '_' (as Airflow does). A lone surrogate (a
    logger named from undecodable bytes) cannot be sent or stored as text: it becomes U+FFFD. A name over
    512 characters, which CloudWatch refuses, keeps its first 495 and ends in ``~`` and 16 hex digits of its
    SHA-256. Idempotent: a name this returns comes back unchanged.
    """
    name = name.translate(_FORBIDDEN) or "_"
    return shorten(name if name.isascii() else valid_unicode(name))


def shorten(name: str) -> str:
    """``name`` if CloudWatch takes its length, else its first characters, ``~`` and a hash of all of it."""
    if len(name) <= MAX_STREAM_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    return f"{name[:MAX_STREAM_NAME - _DIGEST_CHARS - 1]}~{digest}"


def is_static(template: str) -> bool:
    """True when the name depends only on the machine, the program and the process."""
    return not template_fields(template) - STATIC_FIELDS


def compile_stream_name(template: str) -> StreamNamer:
    """A function record -> stream name, doing per record only the work the template needs."""
    fields = template_fields(template)

    def render(logger_name: str, thread_name: str) -> str:
        return sanitize(template.format(
            machine_name=platform.node(), program_name=sys.argv[0].replace(":", "") if sys.argv else "",
            process_id=os.getpid(), logger_name=logger_name, thread_name=thread_name,
            strftime=datetime.now(timezone.utc),
        ))

    if "strftime" in fields:
        return lambda record: render(record.name, record.threadName or "")
    if not fields & RECORD_FIELDS:
        cached: dict[int | None, str] = {}

        def static(record: logging.LogRecord) -> str:
            name = cached.get(record.process)  # the record knows its pid: no system call per record
            if name is None:
                if len(cached) > 64:
                    cached.clear()
                name = cached[record.process] = render("", "")
            return name

        return static
    per_record: dict[tuple[int, str, str], str] = {}
    uses_thread = "thread_name" in fields

    def dynamic(record: logging.LogRecord) -> str:
        key = (record.process or 0, record.name, (record.threadName or "") if uses_thread else "")
        name = per_record.get(key)
        if name is None:
            if len(per_record) > 10_000:
                per_record.clear()
            name = per_record[key] = render(key[1], key[2])
        return name

    return dynamic
