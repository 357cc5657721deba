"""PutLogEvents acceptance rules as CloudWatch Logs applies them (pure: no I/O, ``now`` passed in).

Two steps, because AWS needs the log group (its retention) between them:

* :func:`check_structure` — whole-call rules that do not depend on time: at least 1 and at most
  10,000 events, no empty message, one message <= 1,048,550 UTF-8 bytes, batch <= 1,048,576 bytes
  counted as UTF-8 message bytes + 26 per event.
* :func:`check_times` — chronological order (else the call fails), events > 2 h in the future or
  older than 14 days / the group's retention rejected while the rest is accepted, and the accepted
  events may not span more than 24 h (else the call fails).

:func:`check_names` applies the service model's name and retention constraints to the calls that carry
them (moto checks only a log group name's length), so a name AWS refuses is refused here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from mwaa_logging.limits import (
    EVENT_OVERHEAD_BYTES,
    MAX_AGE_MS,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_EVENT_MESSAGE_BYTES,
    MAX_FUTURE_MS,
)

DAY_MS = 24 * 3600 * 1000
_timestamp_of, _message_of = itemgetter("timestamp"), itemgetter("message")
_INT_ONLY, _STR_ONLY = frozenset({int}), frozenset({str})

CHRONOLOGICAL_MESSAGE = "Log events in a single PutLogEvents request must be in chronological order."
SPAN_MESSAGE = "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."


#: Name constraints of the service model (``LogGroupName``, ``LogStreamName``: 1-512 characters).
MAX_NAME_LENGTH = 512
GROUP_NAME_PATTERN = r"[\.\-_/#A-Za-z0-9]+"
STREAM_NAME_PATTERN = r"[^:*]*"
_NAME_RULES = {"logGroupName": re.compile(GROUP_NAME_PATTERN), "logStreamName": re.compile(STREAM_NAME_PATTERN)}
#: The values PutRetentionPolicy accepts, in days.
RETENTION_DAYS = frozenset({1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                            2922, 3288, 3653})
#: The name fields each API carries (a missing one is left to the API's own handling).
_NAMED_APIS = {
    "PutLogEvents": ("logGroupName", "logStreamName"),
    "CreateLogStream": ("logGroupName", "logStreamName"),
    "CreateLogGroup": ("logGroupName",),
    "PutRetentionPolicy": ("logGroupName",),
}


class RuleViolation(Exception):
    """The whole call fails: AWS answers HTTP 400 with ``error_type`` and ``message``."""

    def __init__(self, message: str, error_type: str = "InvalidParameterException") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


@dataclass(frozen=True)
class Verdict:
    """Which events of a call are stored: ``events[accept_start:accept_end]``; the rest is rejected."""

    accept_start: int
    accept_end: int
    too_new_start: int | None = None  # inclusive
    too_old_end: int | None = None  # exclusive
    expired_end: int | None = None  # exclusive

    @property
    def accepted(self) -> int:
        return self.accept_end - self.accept_start

    def rejected_info(self) -> dict[str, int]:
        """``rejectedLogEventsInfo`` as AWS spells it (empty when nothing was rejected)."""
        info: dict[str, int] = {}
        if self.too_new_start is not None:
            info["tooNewLogEventStartIndex"] = self.too_new_start
        if self.too_old_end is not None:
            info["tooOldLogEventEndIndex"] = self.too_old_end
        if self.expired_end is not None:
            info["expiredLogEventEndIndex"] = self.expired_end
        return info


def _validation_error(value: str, where: str, constraint: str) -> RuleViolation:
    return RuleViolation(
        f"1 validation error detected: Value '{value}' at '{where}' "
        f"failed to satisfy constraint: {constraint}"
    )


def check_names(api: str, request: Mapping[str, Any]) -> None:
    """Refuse a log group or stream name, or a retention, that the service model does not allow in ``api``'s
    request (as AWS does: HTTP 400 InvalidParameterException, nothing done)."""
    for key in _NAMED_APIS.get(api, ()):
        value = request.get(key)
        if not isinstance(value, str):
            continue
        if not 1 <= len(value) <= MAX_NAME_LENGTH:
            raise _validation_error(value, key, f"Member must have length less than or equal to {MAX_NAME_LENGTH}"
                                    if value else "Member must have length greater than or equal to 1")
        if not _NAME_RULES[key].fullmatch(value):
            raise _validation_error(value, key,
                                    f"Member must satisfy regular expression pattern: {_NAME_RULES[key].pattern}")
    if api == "PutRetentionPolicy":
        days = request.get("retentionInDays")
        if type(days) is int and days not in RETENTION_DAYS:
            raise _validation_error(str(days), "retentionInDays",
                                    f"Member must satisfy enum value set: {sorted(RETENTION_DAYS)}")


def message_bytes(message: str) -> int:
    """UTF-8 length of ``message`` (lone surrogates counted as 3 bytes, as they would encode)."""
    if message.isascii():
        return len(message)
    return len(message.encode("utf-8", "surrogatepass"))


def check_structure(events: Any) -> tuple[list[int], list[str]]:
    """Validate the shape and sizes of a decoded ``logEvents`` value.

    Returns the timestamps and messages. Raises :class:`RuleViolation` for any whole-call failure.
    """
    if not isinstance(events, list) or not events:
        raise _validation_error("[]", "logEvents", "Member must have length greater than or equal to 1")
    if len(events) > MAX_BATCH_EVENTS:
        raise _validation_error(
            f"<{len(events)} events>", "logEvents",
            f"Member must have length less than or equal to {MAX_BATCH_EVENTS}",
        )
    try:  # in C (map, set): the endpoint's CPU shares the machine with the client it serves
        timestamps: list[int] = list(map(_timestamp_of, events))
        messages: list[str] = list(map(_message_of, events))
    except (KeyError, TypeError, IndexError):
        _raise_first_malformed(events)
        raise
    if not (set(map(type, timestamps)) <= _INT_ONLY and set(map(type, messages)) <= _STR_ONLY):
        _raise_first_malformed(events)
    if "".join(messages).isascii():
        sizes = list(map(len, messages))
    else:
        sizes = [message_bytes(message) for message in messages]
    if min(sizes) == 0:
        raise _validation_error(
            "", f"logEvents.{sizes.index(0) + 1}.member.message",
            "Member must have length greater than or equal to 1",
        )
    largest = max(sizes)
    if largest > MAX_EVENT_MESSAGE_BYTES:
        # AWS counts the event with its 26 bytes against the 1 MiB limit, and says so.
        raise RuleViolation(
            f"Log event too large: {largest + EVENT_OVERHEAD_BYTES} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )
    total = sum(sizes) + EVENT_OVERHEAD_BYTES * len(sizes)
    if total > MAX_BATCH_BYTES:
        raise RuleViolation(f"Upload too large: {total} bytes exceeds limit of {MAX_BATCH_BYTES}")
    return timestamps, messages


def _raise_first_malformed(events: list[Any]) -> None:
    """Raise for the first event that is not ``{"timestamp": int, "message": str}``."""
    for index, event in enumerate(events):
        where = f"logEvents.{index + 1}.member"
        if not isinstance(event, Mapping):
            raise RuleViolation(f"{where} must be an object", "SerializationException")
        timestamp = event.get("timestamp")
        if type(timestamp) is not int:
            raise _validation_error(str(timestamp), f"{where}.timestamp", "Member must be a long")
        message = event.get("message")
        if type(message) is not str:
            raise _validation_error(str(message), f"{where}.message", "Member must be a string")


def check_times(timestamps: Sequence[int], now_ms: int, retention_days: int | None = None) -> Verdict:
    """Apply the order, age/future and 24 h span rules to the timestamps of one call.

    Too-old events (> 14 days) form a prefix ``[0, too_old_end)``; expired events (older than the
    group's retention but not too old) follow up to ``expired_end`` (exclusive); too-new events
    (> 2 h ahead) are the suffix from ``too_new_start`` (inclusive).
    """
    previous = None
    for timestamp in timestamps:
        if previous is not None and timestamp < previous:
            raise RuleViolation(CHRONOLOGICAL_MESSAGE)
        previous = timestamp

    oldest_allowed = now_ms - MAX_AGE_MS
    retention_oldest = now_ms - retention_days * DAY_MS if retention_days else None
    newest_allowed = now_ms + MAX_FUTURE_MS
    count = len(timestamps)

    start = 0
    while start < count and timestamps[start] < oldest_allowed:
        start += 1
    too_old_end = start if start else None
    expired_end = None
    if retention_oldest is not None and retention_oldest > oldest_allowed:
        while start < count and timestamps[start] < retention_oldest:
            start += 1
        if start != (too_old_end or 0):
            expired_end = start
    end = count
    while end > start and timestamps[end - 1] > newest_allowed:
        end -= 1
    too_new_start = end if end < count else None

    if end > start and timestamps[end - 1] - timestamps[start] > MAX_BATCH_SPAN_MS:
        raise RuleViolation(SPAN_MESSAGE)
    return Verdict(start, end, too_new_start, too_old_end, expired_end)


def check_put_log_events(
    events: Any, now_ms: int, retention_days: int | None = None
) -> Verdict:
    """Both steps at once, for callers that already know the group's retention."""
    timestamps, _ = check_structure(events)
    return check_times(timestamps, now_ms, retention_days)
