"""Per-process counters of one budget: what an operator looks at to see a budget is too tight."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mwaa_logging.budgets.forksafe import after_fork_in_child


@dataclass(frozen=True, slots=True)
class BudgetStats:
    """A snapshot of one budget's counters in this process."""

    #: Which budget and scope answered (``process``, ``host``, ``fleet``, ``fleet->host``).
    scope: str
    #: Acquires granted at once.
    granted: int
    #: Acquires answered with a wait (the caller came back later): many means the budget is tight.
    waited: int
    #: Throttles reported by this process.
    throttles: int
    #: The rate in force at the last acquire (calls/s, ``inf``: unlimited).
    rate: float
    #: Times the fleet budget fell back to host scope (Redis failing for ``fallback_after`` s).
    fallbacks: int = 0


class Counters:
    """Thread-safe counters behind :class:`BudgetStats`."""

    def __init__(self, rate: float = float("inf")) -> None:
        """``rate``: what ``rate`` says until the first answer (the budget's ceiling)."""
        self._lock = threading.Lock()
        after_fork_in_child(self._after_fork)
        self.granted = 0
        self.waited = 0
        self.throttles = 0
        self.fallbacks = 0
        self.rate = rate

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it

    def count_acquire(self, wait: float, rate: float) -> None:
        with self._lock:
            if wait > 0.0:
                self.waited += 1
            else:
                self.granted += 1
            self.rate = rate

    def count_throttle(self, rate: float | None = None) -> None:
        with self._lock:
            self.throttles += 1
            if rate is not None:
                self.rate = rate

    def count_fallback(self) -> None:
        with self._lock:
            self.fallbacks += 1

    def snapshot(self, scope: str) -> BudgetStats:
        with self._lock:
            return BudgetStats(scope, self.granted, self.waited, self.throttles, self.rate, self.fallbacks)
