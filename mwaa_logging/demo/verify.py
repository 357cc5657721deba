"""Read every task's stream back (CloudWatch + spill, split events made whole) and compare it, line by
line, with what the workload generated from the same seed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mwaa_logging.batching import cut_batches
from mwaa_logging.engine.delivery import MARKER_PREFIX
from mwaa_logging.events import make_event
from mwaa_logging.reader import ReadEvent, SpillLocation, drop_duplicates, read_stream, reassemble_events
from mwaa_logging.splitting import split_oversized


@dataclass
class TaskCheck:
    """The verdict on one task's stream."""

    task_id: str
    stream: str
    expected: int
    #: Lines found exactly as logged, and where they were found.
    arrived: int = 0
    in_cloudwatch: int = 0
    spilled: Counter[str] = field(default_factory=Counter)
    spill_objects: set[str] = field(default_factory=set)
    #: Extra copies read back (at-least-once delivery), removed by the reader.
    duplicates: int = 0
    #: Expected lines not found; ``truncated``: of those, lines found only cut short.
    lost: int = 0
    truncated: int = 0
    #: Messages found that the workload never logged (other than the library's spill markers).
    unexpected: int = 0
    markers: int = 0
    in_order: bool = True
    #: For lines found in CloudWatch: ingestion time - event time (ms), i.e. how long until it was visible.
    latencies_ms: list[int] = field(default_factory=list, repr=False)
    #: Fewest PutLogEvents calls that could carry this stream (every line at once, full batches).
    min_put_calls: int = 0
    #: 1 + the position (in logging order) of the last expected line found: the task logged at least that many.
    found_through: int = 0

    @property
    def spilled_total(self) -> int:
        return sum(self.spilled.values())

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.unexpected == 0


def minimum_put_calls(messages: Sequence[str]) -> int:
    """PutLogEvents calls needed if every message were sent at once in full batches (one stream)."""
    events = split_oversized([make_event(0, message, seq) for seq, message in enumerate(messages)])
    return len(cut_batches(events))


def check_stream(
    task_id: str,
    group: str,
    stream: str,
    expected: Sequence[str],
    *,
    logs_client: Any,
    spill_to: SpillLocation | Sequence[SpillLocation] | None = None,
    s3_client: Any = None,
) -> TaskCheck:
    """Read ``group``/``stream`` back and compare it with ``expected`` (the messages, in logging order)."""
    raw = list(read_stream(group, stream, logs_client=logs_client, spill_to=spill_to, s3_client=s3_client,
                           dedupe="off", reassemble=False, on_spill_error=_ignore_unreadable))
    check = TaskCheck(task_id, stream, len(expected), min_put_calls=minimum_put_calls(expected))
    check.duplicates = len(raw) - len({(e.timestamp, e.message) for e in raw})
    whole = [e for e in reassemble_events(drop_duplicates(raw, "exact")) if not _is_marker(e, check)]
    compare(check, expected, whole)
    return check


def _ignore_unreadable(location: str, error: Exception) -> None:
    """An unreadable spill location shows up as lost lines in the verdict; say which one."""
    print(f"warning: cannot read spill location {location}: {error}")


def _is_marker(event: ReadEvent, check: TaskCheck) -> bool:
    if event.message.startswith(MARKER_PREFIX):
        check.markers += 1
        return True
    return False


def compare(check: TaskCheck, expected: Sequence[str], found: Sequence[ReadEvent]) -> None:
    """Fill ``check`` from the lines ``found`` against ``expected`` (multiset and order)."""
    wanted = Counter(expected)
    missing = Counter(expected)
    positions: dict[str, list[int]] = {}
    for position in range(len(expected) - 1, -1, -1):  # each message's positions, first one last (popped first)
        positions.setdefault(expected[position], []).append(position)
    matched: list[str] = []
    strays: list[str] = []
    for event in found:
        if missing[event.message] > 0:
            missing[event.message] -= 1
            matched.append(event.message)
            check.found_through = max(check.found_through, positions[event.message].pop() + 1)
            if event.spilled:
                check.spilled[event.reason or "unknown"] += 1
                check.spill_objects.add(event.source)
            else:
                check.in_cloudwatch += 1
                if event.ingestion_time is not None:
                    check.latencies_ms.append(event.ingestion_time - event.timestamp)
        else:
            strays.append(event.message)
    check.arrived = len(matched)
    check.lost = sum(missing.values())
    lost_lines = [message for message, n in missing.items() if n > 0]
    for stray in strays:
        if any(len(stray) < len(line) and line.startswith(stray) for line in lost_lines):
            check.truncated += 1
        elif wanted[stray] > 0:
            check.duplicates += 1  # a copy with another timestamp
        else:
            check.unexpected += 1
    if check.lost:
        arrived = set(matched)
        check.in_order = matched == [m for m in expected if m in arrived]
    else:
        check.in_order = matched == list(expected)
