"""Where spilled events of one stream live: the same relative layout on disk and in S3.

``<group>/<stream>/<UTC time>-<host>-<pid>-<n>.jsonl.gz`` with group and stream percent-quoted, so a
reader finds one stream's spilled lines by listing one prefix.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from urllib.parse import quote, unquote

SUFFIX = ".jsonl.gz"
_counter = itertools.count()


def quote_name(name: str) -> str:
    """Quote a group or stream name into one safe path segment."""
    return quote(name, safe="") or "%00"


def unquote_name(segment: str) -> str:
    return "" if segment == "%00" else unquote(segment)


def stream_prefix(group: str, stream: str) -> str:
    """Relative prefix (with trailing slash) under which a stream's spill objects live."""
    return f"{quote_name(group)}/{quote_name(stream)}/"


def object_name(group: str, stream: str, first_timestamp_ms: int) -> str:
    """A new, unique relative name for a spill object of one stream."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(first_timestamp_ms / 1000))
    host = quote_name(socket.gethostname())
    return f"{stream_prefix(group, stream)}{stamp}-{host}-{os.getpid()}-{next(_counter):08d}{SUFFIX}"
