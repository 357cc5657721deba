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


def test_without_a_ceiling_the_calls_throttled_with_the_first_are_taken_off_the_learned_rate() -> None:
    # 16 tasks send their first batch together against a quota of 4/s with a burst of 4: 12 come back throttled.
    # Learning 16/s from the first answer alone held the rate near 11/s, and the next rounds were throttled too.
    config = BudgetConfig()
    state = take(config, BudgetState(), 0.0, 16)
    for answer in range(12):
        state = throttled(config, state, 0.05 + answer * 0.001)
    assert state.throttled_at == 0.05  # one episode: the first answer counted, the others in its cooldown
    learned = 16.0 * math.exp(-0.05) - 11.0  # measured at the first answer, less the 11 that followed: 4.22
    assert state.w_max == pytest.approx(learned)
    assert current_rate(config, state, 0.05) == pytest.approx(0.7 * learned)  # the curve starts at beta x w_max
    with_ceiling = BudgetConfig(rate=100)
    state = throttled(with_ceiling, take(with_ceiling, BudgetState(), 0.0, 16), 0.05)
    assert throttled(with_ceiling, state, 0.06) == state  # a ceiling's episode is lowered once, as before


def test_without_a_ceiling_the_first_throttle_learns_the_rate() -> None:
    config = BudgetConfig()
    state = throttled(config, take(config, BudgetState(), 0.0, 100), 0.0)
    assert state.w_max == pytest.approx(100.0)
    assert current_rate(config, state, 0.0) == pytest.approx(70.0)
    assert budget.capacity(config, 70.0) == pytest.approx(70.0)  # one second of rate
    assert acquire(config, state, 0.0).wait == pytest.approx(1 / 70)
    # k = cbrt(75) = 4.2172 s; at t = 5, 0.4 x 0.7828^3 + 100 = 100.19, capped by 2 x the measured rate
    # (100 / e^5 = 0.67/s): the floor, 0.7 x w_max
    assert current_rate(config, state, 5.0) == pytest.approx(70.0)


def test_without_a_ceiling_a_quiet_spell_does_not_end_the_episode() -> None:
    # The curve passes 2 x w_max at t = 4.2172 + cbrt(250) = 10.5168 s, while nothing is sent. It used to mean
    # unlimited, and a task's final flush went out at once: throttled calls for everyone on the account.
    config = BudgetConfig()
    state = throttled(config, take(config, BudgetState(), 0.0, 100), 0.0)
    assert current_rate(config, state, 10.52) == pytest.approx(70.0)
    granted, now = 0, 20.0
    while now < 21.0:  # a flush after the quiet spell: as fast as the budget allows for one second
        decision = acquire(config, state, now)
        state = decision.state
        granted += decision.wait == 0.0
        now += decision.wait or 1e-4
    # 70 from the refilled bucket, then 2 x the measured rate m, which grows as dm/dt = 2m - m: 70 e^t, so
    # 70 + 140 (e - 1) ~ 310 in all (unlimited: all 10,000 tries)
    assert 280 <= granted <= 330


def send_flat_out(config: BudgetConfig, state: BudgetState, start: float, end: float) -> tuple[BudgetState, float]:
    """Acquire as fast as the budget allows from ``start`` until ``end`` or until it is unlimited."""
    now = start
    while now < end and current_rate(config, state, now) != math.inf:
        decision = acquire(config, state, now)
        state = decision.state
        now += decision.wait or 1e-3
    return state, now


def test_without_a_ceiling_the_episode_ends_after_a_quiet_spell_at_twice_w_max_and_stays_over() -> None:
    config = BudgetConfig()
    state = throttled(config, take(config, BudgetState(), 0.0, 100), 0.0)
    # Sending flat out from t = 6: 2 x the measured rate doubles about every 0.7 s, but the curve (177/s at
    # t = 10) caps it, and the episode lasts at least converge_window (10 s) after the throttle (a quota raised
    # from 2 to 10/s saw its backlog go out at once when it ended sooner)
    state, now = send_flat_out(config, state, 6.0, 10.0)
    assert now >= 10.0 and current_rate(config, state, now) < 200.0
    # unlimited once the scope has sent 2 x w_max for a while: the curve passes 200/s at t = 10.52, the measured
    # rate follows it about a second later
    state, now = send_flat_out(config, state, now, 20.0)
    assert 10.52 < now < 12.0 and budget.measured_rate(config, state, now) >= 200.0
    state = acquire(config, state, now).state
    assert state.w_max == 0.0  # over for good: the measured rate falling again does not bring the cap back
    assert current_rate(config, state, now + 30.0) == math.inf
    assert send_flat_out(config, throttled(config, take(config, BudgetState(), 0.0, 100), 0.0), 15.0, 16.5)[1] < 16.5


def test_without_a_ceiling_the_episode_is_forgotten_after_a_minute_without_throttles() -> None:
    config = BudgetConfig()
    state = throttled(config, take(config, BudgetState(), 0.0, 100), 0.0)
    assert current_rate(config, state, 59.9) == pytest.approx(70.0)
    assert current_rate(config, state, 60.0) == math.inf  # no lasting cap after someone else's throttle
    with_ceiling = BudgetConfig(rate=1000)
    state = throttled(with_ceiling, take(with_ceiling, BudgetState(), 0.0, 100), 0.0)
    assert current_rate(with_ceiling, state, 60.0) == 1000.0  # the curve alone, up to the ceiling


class QuotaServer:
    """A server that throttles above ``quota`` calls/s (1 s burst)."""

    def __init__(self, quota: float) -> None:
        self.quota, self.tokens, self.time = quota, quota, 0.0

    def answer(self, now: float) -> bool:
        self.tokens, self.time = min(self.quota, self.tokens + (now - self.time) * self.quota), now
        ok = self.tokens >= 1
        self.tokens -= ok
        return ok


def try_call(config: BudgetConfig, state: BudgetState, server: QuotaServer, attempt: tuple[float, int, float],
             events: list[tuple[float, str, int]], calls: list[tuple[float, bool]]) -> BudgetState:
    """One caller's attempt (now, caller, latency): wait for the budget, or call and schedule the answer."""
    now, caller, latency = attempt
    decision = acquire(config, state, now)
    if decision.wait > 0:
        events.append((now + decision.wait, "try", caller))
        return decision.state
    ok = server.answer(now)
    calls.append((now, ok))
    events.append((now + latency, "ok" if ok else "throttled", caller))
    return decision.state


def simulate(quota: float, callers: int, latency: float, until: float) -> list[tuple[float, bool]]:
    """Callers sharing one budget against a server that throttles above ``quota`` calls/s (1 s burst).

    Each caller acquires, sends, and reports the answer ``latency`` s later; returns (send time, ok).
    """
    config, state = BudgetConfig(), BudgetState()
    server = QuotaServer(quota)
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
        state = try_call(config, state, server, (now, caller, latency), events, calls)
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


def simulate_flush(quota: float, callers: int, latency: float, quiet_until: float) -> list[tuple[float, bool]]:
    """``callers`` each have a batch ready every second for 10 s (what waits joins the waiting batch), nothing
    until ``quiet_until``, then each flushes 2 batches at once; a throttled call is retried 0.2 s after its
    answer. Returns (send time, ok) of every call."""
    config, state = BudgetConfig(), BudgetState()
    server = QuotaServer(quota)
    pending = [0] * callers
    calls: list[tuple[float, bool]] = []
    events = [(i / callers + t, "due", i) for i in range(callers) for t in range(10)]
    events += [(quiet_until, "flush", i) for i in range(callers)]
    while events:
        events.sort(reverse=True)
        now, kind, caller = events.pop()
        if kind in ("due", "flush"):
            busy = pending[caller] > 0
            pending[caller] = pending[caller] + 2 if kind == "flush" else max(1, pending[caller])
            if busy:
                continue  # the caller is already at work on earlier calls
        elif kind == "throttled":
            state = throttled(config, state, now)
            events.append((now + 0.2, "try", caller))
            continue
        elif kind == "ok":
            pending[caller] -= 1
            if pending[caller]:
                events.append((now, "try", caller))
            continue
        state = try_call(config, state, server, (now, caller, latency), events, calls)
    return calls


def test_a_final_flush_after_a_throttled_run_stays_near_the_learned_rate() -> None:
    # The reviewer's case: 16 tasks want 4 x a 4 calls/s quota, then all flush together well after the last
    # throttle. The curve had reached 2 x w_max by then: unlimited, and most of the 32 calls came back throttled.
    calls = simulate_flush(quota=4.0, callers=16, latency=0.05, quiet_until=20.0)
    flush = [ok for t, ok in calls if t >= 20.0]
    assert sum(flush) == 32  # every pending call delivered
    assert len(flush) - sum(flush) <= 8
    assert max(sum(1 for t, _ in calls if s <= t < s + 1.0) for s, _ in calls if s >= 20.0) <= 12


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
    ceiling=st.one_of(st.none(), st.floats(0.001, 0.999), st.floats(1.0, 5000.0)),
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
        assert min(config.min_rate, config.ceiling) <= rate <= config.ceiling  # a ceiling below 1/s was lifted to 1
        assert budget.capacity(config, rate) >= 1.0


@settings(max_examples=200, deadline=None)
@given(
    ceiling=st.floats(0.01, 0.99),
    events=st.lists(st.tuples(st.floats(0.0, 3.0), st.booleans()), min_size=1, max_size=100),
)
def test_a_ceiling_below_one_call_a_second_holds_after_throttles(
    ceiling: float, events: list[tuple[float, bool]]
) -> None:
    """put_rate_limit=0.5: one throttle lifted the rate to min_rate (1/s) for good, twice the configured limit."""
    config = BudgetConfig(rate=ceiling)
    state, now, granted = BudgetState(), 0.0, 0
    for delay, throttle in events:
        now += delay
        if throttle:
            state = throttled(config, state, now)
            continue
        decision = acquire(config, state, now)
        state = decision.state
        granted += decision.wait == 0.0
    assert granted <= 1 + ceiling * now + 1e-6  # burst (1 call) + ceiling x elapsed


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(st.floats(0.0, 5.0), st.booleans(), st.floats(0.1, 50.0)), min_size=1, max_size=100))
def test_without_a_ceiling_an_episode_follows_what_is_sent_and_is_forgotten_in_time(
    events: list[tuple[float, bool, float]],
) -> None:
    config = BudgetConfig()
    state, now = BudgetState(), 0.0
    for delay, throttle, tokens in events:
        now += delay
        state = throttled(config, state, now) if throttle else acquire(config, state, now, tokens).state
        if state.w_max <= 0.0:
            continue
        rate = current_rate(config, state, now)
        proven = max(config.beta * state.w_max, config.measured_headroom * budget.measured_rate(config, state, now))
        assert rate == math.inf or rate <= max(config.min_rate, proven) * (1 + 1e-12)
        assert current_rate(config, state, state.throttled_at + config.forget_after + 1e-9) == math.inf


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


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # on purpose
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


def test_drained_empties_a_full_bucket_and_the_rate_goes_on() -> None:
    config = BudgetConfig(rate=10.0)
    state = budget.drained(config, BudgetState(), 5.0)  # never used: full, then emptied
    assert budget.acquire(config, state, 5.0).wait == pytest.approx(0.1)
    assert budget.acquire(config, state, 5.1).wait == 0.0


def test_drained_keeps_a_debt_and_leaves_an_unlimited_budget_alone() -> None:
    config = BudgetConfig(rate=10.0)
    debt = budget.acquire(config, BudgetState(), 0.0, tokens=25.0).state  # oversized: 15 tokens owed
    assert budget.drained(config, debt, 0.0).tokens == pytest.approx(-15.0)
    unlimited = BudgetConfig()
    fresh = BudgetState()
    assert budget.drained(unlimited, fresh, 0.0) == fresh
