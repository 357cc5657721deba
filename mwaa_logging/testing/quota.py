"""Account-wide API quotas of the local endpoint: one token bucket per API, shared by every client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from mwaa_logging.limits import CREATE_LOG_GROUP_TPS, CREATE_LOG_STREAM_TPS

#: Quotas applied by ``create_quotas=True`` (AWS defaults, per account and Region).
CREATE_QUOTAS: Mapping[str, float] = {
    "CreateLogStream": CREATE_LOG_STREAM_TPS,
    "CreateLogGroup": CREATE_LOG_GROUP_TPS,
}


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one second of rate, >= 1)."""

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last = now

    def try_take(self, now: float) -> bool:
        """Take one token if there is one."""
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Quotas:
    """Per-API token buckets; an API without a bucket is never throttled."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def set(self, api: str, tps: float | None) -> None:
        """Set (or with None remove) the quota of ``api`` in calls per second."""
        with self._lock:
            if tps is None:
                self._buckets.pop(api, None)
            else:
                self._buckets[api] = TokenBucket(tps, self._clock())

    def limits(self) -> dict[str, float]:
        with self._lock:
            return {api: bucket.rate for api, bucket in self._buckets.items()}

    def admit(self, api: str) -> bool:
        """True if a call of ``api`` is within quota (and counts against it)."""
        with self._lock:
            bucket = self._buckets.get(api)
            return bucket is None or bucket.try_take(self._clock())
