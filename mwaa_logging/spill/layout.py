"""Where spilled events of one stream live: the same relative layout on disk and in S3.

``<group>/<stream>/<UTC time>-<host>-<pid>-<n>.jsonl.gz`` with group and stream percent-quoted, so a
reader finds one stream's spilled lines by listing one prefix. A quoted name longer than a file name may be
(255 bytes on Linux and macOS; group and stream names may have 512 characters, ``%XX`` each) keeps its first
:data:`MAX_SEGMENT` - 17 characters and ends in ``~`` and 16 hex digits of its SHA-256: still one segment per
name, still unique, and the records inside carry the full names.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import time
from urllib.parse import quote, unquote

SUFFIX = ".jsonl.gz"
#: A spill file being written is ``<name>.tmp`` until it is whole (see :mod:`mwaa_logging.spill.leftovers`).
TMP_SUFFIX = ".tmp"
#: A local spill file replayed into CloudWatch is renamed ``<name>.replayed``.
REPLAYED_SUFFIX = ".replayed"
#: Start of the name ``mwaa-logging replay`` gives its export of rejected events by default (a spill file's name
#: starts with its first timestamp): listings of spill files leave such files out, wherever the export was run.
EXPORT_PREFIX = "mwaa-logging-rejected-"
#: Longest quoted name kept whole (a file name may have 255 bytes; room for a ``.tmp`` suffix and more).
MAX_SEGMENT = 200
#: Object names carry the UTC second of their first event; timestamps beyond these years are named at the edge.
_NAMEABLE_MS = (0, 253_402_300_799_000)  # 1970 .. 9999-12-31T23:59:59
_counter = itertools.count()
#: The inode of the initial pid namespace (Linux's ``PROC_PID_INIT_INO``): names written there stay as before.
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC


def quote_name(name: str) -> str:
    """Quote a group or stream name into one safe path segment (shortened with a hash when too long)."""
    quoted = quote(name, safe="", errors="surrogatepass") or "%00"
    if quoted in (".", ".."):  # valid group and stream names, but as path segments they climb out of the spill
        quoted = quoted.replace(".", "%2E")  # directory (group "..", stream "..": two levels above it)
    if len(quoted) <= MAX_SEGMENT:
        return quoted
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{quoted[:MAX_SEGMENT - 17]}~{digest}"


def unquote_name(segment: str) -> str:
    return "" if segment == "%00" else unquote(segment)


def stream_prefix(group: str, stream: str) -> str:
    """Relative prefix (with trailing slash) under which a stream's spill objects live."""
    return f"{quote_name(group)}/{quote_name(stream)}/"


def writer_host() -> str:
    """Who writes, as spill names say it: the host name and, in a container's pid namespace, that namespace.

    Processes of two containers may share a host name (host networking) and a spill volume, but a pid of one
    means nothing in the other: a file named by a process of another pid namespace must be judged as one of
    another host (:mod:`mwaa_logging.spill.leftovers`)."""
    host = quote_name(socket.gethostname())[:64]
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc (macOS), or no namespaces
        return host
    return host if namespace == _INITIAL_PID_NAMESPACE else f"{host}~pidns{namespace}"


def object_name(group: str, stream: str, first_timestamp_ms: int) -> str:
    """A new, unique relative name for a spill object of one stream."""
    low, high = _NAMEABLE_MS
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(min(max(first_timestamp_ms, low), high) // 1000))
    return f"{stream_prefix(group, stream)}{stamp}-{writer_host()}-{os.getpid()}-{next(_counter):08d}{SUFFIX}"


def in_stream_prefix(directory: str, group: str, stream: str) -> bool:
    """Whether a spill object in ``directory`` (a path or key prefix, ``/``-separated, no trailing slash) may hold
    ``group``/``stream``'s events: its last two segments name them (quoted as :func:`stream_prefix` does, or
    quoted otherwise but naming the same names)."""
    segments = directory.rsplit("/", 2)[-2:]
    if len(segments) != 2:
        return False
    if segments == [quote_name(group), quote_name(stream)]:
        return True
    return [unquote_name(segment) for segment in segments] == [group, stream]
