"""Token bucket and CUBIC arithmetic on a fake clock; numbers checked by hand in the comments."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mwaa_logging import budget
from mwaa_logging.budget import BudgetConfig, BudgetState, acquire, current_rate, throttled
from mwaa_logging.budgets.factory import build_budget
from mwaa_logging.budgets.process import ProcessBudget
from mwaa_logging.protocols import Budget


def take(config: BudgetConfig, state: BudgetState, now: float, times: int) -> BudgetState:
    """Acquire one token ``times`` at ``now``; each must be granted."""
    for _ in range(times):
        decision = acquire(config, state, now)
        assert decision.wait == 0.0
        state = decision.state
    return state


# --- token bucket -------------------------------------------------------------------------------


def test_fresh_bucket_grants_the_burst_then_one_token_per_interval() -> None:
    config = BudgetConfig(rate=10, burst=5)
    state = take(config, BudgetState(), 0.0, 5)
    denied = acquire(config, state, 0.0)
    assert denied.wait == pytest.approx(0.1)  # 1 token / 10 per s
    assert acquire(config, denied.state, 0.05).wait == pytest.approx(0.05)  # half a token refilled
    assert acquire(config, denied.state, 0.1).wait == 0.0


def test_a_denied_acquire_takes_nothing() -> None:
    config = BudgetConfig(rate=10, burst=5)
    state = take(config, BudgetState(), 0.0, 5)
    for _ in range(3):
        decision = acquire(config, state, 0.02)
        assert decision.wait == pytest.approx(0.08)
        state = decision.state
    assert state.tokens == pytest.approx(0.2)


def test_a_caller_with_an_older_clock_reading_does_not_refill_time_twice() -> None:
    config = BudgetConfig(rate=10, burst=1)
    state = take(config, BudgetState(), 1.0, 1)
    stale = acquire(config, state, 0.5)  # another process read the clock earlier, got the lock later
    assert stale.wait == pytest.approx(0.1)
    assert stale.state.updated == 1.0
    assert acquire(config, stale.state, 1.05).wait == pytest.approx(0.05)  # not 0.045


def test_a_clock_far_behind_the_state_starts_a_fresh_bucket() -> None:
    config = BudgetConfig(rate=10, burst=2)
    state = take(config, BudgetState(), 5000.0, 2)  # written before a reboot, uptime 5000 s
    assert acquire(config, state, 0.5).wait == 0.0  # not "no refill until the clock reaches 5000"
    assert acquire(config, state, 4999.5).wait == pytest.approx(0.1)  # within clock_jump: same clock
    throttled_then = throttled(config, state, 5000.0)
    assert throttled(config, throttled_then, 3.0).w_max == 1.0  # a throttle on the new clock counts


def test_refill_stops_at_the_burst() -> None:
    config = BudgetConfig(rate=10, burst=5)
    state = take(config, BudgetState(), 0.0, 5)
    state = take(config, state, 100.0, 5)  # 1,000 tokens' worth of idle time, 5 kept
    assert acquire(config, state, 100.0).wait == pytest.approx(0.1)


def test_burst_defaults_to_one_second_of_rate() -> None:
    config = BudgetConfig(rate=4)
    state = take(config, BudgetState(), 0.0, 4)
    assert acquire(config, state, 0.0).wait == pytest.approx(0.25)
    assert budget.capacity(BudgetConfig(rate=0.2), 0.2) == 1.0  # at least one whole call


def test_an_oversized_request_is_granted_on_a_full_bucket_and_leaves_a_debt() -> None:
    config = BudgetConfig(rate=10, burst=5)
    decision = acquire(config, BudgetState(), 0.0, tokens=12)
    assert decision.wait == 0.0
    assert decision.state.tokens == -7.0
    assert acquire(config, decision.state, 0.0).wait == pytest.approx(0.8)  # (1 - -7) / 10


def test_unlimited_budget_grants_everything_and_measures_the_rate() -> None:
    config = BudgetConfig()
    state = take(config, BudgetState(), 0.0, 1000)
    assert budget.measured_rate(config, state, 0.0) == pytest.approx(1000.0)  # 1000 tokens / 1 s window
    assert budget.measured_rate(config, state, 1.0) == pytest.approx(1000.0 / math.e)


# --- adaptive rate ------------------------------------------------------------------------------


def test_throttle_with_a_ceiling_drops_to_beta_and_recovers_along_the_cubic() -> None:
    config = BudgetConfig(rate=10, burst=10)
    state = take(config, BudgetState(), 0.0, 10)  # measured rate: 10/s
    state = throttled(config, state, 0.0)
    # w_max = min(measured 10, rate 10) = 10; k = cbrt(10 * 0.3 / 0.4) = cbrt(7.5) = 1.9574 s
    assert state.w_max == pytest.approx(10.0)
    assert budget.cubic_zero_point(config, 10.0) == pytest.approx(1.957434, abs=1e-6)
    assert current_rate(config, state, 0.0) == pytest.approx(7.0)  # 0.7 x 10
    # t = 0.5: 0.4 x (0.5 - 1.957434)^3 + 10 = 0.4 x -3.095754 + 10 = 8.761698
    assert current_rate(config, state, 0.5) == pytest.approx(8.761698, abs=1e-6)
    assert current_rate(config, state, 1.9574338) == pytest.approx(10.0)
    assert current_rate(config, state, 60.0) == 10.0  # capped by the ceiling
    # The bucket is drained and shrinks with the rate: capacity 10 x 7/10 = 7, next token in 1/7 s.
    assert budget.capacity(config, 7.0) == pytest.approx(7.0)
    assert acquire(config, state, 0.0).wait == pytest.approx(1 / 7)


def test_throttles_within_the_cooldown_lower_the_rate_once() -> None:
    config = BudgetConfig(rate=10, burst=10)
    state = throttled(config, take(config, BudgetState(), 0.0, 10), 0.0)
    assert throttled(config, state, 0.5) == state
    # At t = 1.0 it counts: min(measured 10/e = 3.6788, rate 9.6489) = 3.6788; a second throttle within
    # converge_window settles lower: w_max = 3.6788 x (1 + 0.7) / 2 = 3.1270, rate 0.7 x that.
    later = throttled(config, state, 1.0)
    assert later.w_max == pytest.approx(10 / math.e * 0.85)
    assert current_rate(config, later, 1.0) == pytest.approx(0.7 * 0.85 * 10 / math.e)
    # Outside the window a throttle is a new episode: no extra reduction.
    fresh = throttled(config, state, 1.0 + config.converge_window)
    assert fresh.w_max == pytest.approx(max(config.min_rate, budget.measured_rate(config, state, 11.0)))


def test_without_a_ceiling_the_first_throttle_learns_the_rate_and_recovery_ends_unlimited() -> None:
    config = BudgetConfig()
    state = throttled(config, take(config, BudgetState(), 0.0, 100), 0.0)
    assert state.w_max == pytest.approx(100.0)
    assert current_rate(config, state, 0.0) == pytest.approx(70.0)
    assert budget.capacity(config, 70.0) == pytest.approx(70.0)  # one second of rate
    assert acquire(config, state, 0.0).wait == pytest.approx(1 / 70)
    # Unlimited again when 0.4 (t - k)^3 >= 100, k = cbrt(75) = 4.2172: t >= 4.2172 + cbrt(250) = 10.5168
    assert current_rate(config, state, 10.5) == pytest.approx(199.2036, abs=1e-4)
    assert current_rate(config, state, 10.52) == math.inf
    assert acquire(config, state, 10.52).wait == 0.0


def simulate(quota: float, callers: int, latency: float, until: float) -> list[tuple[float, bool]]:
    """Callers sharing one budget against a server that throttles above ``quota`` calls/s (1 s burst).

    Each caller acquires, sends, and reports the answer ``latency`` s later; returns (send time, ok).
    """
    config, state = BudgetConfig(), BudgetState()
    server_tokens, server_time = quota, 0.0
    calls: list[tuple[float, bool]] = []
    events = [(0.0, "try", caller) for caller in range(callers)]
    while events:
        events.sort(reverse=True)
        now, kind, caller = events.pop()
        if now > until:
            break
        if kind == "throttled":
            state = throttled(config, state, now)
        if kind != "try":
            events.append((now, "try", caller))
            continue
        decision = acquire(config, state, now)
        state = decision.state
        if decision.wait > 0:
            events.append((now + decision.wait, "try", caller))
            continue
        server_tokens, server_time = min(quota, server_tokens + (now - server_time) * quota), now
        ok = server_tokens >= 1
        server_tokens -= ok
        calls.append((now, ok))
        events.append((now + latency, "ok" if ok else "throttled", caller))
    return calls


def test_an_unknown_quota_is_learned_quickly_and_used_well() -> None:
    # 20 callers x 50 ms calls offer 400 calls/s against a quota of 100/s nobody configured.
    calls = simulate(quota=100.0, callers=20, latency=0.05, until=30.0)
    first_throttle = next(t for t, ok in calls if not ok)
    assert first_throttle < 1.0
    settled = [ok for t, ok in calls if first_throttle + 2.0 <= t < 30.0]
    span = 30.0 - first_throttle - 2.0
    assert 1 - sum(settled) / len(settled) <= 0.02  # throttled calls (target: <= 10 % within 10 s)
    assert sum(settled) / span >= 0.9 * 100.0  # goodput (target: >= 90 % of the quota)


def test_a_throttle_with_nothing_sent_falls_to_the_minimum_rate() -> None:
    config = BudgetConfig(min_rate=1.0)
    state = throttled(config, BudgetState(), 5.0)
    assert current_rate(config, state, 5.0) == 1.0  # max(min_rate, 0.7 x 1)


def test_config_is_validated() -> None:
    for bad in ({"rate": 0}, {"burst": 0.5}, {"beta": 1.0}, {"unlimited_after": 1.0}):
        with pytest.raises(ValueError):
            BudgetConfig(**bad)
    with pytest.raises(ValueError):
        acquire(BudgetConfig(), BudgetState(), 0.0, tokens=0)


# --- invariants ---------------------------------------------------------------------------------

steps = st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.1, 5.0)), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 500.0), burst=st.floats(5.0, 50.0), steps=steps)
def test_granted_tokens_never_exceed_burst_plus_rate_times_elapsed(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    config = BudgetConfig(rate=rate, burst=burst)
    state, now, granted = BudgetState(), 0.0, 0.0
    for delay, tokens in steps:
        now += delay
        decision = acquire(config, state, now, tokens)
        state = decision.state
        if decision.wait == 0.0:
            granted += tokens
        else:  # the promised wait is enough, and not more than needed
            assert acquire(config, state, now + decision.wait, tokens).wait == 0.0
    assert granted <= burst + rate * now + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    ceiling=st.one_of(st.none(), st.floats(1.0, 5000.0)),
    events=st.lists(st.tuples(st.floats(0.0, 3.0), st.booleans()), min_size=1, max_size=100),
)
def test_adaptive_rate_stays_between_min_rate_and_ceiling(
    ceiling: float | None, events: list[tuple[float, bool]]
) -> None:
    config = BudgetConfig(rate=ceiling)
    state, now = BudgetState(), 0.0
    for delay, throttle in events:
        now += delay
        state = throttled(config, state, now) if throttle else acquire(config, state, now).state
        rate = current_rate(config, state, now)
        assert config.min_rate <= rate <= config.ceiling
        assert budget.capacity(config, rate) >= 1.0


# --- process scope ------------------------------------------------------------------------------


def test_process_budget_is_a_budget_and_threads_never_share_a_token() -> None:
    shared = ProcessBudget(BudgetConfig(rate=1, burst=50))
    assert isinstance(shared, Budget)
    grants: list[int] = []

    def hammer() -> None:
        grants.append(sum(shared.acquire(0.0) == 0.0 for _ in range(200)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sum(grants) == 50  # exactly the burst at a frozen clock
    stats = shared.stats()
    assert (stats.granted, stats.waited) == (50, 8 * 200 - 50)


def test_process_budget_throttle_lowers_its_rate() -> None:
    shared = ProcessBudget(BudgetConfig(rate=100))
    for _ in range(100):
        shared.acquire(0.0)
    shared.on_throttled(0.0)
    shared.on_success(0.1)
    assert shared.rate(0.0) == pytest.approx(70.0)
    assert shared.stats().throttles == 1


def test_a_child_forked_while_a_thread_holds_the_lock_can_still_acquire() -> None:
    import multiprocessing

    shared = ProcessBudget(BudgetConfig(rate=10, burst=2))
    fork = multiprocessing.get_context("fork")
    answers = fork.Queue()
    with shared._lock:  # as if another thread were inside acquire at the moment of fork
        child = fork.Process(target=lambda: answers.put([shared.acquire(0.0) for _ in range(3)]))
        child.start()
    try:
        assert answers.get(timeout=5) == [0.0, 0.0, pytest.approx(0.1)]
    finally:
        child.join(timeout=5)
        child.kill()
    assert child.exitcode == 0


def test_the_factory_refuses_a_bad_redis_url_without_showing_its_password() -> None:
    with pytest.raises(ValueError, match="rate_limit_scope") as raised:
        build_budget("rediss://user:secret@cache:6380/abc", rate=1, burst=None)
    assert "user:***@cache" in str(raised.value) and "secret" not in str(raised.value)
    assert "/<database number>" in str(raised.value)
