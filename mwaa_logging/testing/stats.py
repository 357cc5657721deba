"""What the local endpoint saw: calls per API, throttles, faults, events, bytes, PutLogEvents rate."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Stats:
    """A snapshot of the endpoint's counters (see :meth:`StatsRecorder.snapshot`)."""

    #: Requests received per API name (``PutLogEvents``, ``CreateLogStream``, ``s3:PUT``...).
    calls: dict[str, int] = field(default_factory=dict)
    #: ThrottlingException answers (quota + injected), and the quota share of them.
    throttled: int = 0
    throttled_by_quota: int = 0
    #: PutLogEvents calls refused as a whole for breaking a rule (our library must never get one).
    invalid: int = 0
    #: The error of the last such call, to say why.
    last_invalid: str = ""
    #: ResourceNotFoundException answers to PutLogEvents.
    not_found: int = 0
    #: Injected faults that happened.
    unavailable: int = 0
    dropped: int = 0
    lost_replies: int = 0
    hung: int = 0
    denied: int = 0
    delayed: int = 0
    #: PutLogEvents calls that stored events, events stored, events rejected in a 200 answer.
    puts_ok: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    #: Request body bytes as received on the wire (compressed size for gzip bodies).
    bytes_received: int = 0
    gzip_bodies: int = 0
    plain_bodies: int = 0
    #: TCP connections accepted (clients keep them alive between calls, as with AWS).
    connections: int = 0
    #: Most PutLogEvents calls received within any 1 s window.
    put_peak_1s: int = 0
    #: PutLogEvents calls received in each second since the server started.
    put_timeline: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


_COUNTERS = tuple(
    f.name for f in fields(Stats) if f.name not in ("calls", "last_invalid", "put_peak_1s", "put_timeline")
)


class StatsRecorder:
    """Thread-safe counters behind :class:`Stats`; ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._start = self._clock()
            self._calls: Counter[str] = Counter()
            self._counters: Counter[str] = Counter()
            self._recent_puts: deque[float] = deque()
            self._peak = 0
            self._timeline: list[int] = []
            self._last_invalid = ""

    def call(self, api: str) -> None:
        """Count one received request of ``api`` (PutLogEvents also feeds the rate figures)."""
        with self._lock:
            self._calls[api] += 1
            if api != "PutLogEvents":
                return
            now = self._clock()
            recent = self._recent_puts
            recent.append(now)
            while recent[0] <= now - 1.0:
                recent.popleft()
            self._peak = max(self._peak, len(recent))
            second = int(now - self._start)
            timeline = self._timeline
            if second >= len(timeline):
                timeline.extend([0] * (second + 1 - len(timeline)))
            timeline[second] += 1

    def add(self, counter: str, amount: int = 1) -> None:
        if counter not in _COUNTERS:
            raise KeyError(counter)
        with self._lock:
            self._counters[counter] += amount

    def invalid(self, error: str) -> None:
        """Count a call refused as a whole, remembering why."""
        with self._lock:
            self._counters["invalid"] += 1
            self._last_invalid = error

    def snapshot(self) -> Stats:
        with self._lock:
            return Stats(
                calls=dict(self._calls),
                put_peak_1s=self._peak,
                put_timeline=list(self._timeline),
                last_invalid=self._last_invalid,
                **{name: self._counters[name] for name in _COUNTERS},
            )
