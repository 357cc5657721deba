"""The spill line format, shared by every spill target and by the reader and replay.

A spill object is gzip-compressed JSON Lines; one object per event::

    {"logGroupName": "g", "logStreamName": "s", "timestamp": 1700000000000,
     "message": "...", "reason": "max_latency", "detail": "ThrottlingException", "spilledAt": 1700000300123}

``spilledAt`` (ms, wall clock, absent in files written before it existed) is when the event was spilled: the
reader places it against CloudWatch events of the same millisecond by their ingestion time.
"""

from __future__ import annotations

import enum
import math
import zlib
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
    #: Replay found it in the spill object of another stream than the one it names: exported, not put.
    MISPLACED = "misplaced"


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
    def from_json(cls, line: object) -> SpillRecord:
        """The record of one parsed line; ``ValueError`` naming what is wrong when it is not one."""
        if not isinstance(line, dict):
            raise ValueError(f"expected a JSON object, got {type(line).__name__}")
        try:
            timestamp = line["timestamp"]
            if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or timestamp != timestamp:
                raise ValueError(f"timestamp is not a number: {timestamp!r:.40}")
            return cls(
                group=str(line["logGroupName"]),
                stream=str(line["logStreamName"]),
                timestamp=int(timestamp),
                message=str(line["message"]),
                reason=str(line["reason"]),
                detail=str(line.get("detail", "")),
                spilled_at=_optional_int(line.get("spilledAt")),
            )
        except KeyError as missing:
            raise ValueError(f"no {missing} field") from None
        except OverflowError as exc:  # an infinite timestamp
            raise ValueError(f"timestamp out of range: {exc}") from None


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


def encode_line(record: SpillRecord) -> bytes:
    """``record`` as one JSON line, newline included (:func:`storable` first if JSON cannot hold it as it is)."""
    try:
        return orjson.dumps(record.to_json(), option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(storable(record).to_json(), option=orjson.OPT_APPEND_NEWLINE)


def _lines_in_chunks(records: Iterable[SpillRecord], size: int) -> Iterator[bytes]:
    lines: list[bytes] = []
    for record in records:
        lines.append(encode_line(record))
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


def decode_records(data: bytes, *, max_bytes: int | None = None) -> Iterator[SpillRecord]:
    """Parse gzip (or plain) JSON Lines produced by :func:`encode_records`.

    A line that is not a spill record raises ``ValueError`` with its number. ``max_bytes`` bounds the
    uncompressed size (``ValueError`` beyond it, before it is all in memory): a spill object anyone who may write
    the bucket can put there must not expand a few MB into gigabytes (a gzip bomb) in the reader or replay.
    Gzip data that ends early raises :class:`DamagedSpill` (:func:`salvage_records` reads what it can), corrupt
    gzip data ``ValueError``.
    """
    decoded = salvage_records(data, max_bytes=max_bytes)
    if decoded.damage is not None:
        raise DamagedSpill(decoded.damage)
    if decoded.bad_lines:
        raise ValueError(decoded.bad_lines[0])
    yield from decoded.records


class DamagedSpill(ValueError):
    """A spill file or object whose gzip data ends early; the message says what could be salvaged and what not."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The records of one spill file or object; ``damage`` says, when its data is damaged, what was salvaged (the
    complete records before the damage, in ``records``) and what was not; ``bad_lines`` names the complete lines that
    are not spill records (the others are read)."""

    records: list[SpillRecord]
    damage: str | None = None
    #: Each complete line that is not a spill record (``"line N is not a spill record: why"``): skipped,
    #: the other lines are in ``records``.
    bad_lines: tuple[str, ...] = ()

    def bad_lines_said(self, most: int = 3) -> str:
        """The first ``most`` of :attr:`bad_lines`, and how many more there are."""
        said = "; ".join(self.bad_lines[:most])
        more = len(self.bad_lines) - most
        return f"{said} (and {more} more lines that are not spill records)" if more > 0 else said


def salvage_records(data: bytes, *, max_bytes: int | None = None) -> Decoded:
    """Like :func:`decode_records`, but of gzip data that ends early (a writer killed, a copy cut short, a tail of
    zero bytes never written) every complete record before that point, and what was salvaged and lost, in
    ``damage``. Only the last line, after the last newline, can be cut by the end, and a record cut is never
    returned (a prefix of a JSON object is never one). A complete line that is not a spill record, in damaged data
    or not, is skipped and named in ``bad_lines`` (the other lines are read). Corrupt gzip data and a gzip bomb
    raise ``ValueError`` (nothing is salvaged)."""
    damage = None
    if data[:2] == _GZIP_MAGIC:
        data, damage = _gunzip(data, max_bytes)
    elif data and _GZIP_MAGIC.startswith(data):
        data, damage = b"", f"{_ENDS_EARLY} (truncated)"
    elif max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"holds more than {max_bytes} bytes: not a spill object")
    lines = data.split(b"\n")
    if damage is None:
        parsed, bad_lines = _parse(lines)
        return Decoded(parsed, bad_lines=bad_lines)
    *whole, last = lines  # only the last line, after the last newline, may be cut by the end
    records, bad_lines = _parse(whole)
    lost = "whatever followed them"
    if last.strip():
        try:
            records.append(SpillRecord.from_json(orjson.loads(last)))
        except ValueError:
            lost = f"the line after them ({len(last)} bytes, incomplete) and whatever followed it"
    return Decoded(records, f"{damage}; salvaged its first {len(records)} records (complete), lost {lost}",
                   bad_lines)


def _parse(lines: Iterable[bytes]) -> tuple[list[SpillRecord], tuple[str, ...]]:
    """The records of ``lines``, and what is wrong with each line that is not one (skipped)."""
    records: list[SpillRecord] = []
    bad: list[str] = []
    for number, raw in enumerate(lines, 1):
        if raw.strip():
            try:
                records.append(SpillRecord.from_json(orjson.loads(raw)))
            except ValueError as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors too
                bad.append(f"line {number} is not a spill record: {exc}")
    return records, tuple(bad)


#: Bytes decompressed at a time by :func:`_gunzip`.
_GUNZIP_STEP = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ENDS_EARLY = "its gzip data ends early"


def gunzip_at_most(data: bytes, max_bytes: int) -> bytes:
    """``gzip.decompress(data)`` (every member), or ``ValueError`` as soon as it exceeds ``max_bytes`` (and when
    the data is corrupt), ``EOFError`` when it ends early."""
    out, damage = _gunzip(data, max_bytes)
    if damage is not None:
        raise EOFError(damage)
    return out


def _gunzip(data: bytes, max_bytes: int | None) -> tuple[bytes, str | None]:
    """Every gzip member of ``data`` decompressed, and None; or, when the data ends early, all that precedes the
    end and what is wrong. A tail of zero bytes after an unfinished member is an end too (never written: a crash
    before the data reached the disk, a preallocated copy cut short), not data: zlib makes garbage of it, records
    that parse and read wrong. ``ValueError`` beyond ``max_bytes`` (before it is all in memory) and for corrupt
    data (the garbage zlib makes before it notices cannot be told from records)."""
    limit = math.inf if max_bytes is None else max_bytes
    parts: list[bytes] = []
    total = 0
    while data:
        member = zlib.decompressobj(wbits=31)
        kept, kept_total = len(parts), total
        tail = data
        try:
            while not member.eof:
                chunk = member.decompress(tail, _GUNZIP_STEP)
                tail = member.unconsumed_tail
                total += len(chunk)
                if total > limit:
                    raise ValueError(f"expands beyond {max_bytes} bytes: not a spill object (a gzip bomb?)")
                parts.append(chunk)
                if not chunk and not tail:
                    break
        except zlib.error as error:
            raise ValueError(f"its gzip data is corrupt ({error}): nothing of it is read (what zlib makes of the "
                             "bytes before it notices cannot be told from records)") from None
        if not member.eof:
            written = data.rstrip(b"\0")
            if len(written) < len(data):  # read this member again without the zeros
                del parts[kept:]
                total, data = kept_total, written
                continue
            return b"".join(parts), f"{_ENDS_EARLY} (truncated)"
        data = member.unused_data.lstrip(b"\0")  # gzip.decompress ignores trailing zero padding too
    return b"".join(parts), None
