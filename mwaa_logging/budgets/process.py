"""``process`` scope: one budget in memory, shared by the threads of this process."""

from __future__ import annotations

import threading

from mwaa_logging import budget
from mwaa_logging.budget import BudgetConfig, BudgetState
from mwaa_logging.budgets.forksafe import after_fork_in_child
from mwaa_logging.budgets.stats import BudgetStats, Counters


class ProcessBudget:
    """Token bucket with adaptive rate, in memory. Thread-safe, never blocks beyond a short lock."""

    scope = "process"

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._state = BudgetState()
        self._lock = threading.Lock()
        self._counters = Counters(config.ceiling)
        after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it

    def acquire(self, now: float, tokens: float = 1.0) -> float:
        with self._lock:
            decision = budget.acquire(self.config, self._state, now, tokens)
            self._state = decision.state
        self._counters.count_acquire(decision.wait, decision.rate)
        return decision.wait

    def on_throttled(self, now: float) -> None:
        with self._lock:
            self._state = budget.throttled(self.config, self._state, now)
            rate = budget.current_rate(self.config, self._state, now)
        self._counters.count_throttle(rate)

    def drain(self, now: float) -> None:
        """Empty the bucket (see :func:`mwaa_logging.budget.drained`)."""
        with self._lock:
            self._state = budget.drained(self.config, self._state, now)

    def on_success(self, now: float) -> None:
        """Nothing to do: recovery is a function of the time since the last throttle."""

    def rate(self, now: float) -> float:
        """The rate in force at ``now`` (``inf``: unlimited)."""
        with self._lock:
            return budget.current_rate(self.config, self._state, now)

    def stats(self) -> BudgetStats:
        return self._counters.snapshot(self.scope)
