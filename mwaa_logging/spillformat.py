"""The spill line format, shared by every spill target and by the reader and replay.

A spill object is gzip-compressed JSON Lines; one object per event::

    {"logGroupName": "g", "logStreamName": "s", "timestamp": 1700000000000,
     "message": "...", "reason": "max_latency", "detail": "ThrottlingException", "spilledAt": 1700000300123}

``spilledAt`` (ms, wall clock, absent in files written before it existed) is when the event was spilled: the
reader places it against CloudWatch events of the same millisecond by their ingestion time.
"""

from __future__ import annotations

import enum
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import orjson

from mwaa_logging.gzipping import DEFAULT_LEVEL, gzip_chunks


class SpillReason(str, enum.Enum):
    """Why an event went to a spill target instead of CloudWatch."""

    #: Buffers held more than ``max_buffer_bytes``.
    MEMORY_CAP = "memory_cap"
    #: The event waited longer than ``max_latency`` (throttling, outage).
    MAX_LATENCY = "max_latency"
    #: Still pending when ``close()`` reached its deadline.
    CLOSE_DEADLINE = "close_deadline"
    #: Older than CloudWatch accepts (14 days), seen before sending.
    TOO_OLD = "too_old"
    #: More than 2 hours in the future, seen before sending.
    TOO_NEW = "too_new"
    #: Rejected by CloudWatch in ``rejectedLogEventsInfo`` (tooOld/tooNew/expired).
    REJECTED_TOO_OLD = "rejected_too_old"
    REJECTED_TOO_NEW = "rejected_too_new"
    REJECTED_EXPIRED = "rejected_expired"
    #: CloudWatch refused the call as invalid.
    INVALID = "invalid"
    #: Credentials or permissions were refused.
    AUTH = "auth"
    #: The log group or stream is missing and may not be created.
    NO_RESOURCE = "no_resource"
    #: Handling them raised an unexpected exception (a bug): spilled rather than lost.
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class SpillRecord:
    group: str
    stream: str
    timestamp: int
    message: str
    reason: str
    detail: str = ""
    #: When it was spilled (ms since the epoch), if known.
    spilled_at: int | None = None

    def to_json(self) -> dict[str, object]:
        line: dict[str, object] = {
            "logGroupName": self.group,
            "logStreamName": self.stream,
            "timestamp": self.timestamp,
            "message": self.message,
            "reason": self.reason,
        }
        if self.detail:
            line["detail"] = self.detail
        if self.spilled_at is not None:
            line["spilledAt"] = self.spilled_at
        return line

    @classmethod
    def from_json(cls, line: dict[str, object]) -> SpillRecord:
        return cls(
            group=str(line["logGroupName"]),
            stream=str(line["logStreamName"]),
            timestamp=int(line["timestamp"]),  # type: ignore[call-overload]
            message=str(line["message"]),
            reason=str(line["reason"]),
            detail=str(line.get("detail", "")),
            spilled_at=_optional_int(line.get("spilledAt")),
        )


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def records_by_stream(records: Iterable[SpillRecord]) -> dict[tuple[str, str], list[SpillRecord]]:
    """``records`` grouped by ``(group, stream)``, each group sorted by timestamp (stable), streams in first-seen
    order: what a spill target writes as one object per stream."""
    grouped: dict[tuple[str, str], list[SpillRecord]] = {}
    for record in records:
        grouped.setdefault((record.group, record.stream), []).append(record)
    for batch in grouped.values():
        batch.sort(key=_timestamp)
    return grouped


def _timestamp(record: SpillRecord) -> int:
    return record.timestamp


def encode_records(records: Iterable[SpillRecord], level: int = DEFAULT_LEVEL) -> bytes:
    """Serialize records as gzip JSON Lines, compressed as they are encoded (a spill of tens of MB never
    exists uncompressed in memory: it is written while the buffers are at their cap)."""
    return gzip_chunks(_lines_in_chunks(records, LINES_PER_CHUNK), level)


#: Spill records encoded, then compressed, at a time.
LINES_PER_CHUNK = 512


def _lines_in_chunks(records: Iterable[SpillRecord], size: int) -> Iterator[bytes]:
    lines: list[bytes] = []
    for record in records:
        try:
            lines.append(orjson.dumps(record.to_json(), option=orjson.OPT_APPEND_NEWLINE))
        except orjson.JSONEncodeError:
            lines.append(orjson.dumps(storable(record).to_json(), option=orjson.OPT_APPEND_NEWLINE))
        if len(lines) == size:
            yield b"".join(lines)
            lines.clear()
    if lines:
        yield b"".join(lines)


#: The timestamps JSON Lines can carry here (orjson: 64-bit integers).
_INT64 = (-(2**63), 2**63 - 1)


def storable(record: SpillRecord) -> SpillRecord:
    """``record`` as JSON can hold it: each lone surrogate becomes U+FFFD (as in a PutLogEvents body), and a
    timestamp beyond 64 bits is clamped, the original kept in ``detail``."""
    low, high = _INT64
    timestamp, detail = record.timestamp, record.detail
    if not low <= timestamp <= high:
        timestamp = min(max(timestamp, low), high)
        detail = f"{detail}; timestamp {record.timestamp} out of range".lstrip("; ")
    return replace(record, group=valid_unicode(record.group), stream=valid_unicode(record.stream),
                   message=valid_unicode(record.message), reason=valid_unicode(record.reason),
                   detail=valid_unicode(detail), timestamp=timestamp)


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (surrogate pairs are joined)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def decode_records(data: bytes) -> Iterator[SpillRecord]:
    """Parse gzip (or plain) JSON Lines produced by :func:`encode_records`."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    for raw in data.splitlines():
        if raw.strip():
            yield SpillRecord.from_json(orjson.loads(raw))
