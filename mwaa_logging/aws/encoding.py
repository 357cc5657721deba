"""PutLogEvents request bodies, encoded directly (pure: no I/O, no botocore).

botocore's model-driven serializer walks every event through the service model (and validates
it first); one 10,000-event batch costs it tens of milliseconds. The body is a fixed JSON shape,
so it is encoded here with orjson in one call, and compressed once when that pays off.

Strings that are not valid Unicode (lone surrogates, e.g. from ``surrogateescape`` decoding)
cannot be sent as JSON text; each lone surrogate becomes U+FFFD, which has the same UTF-8
length as the surrogate's ``surrogatepass`` encoding, so sizes counted by ``counted_size`` stay
an upper bound. Control characters are escaped by the JSON encoder as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mwaa_logging.events import MESSAGE, SEQ, SIZE, TIMESTAMP, LogEvent
from mwaa_logging.gzipping import DEFAULT_LEVEL as DEFAULT_GZIP_LEVEL
from mwaa_logging.gzipping import gzip_bytes
from mwaa_logging.outcome import RejectedInfo
from mwaa_logging.spillformat import valid_unicode

__all__ = ["DEFAULT_GZIP_LEVEL", "encode_put_log_events", "gzip_if_smaller", "rejected_info"]


def encode_put_log_events(group: str, stream: str, events: Sequence[LogEvent]) -> bytes:
    """The JSON body of ``PutLogEvents(group, stream, events)``, UTF-8, no whitespace."""
    try:
        return _dumps(group, stream, events)
    except orjson.JSONEncodeError:
        return _dumps(
            valid_unicode(group),
            valid_unicode(stream),
            [(e[TIMESTAMP], valid_unicode(e[MESSAGE]), e[SIZE], e[SEQ]) for e in events],
        )


def _dumps(group: str, stream: str, events: Sequence[LogEvent]) -> bytes:
    return orjson.dumps(
        {
            "logGroupName": group,
            "logStreamName": stream,
            "logEvents": [{"timestamp": e[TIMESTAMP], "message": e[MESSAGE]} for e in events],
        }
    )


def gzip_if_smaller(body: bytes, level: int = DEFAULT_GZIP_LEVEL) -> bytes | None:
    """``body`` gzip-compressed, or None when compression does not make it smaller."""
    compressed = gzip_bytes(body, level)
    return compressed if len(compressed) < len(body) else None


def rejected_info(response: Mapping[str, Any]) -> RejectedInfo | None:
    """``rejectedLogEventsInfo`` of a parsed PutLogEvents response, or None when nothing was rejected."""
    info = response.get("rejectedLogEventsInfo")
    if not info:
        return None
    rejected = RejectedInfo(
        too_new_start=info.get("tooNewLogEventStartIndex"),
        too_old_end=info.get("tooOldLogEventEndIndex"),
        expired_end=info.get("expiredLogEventEndIndex"),
    )
    if rejected == RejectedInfo():
        return None
    return rejected
