"""Retry state as an immutable value: capped exponential backoff with full jitter.

Computing a delay is separate from acting on it; the random source is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Returns a float in [0, 1); ``random.random`` in production, fixed values in tests.
Random = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """How many times a batch has failed in a row, and why (newest last)."""

    base: float = 0.2
    cap: float = 20.0
    attempts: int = 0
    history: tuple[str, ...] = ()

    def ceiling(self) -> float:
        """The largest delay the next retry may wait: ``min(cap, base * 2**(attempts-1))``."""
        if self.attempts <= 0:
            return 0.0
        return float(min(self.cap, self.base * (2 ** min(self.attempts - 1, 30))))

    def delay(self, random: Random) -> float:
        """Full jitter: uniform in [0, ceiling)."""
        return self.ceiling() * random()

    def failed(self, reason: str) -> Backoff:
        """A new state after one more failure (the history keeps the last 8 reasons)."""
        return Backoff(self.base, self.cap, self.attempts + 1, (*self.history[-7:], reason))

    def reset(self) -> Backoff:
        return Backoff(self.base, self.cap)
