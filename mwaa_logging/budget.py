"""Token bucket with an adaptive (CUBIC) rate: the pure arithmetic behind every rate budget.

No I/O and no clock: every function takes ``now`` (seconds) and returns a new immutable
:class:`BudgetState`. The same arithmetic runs in memory (``budgets/process``), in a shared memory
file (``budgets/host``) and, mirrored in Lua, inside Redis (``budgets/redis``).

Rate model:

* ``rate`` (calls/s) is the ceiling. ``None`` means no configured limit: the budget grants
  everything until the first throttle, then learns a rate, like botocore's ``adaptive`` mode.
* On a throttle the rate drops to ``beta`` x the rate actually in use (measured over the whole
  scope), the bucket is drained, and the rate then recovers along a CUBIC curve
  ``scale * (t - k)**3 + w_max`` (``k`` is when it regains ``w_max``), up to the ceiling.
* With no ceiling the curve alone is no evidence (it outgrows any quota within seconds while little
  is sent), so during an episode the rate is also held to ``measured_headroom`` x the rate actually
  granted, never below ``beta`` x ``w_max`` (botocore caps its rate the same way): what was pending
  after a quiet spell (a task's final flush) goes out at about the learned rate, not all at once. The
  episode ends (unlimited again) ``converge_window`` s after its last throttle if the scope is sending
  ``unlimited_after`` x ``w_max`` by then with the curve there too (the limit has gone), else
  ``forget_after`` s after it.
* Throttles closer than ``throttle_cooldown`` to the last counted one are the same episode (the
  in-flight calls of every participant come back throttled together) and lower the rate once.
* The bucket holds ``burst`` tokens at the ceiling; its capacity shrinks with the adaptive rate
  so a lowered rate does not come with a full-size burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

#: Grant when the bucket lacks less than this (float rounding of ``tokens + wait * rate``).
EPSILON: Final = 1e-9
UNLIMITED: Final = math.inf


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """How one budget behaves. Every participant of a shared budget should use the same values."""

    #: Ceiling in tokens (calls) per second; ``None``: unlimited until throttled.
    rate: float | None = None
    #: Tokens the bucket holds at the ceiling; default one second of ``rate`` (at least 1).
    burst: float | None = None
    #: Multiplicative decrease on throttle (botocore: 0.7).
    beta: float = 0.7
    #: CUBIC scale constant in calls/s per s**3 (botocore: 0.4).
    scale: float = 0.4
    #: The adaptive rate never drops below this (nor below ``rate``, when that is lower: see :attr:`floor`).
    min_rate: float = 1.0
    #: Throttles within this many seconds of the last counted one lower the rate only once.
    throttle_cooldown: float = 1.0
    #: Time constant (s) of the exponentially weighted measured rate.
    measure_window: float = 1.0
    #: With no ceiling, the episode ends (unlimited again) ``converge_window`` after its last throttle
    #: if the measured rate and the curve are both this x ``w_max``.
    unlimited_after: float = 2.0
    #: With no ceiling, during an episode the rate is at most this x the measured rate (botocore: 2).
    measured_headroom: float = 2.0
    #: With no ceiling, an episode this many seconds after its last throttle is over: unlimited again.
    forget_after: float = 60.0
    #: A ``now`` this far behind the state's latest time means another clock (a reboot, a stepped
    #: server clock): the state is dropped rather than waiting for the new clock to catch up.
    clock_jump: float = 1.0
    #: A throttle within this many seconds of the previous one means the learned ``w_max`` was too high:
    #: it is taken at ``(1 + beta) / 2`` of the rate in use (CUBIC's fast convergence).
    converge_window: float = 10.0

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be > 0 or None, got {self.rate!r}")
        if self.burst is not None and not self.burst >= 1:
            raise ValueError(f"burst must be >= 1 or None, got {self.burst!r}")
        if not 0 < self.beta < 1:
            raise ValueError(f"beta must be in (0, 1), got {self.beta!r}")
        if not self.scale > 0 or not self.min_rate > 0 or not self.measure_window > 0:
            raise ValueError("scale, min_rate and measure_window must be > 0")
        if not self.throttle_cooldown >= 0 or not self.unlimited_after > 1 or not self.clock_jump > 0:
            raise ValueError("throttle_cooldown must be >= 0, unlimited_after > 1 and clock_jump > 0")
        if not self.measured_headroom > 1 or not self.forget_after > 0:
            raise ValueError("measured_headroom must be > 1 and forget_after > 0")

    @property
    def ceiling(self) -> float:
        """The configured rate, or infinity."""
        return UNLIMITED if self.rate is None else float(self.rate)

    @property
    def floor(self) -> float:
        """The lowest adaptive rate: ``min_rate``, or the ceiling when that is lower (a configured rate
        below 1 call/s is never lifted to ``min_rate`` by a throttle)."""
        return min(self.min_rate, self.ceiling)


def _number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def config_tag(config: BudgetConfig) -> str:
    """What a shared budget's file or key says of its configuration (``rate100-burst100``, ``unlimited``):
    participants configured with another rate or burst take from a bucket of their own, each at its own limit
    (one bucket for all gave its rate to whoever took first). A default burst is written as its value."""
    if config.rate is None:
        return "unlimited" if config.burst is None else f"unlimited-burst{_number(config.burst)}"
    burst = config.burst if config.burst is not None else max(1.0, config.rate)
    return f"rate{_number(config.rate)}-burst{_number(burst)}"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Everything a budget remembers; plain floats so it fits a struct and a Redis hash."""

    #: Tokens in the bucket at ``updated`` (negative: debt of an oversized acquire).
    tokens: float = 0.0
    #: When ``tokens`` was last brought up to date; ``-inf``: never used (bucket starts full).
    updated: float = -math.inf
    #: Rate in use at the last counted throttle; 0: no throttle episode.
    w_max: float = 0.0
    #: When the last counted throttle arrived.
    throttled_at: float = -math.inf
    #: Exponentially weighted granted tokens per second, as of ``measured_at``.
    measured: float = 0.0
    measured_at: float = -math.inf


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one acquire."""

    state: BudgetState
    #: 0.0 when granted, else seconds until the tokens will be there.
    wait: float
    #: The rate in force (``inf``: unlimited).
    rate: float


def cubic_zero_point(config: BudgetConfig, w_max: float) -> float:
    """Seconds after a throttle at which the CUBIC curve is back at ``w_max``."""
    return math.pow(w_max * (1.0 - config.beta) / config.scale, 1.0 / 3.0)


def current_rate(config: BudgetConfig, state: BudgetState, now: float) -> float:
    """The rate in force at ``now``: the CUBIC recovery curve capped by the ceiling, or with no ceiling
    by ``measured_headroom`` x the measured rate until the episode ends."""
    if state.w_max <= 0.0:
        return config.ceiling
    elapsed = max(0.0, now - state.throttled_at)
    offset = elapsed - cubic_zero_point(config, state.w_max)
    curve = config.scale * offset * offset * offset + state.w_max  # as in the Lua twin
    if config.rate is not None:
        return max(config.floor, min(config.ceiling, curve))
    if episode_over(config, state, now, curve):
        return UNLIMITED
    proven = max(config.beta * state.w_max, config.measured_headroom * measured_rate(config, state, now))
    return max(config.min_rate, min(curve, proven))


def episode_over(config: BudgetConfig, state: BudgetState, now: float, curve: float) -> bool:
    """With no ceiling: ``converge_window`` s without a throttle, with the scope sending ``unlimited_after`` x
    ``w_max`` and the curve there too (the limit has gone), or ``forget_after`` s without a throttle."""
    quiet = now - state.throttled_at
    if quiet >= config.forget_after:
        return True
    target = config.unlimited_after * state.w_max
    return quiet >= config.converge_window and curve >= target and measured_rate(config, state, now) >= target


def capacity(config: BudgetConfig, rate: float) -> float:
    """Bucket size at ``rate``: ``burst`` at the ceiling, scaled down with the rate, at least 1."""
    if config.rate is not None:
        burst = config.burst if config.burst is not None else max(1.0, config.rate)
        return max(1.0, burst * min(rate, config.rate) / config.rate)
    one_second = max(1.0, rate)
    return one_second if config.burst is None else min(config.burst, one_second)


def measured_rate(config: BudgetConfig, state: BudgetState, now: float) -> float:
    """The weighted rate of granted tokens, decayed to ``now``."""
    if state.measured <= 0.0:
        return 0.0
    elapsed = max(0.0, now - state.measured_at)
    return state.measured * math.exp(-elapsed / config.measure_window)


def _record_grant(config: BudgetConfig, state: BudgetState, now: float, tokens: float) -> BudgetState:
    measured = measured_rate(config, state, now) + tokens / config.measure_window
    return replace(state, measured=measured, measured_at=max(now, state.measured_at))


def same_clock(config: BudgetConfig, state: BudgetState, now: float) -> BudgetState:
    """``state``, or a fresh one when ``now`` is more than ``clock_jump`` behind it (another clock).

    A slightly older ``now`` is normal (another process read the clock before taking the lock).
    """
    latest = max(state.updated, state.throttled_at, state.measured_at)
    return BudgetState() if now < latest - config.clock_jump else state


def _refilled(state: BudgetState, now: float, rate: float, size: float) -> float:
    """Tokens at ``now``: a full bucket on first use, else refilled at ``rate`` up to ``size``."""
    if state.updated == -math.inf:
        return size
    return min(size, state.tokens + max(0.0, now - state.updated) * rate)


def acquire(config: BudgetConfig, state: BudgetState, now: float, tokens: float = 1.0) -> Decision:
    """Take ``tokens`` if the bucket has them (wait 0.0), else take nothing and say how long to wait.

    A request larger than the bucket is granted when the bucket is full and leaves a debt, so
    the long-run rate holds for any size.
    """
    if not tokens > 0:
        raise ValueError(f"tokens must be > 0, got {tokens!r}")
    state = same_clock(config, state, now)
    rate = current_rate(config, state, now)
    if rate == UNLIMITED:
        if state.w_max > 0.0:  # the episode is over: it stays over when the measured rate dips again
            state = replace(state, w_max=0.0)
        return Decision(_record_grant(config, state, now, tokens), 0.0, rate)
    size = capacity(config, rate)
    level = _refilled(state, now, rate, size)
    needed = min(tokens, size)
    # Callers in other processes may arrive with a slightly older ``now``: time never runs back.
    stamp = max(now, state.updated)
    if level + EPSILON >= needed:
        granted = replace(state, tokens=level - tokens, updated=stamp)
        return Decision(_record_grant(config, granted, now, tokens), 0.0, rate)
    return Decision(replace(state, tokens=level, updated=stamp), (needed - level) / rate, rate)


def throttled(config: BudgetConfig, state: BudgetState, now: float) -> BudgetState:
    """A ThrottlingException arrived: lower the rate to ``beta`` x the rate in use, drain the bucket.

    Within ``throttle_cooldown`` of the last counted throttle (same episode) the rate is not lowered
    again; with no ceiling, each such call lowers ``w_max`` by the one call it added to the measured
    rate: it did not get through, so the rate that did was lower (a burst of 16 calls of which 4 fit
    learns about 4/s, not 16).
    """
    state = same_clock(config, state, now)
    if state.w_max > 0.0 and now - state.throttled_at < config.throttle_cooldown:
        if config.rate is not None:
            return state
        return replace(state, w_max=max(config.min_rate, state.w_max - 1.0 / config.measure_window))
    rate = current_rate(config, state, now)
    in_use = measured_rate(config, state, now)
    w = in_use if rate == UNLIMITED else min(in_use, rate)
    if state.w_max > 0.0 and now - state.throttled_at < config.converge_window:
        w *= (1.0 + config.beta) / 2.0  # throttled again soon after the last time: settle lower
    w_max = max(config.floor, w)
    tokens = 0.0 if rate == UNLIMITED else min(0.0, _refilled(state, now, rate, capacity(config, rate)))
    stamp = max(now, state.updated)
    return replace(state, tokens=tokens, updated=stamp, w_max=w_max, throttled_at=now)


def drained(config: BudgetConfig, state: BudgetState, now: float) -> BudgetState:
    """The bucket emptied at ``now`` (a debt stays): the rate in force goes on, with no burst.

    A fleet budget's host fallback, full after a spell unused, would add its whole burst to what the fleet's
    bucket granted just before Redis failed; it is drained when a process starts using it.
    """
    state = same_clock(config, state, now)
    rate = current_rate(config, state, now)
    if rate == UNLIMITED:
        return state
    level = _refilled(state, now, rate, capacity(config, rate))
    return replace(state, tokens=min(0.0, level), updated=max(now, state.updated))
