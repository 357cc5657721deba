"""Fleet scope: one budget in Redis shared by every worker, with host scope as the fallback.

Each call is one atomic Lua script that runs the arithmetic of :mod:`mwaa_logging.budget`
(token bucket + shared CUBIC rate + shared throttle signal) on a Redis hash, so every participant
takes from the same bucket and backs off together. Time inside the script is the Redis server's
``TIME``: hosts' monotonic clocks are not comparable, the server's clock is the one clock they all
see, and the answer (seconds to wait) is a duration, valid on any client clock. The ``now``
passed in by callers only schedules reconnection attempts and heartbeats.

When Redis times out (short socket timeouts, no retries inside redis-py), a call answers "wait ``retry_pause`` s"
and the next one asks Redis again: one late reply is not an outage. Only after ``fallback_after`` s of failures
with no answer in between do calls go to the host budget; a Redis that refuses the connection or the request sends
them there at once. The failures are counted per process and Redis, for all its budgets (PutLogEvents,
CreateLogGroup, CreateLogStream): each waiting ``fallback_after`` in turn held a first line 3.5 s. With one
warning per outage, its bucket emptied on entry (full after a spell unused, it added its whole burst
to what Redis had just granted); Redis is tried again with exponential backoff and used again as
soon as it answers. (A process sent to the host budget by each timeout, for 1 s or more, while the
others kept Redis answers, drained both buckets at once: 78 calls in 4 s against 50 allowed.)
Every ``heartbeat_interval`` each participant records its host in a
sorted set, so at an outage the host budget gets this host's share: the fleet's rate divided by
the hosts seen within ``host_liveness`` (the whole rate when that is not known).
redis-py is imported here only (it is the ``redis`` extra).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from mwaa_logging.budget import BudgetConfig, config_tag
from mwaa_logging.budgets.forksafe import after_fork_in_child
from mwaa_logging.budgets.stats import BudgetStats, Counters
from mwaa_logging.budgets.urls import client_options, redact
from mwaa_logging.protocols import Budget

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

#: KEYS[1]: the budget's hash, KEYS[2]: the hosts seen lately (sorted set, score = last seen).
#: ARGV: op ("acquire" | "throttle" | "rate"), tokens, rate (<= 0: none), burst (<= 0: none), beta,
#: scale, min_rate, cooldown, window, unlimited_after, ttl_ms, now ("" = the server's TIME),
#: host ("" = no heartbeat), seconds a host counts as live, clock_jump, converge_window, measured_headroom,
#: forget_after.
#: Returns {wait, rate, now, hosts} as strings (Lua numbers would be truncated); hosts is "" without a heartbeat.
#: Mirrors mwaa_logging/budget.py line for line; absent fields are the pure defaults (-inf / 0).
LUA_BUDGET = """
local key = KEYS[1]
local op = ARGV[1]
local want = tonumber(ARGV[2])
local rate_cfg = tonumber(ARGV[3])
local burst_cfg = tonumber(ARGV[4])
local beta, scale, min_rate = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cooldown, window, unlimited_after = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local ttl_ms = tonumber(ARGV[11])
local converge = tonumber(ARGV[16])
local headroom, forget_after = tonumber(ARGV[17]), tonumber(ARGV[18])
local now
if ARGV[12] ~= '' then
  now = tonumber(ARGV[12])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local INF = math.huge
local ceiling = INF
if rate_cfg > 0 then ceiling = rate_cfg end
if min_rate > ceiling then min_rate = ceiling end  -- config.floor: a rate below 1/s is never lifted

local f = redis.call('HMGET', key, 'tokens', 'updated', 'w_max', 'throttled_at', 'measured', 'measured_at')
local tokens = tonumber(f[1]) or 0
local updated = tonumber(f[2]) or -INF
local w_max = tonumber(f[3]) or 0
local throttled_at = tonumber(f[4]) or -INF
local measured = tonumber(f[5]) or 0
local measured_at = tonumber(f[6]) or -INF
if now < math.max(updated, throttled_at, measured_at) - tonumber(ARGV[15]) then
  -- the server clock stepped back: start afresh rather than wait for it to catch up
  redis.call('DEL', key)
  tokens, updated, w_max, throttled_at, measured, measured_at = 0, -INF, 0, -INF, 0, -INF
end

local function measured_now()
  if measured <= 0 then return 0 end
  return measured * math.exp(-math.max(0, now - measured_at) / window)
end

local function current_rate()
  if w_max <= 0 then return ceiling end
  local k = (w_max * (1 - beta) / scale) ^ (1 / 3)
  local offset = math.max(0, now - throttled_at) - k
  local curve = scale * offset * offset * offset + w_max
  if rate_cfg > 0 then return math.max(min_rate, math.min(ceiling, curve)) end
  local target = unlimited_after * w_max
  local quiet = now - throttled_at
  if quiet >= forget_after or (quiet >= converge and curve >= target and measured_now() >= target) then
    return INF
  end
  local proven = math.max(beta * w_max, headroom * measured_now())
  return math.max(min_rate, math.min(curve, proven))
end

local function capacity(rate)
  if rate_cfg > 0 then
    local burst = math.max(1, rate_cfg)
    if burst_cfg > 0 then burst = burst_cfg end
    return math.max(1, burst * math.min(rate, rate_cfg) / rate_cfg)
  end
  local one_second = math.max(1, rate)
  if burst_cfg > 0 then return math.min(burst_cfg, one_second) end
  return one_second
end

local wait = 0
if op == 'acquire' then
  local rate = current_rate()
  local granted = true
  if rate == INF and w_max > 0 then w_max = 0 end  -- the episode is over, and stays over
  if rate ~= INF then
    local size = capacity(rate)
    local level = size
    if updated ~= -INF then level = math.min(size, tokens + math.max(0, now - updated) * rate) end
    local needed = math.min(want, size)
    if level + 1e-9 >= needed then
      tokens = level - want
    else
      tokens = level
      wait = (needed - level) / rate
      granted = false
    end
    updated = math.max(now, updated)
  end
  if granted then
    measured = measured_now() + want / window
    measured_at = math.max(now, measured_at)
  end
elseif op == 'throttle' then
  if w_max > 0 and now - throttled_at < cooldown then
    if rate_cfg <= 0 then w_max = math.max(min_rate, w_max - 1 / window) end
  else
    local rate = current_rate()
    local in_use = measured_now()
    local w = in_use
    if rate ~= INF then w = math.min(in_use, rate) end
    if w_max > 0 and now - throttled_at < converge then w = w * (1 + beta) / 2 end
    if rate == INF or updated == -INF then
      tokens = 0
    else
      tokens = math.min(0, tokens + math.max(0, now - updated) * rate)
    end
    updated = math.max(now, updated)
    w_max = math.max(min_rate, w)
    throttled_at = now
  end
end

if op ~= 'rate' then
  local fields = {tokens = tokens, updated = updated, w_max = w_max, throttled_at = throttled_at,
                  measured = measured, measured_at = measured_at}
  local args = {}
  for name, value in pairs(fields) do
    if value > -INF then
      args[#args + 1] = name
      args[#args + 1] = string.format('%.17g', value)
    end
  end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, ttl_ms)
end
local hosts = ''
if ARGV[13] ~= '' then
  redis.call('ZADD', KEYS[2], string.format('%.17g', now), ARGV[13])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.17g', now - tonumber(ARGV[14])))
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
  hosts = tostring(redis.call('ZCARD', KEYS[2]))
end
return {string.format('%.17g', wait), string.format('%.17g', current_rate()), string.format('%.17g', now), hosts}
"""


class FallbackBudget(Budget, Protocol):
    """The budget used while Redis is away; its config is set to this host's share of the fleet's."""

    config: BudgetConfig

    def rate(self, now: float) -> float:
        """The rate in force at ``now`` (``inf``: unlimited)."""
        ...

    def drain(self, now: float) -> None:
        """Empty the bucket (the rate goes on, with no burst): done when a process starts using it."""
        ...

    def stats(self) -> BudgetStats:
        """Its own counters; ``rate`` is the rate in force at its last acquire or throttle."""
        ...


def fallback_config(config: BudgetConfig, hosts: int) -> BudgetConfig:
    """One host's share of a fleet budget: rate and burst divided by the hosts seen lately."""
    if config.rate is None or hosts <= 1:
        return config
    burst = config.burst if config.burst is not None else max(1.0, config.rate)
    return replace(config, rate=config.rate / hosts, burst=max(1.0, burst / hosts))


class RedisBudget:
    """A budget shared through Redis by every process of the fleet; host scope while Redis is away."""

    scope = "fleet"

    def __init__(
        self,
        url: str,
        config: BudgetConfig,
        fallback: FallbackBudget,
        name: str = "put",
        *,
        namespace: str = "mwaa-logging",
        timeout: float = 0.1,
        reconnect_initial: float = 1.0,
        reconnect_max: float = 30.0,
        fallback_after: float = 1.0,
        retry_pause: float = 0.05,
        ttl: float = 86_400.0,
        server_time: bool = True,
        host_id: str | None = None,
        heartbeat_interval: float = 5.0,
        host_liveness: float = 60.0,
        client: Redis[bytes] | None = None,
    ) -> None:
        self.config = config
        self.fallback = fallback
        # One hash tag for both keys: a Redis Cluster (ElastiCache cluster mode, Serverless) runs a script only
        # when all its keys are in one slot, and refused every call with CROSSSLOT without it. Participants
        # configured with another rate or burst use other keys: each bucket runs at its own configured limit.
        self.key = f"{{{namespace}:budget:{name}:{config_tag(config)}}}"
        self.hosts_key = f"{self.key}:hosts"
        self.host_id = host_id if host_id is not None else socket.gethostname()
        self.heartbeat_interval = heartbeat_interval
        self.host_liveness = host_liveness
        self.url = redact(url)
        self._url_key = url
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        #: Seconds of failures, with no answer in between, before calls go to the host budget.
        self.fallback_after = fallback_after
        #: The wait answered by a call that Redis failed before that (the next call asks Redis again).
        self.retry_pause = retry_pause
        self._ttl_ms = int(ttl * 1000)
        self._server_time = server_time
        self._client = client if client is not None else connect(url, timeout)
        self._script = self._client.register_script(LUA_BUDGET)
        self._lock = threading.Lock()
        after_fork_in_child(self._after_fork)
        self._down = False
        #: Since when this Redis fails, for all of this process's budgets on it (see ``_Health``).
        self._health = _health_of(url)
        self._retry_at = 0.0
        self._backoff = reconnect_initial
        self._counters = Counters(config.ceiling)
        #: The script's clock at this process's last answer from Redis (diagnostics, tests).
        self.last_server_time = float("nan")
        #: Hosts that used this budget within ``host_liveness`` s, as last seen (0: not known yet).
        self.hosts = 0
        self._next_heartbeat = -math.inf

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it (redis-py resets its pool itself)
        self._health = _health_of(self._url_key)

    @property
    def available(self) -> bool:
        """False while calls go to the host fallback."""
        return not self._down

    def _call(self, op: str, now: float, tokens: float = 1.0) -> tuple[float, float] | None:
        """Run the script; ``None`` when Redis failed: the caller uses the fallback when :attr:`available` is false,
        else answers "ask again in ``retry_pause`` s"."""
        import redis

        with self._lock:
            if self._down and now < self._retry_at:
                return None
            heartbeat = now >= self._next_heartbeat
            if heartbeat:
                self._next_heartbeat = now + self.heartbeat_interval
        config = self.config
        args: list[Any] = [
            op,
            repr(float(tokens)),
            repr(float(config.rate or 0.0)),
            repr(float(config.burst or 0.0)),
            repr(config.beta),
            repr(config.scale),
            repr(config.min_rate),
            repr(config.throttle_cooldown),
            repr(config.measure_window),
            repr(config.unlimited_after),
            self._ttl_ms,
            "" if self._server_time else repr(float(now)),
            self.host_id if heartbeat else "",
            repr(self.host_liveness),
            repr(config.clock_jump),
            repr(config.converge_window),
            repr(config.measured_headroom),
            repr(config.forget_after),
        ]
        try:
            wait, rate, server_now, hosts = self._script(keys=[self.key, self.hosts_key], args=args)
        except (redis.RedisError, OSError) as exc:
            self._went_down(now, exc)
            return None
        except Exception as exc:  # redis-py refusing its arguments (TypeError), a bug in it: an outage
            self._went_down(now, exc)  # for the sender, which must never see it
            return None
        self._came_back()
        self.last_server_time = float(server_now)
        if hosts:
            self.hosts = int(hosts)
        return float(wait), float(rate)

    def _went_down(self, now: float, exc: BaseException) -> None:
        with self._lock:
            if self._down:
                self._backoff = min(self._backoff * 2, self.reconnect_max)
                self._retry_at = now + self._backoff
                first = sustained = False
            else:
                lasted = self._health.failed(now, self.fallback_after)
                sustained = not timed_out(exc) or lasted >= self.fallback_after
                first = sustained
                if sustained:
                    self._down = True
                    self._backoff = self.reconnect_initial
                    self._retry_at = now + self._backoff
                    self.fallback.config = fallback_config(self.config, self.hosts)
        what = failure(exc)
        if first:
            self.fallback.drain(now)  # no burst on top of what Redis granted until it failed
            self._counters.count_fallback()
            log.warning(
                "Redis budget %s at %s %s (%s); sharing the budget per host until it is back",
                self.key,
                self.url,
                what,
                exc,
            )
        elif self._down:
            log.debug("Redis budget %s still %s (%s); next try in %.1f s", self.key, what, exc, self._backoff)
        else:
            log.debug("Redis budget %s %s (%s); asking again in %.2f s", self.key, what, exc, self.retry_pause)

    def _came_back(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
            self._health.failing_since = None
        if was_down:
            log.warning("Redis budget %s at %s reachable again; back to fleet scope", self.key, self.url)

    def acquire(self, now: float, tokens: float = 1.0) -> float:
        answer = self._call("acquire", now, tokens)
        if answer is None and not self._down:  # failed, not for long yet: the next call asks Redis again
            self._counters.count_acquire(self.retry_pause, self._counters.rate)
            return self.retry_pause
        if answer is None:
            # counted here too: this budget's stats cover every call, whichever budget served it
            wait = self.fallback.acquire(now, tokens)
            self._counters.count_acquire(wait, self.fallback.stats().rate)
            return wait
        wait, rate = answer
        self._counters.count_acquire(wait, rate)
        return wait

    def on_throttled(self, now: float) -> None:
        answer = self._call("throttle", now)
        if answer is None:  # kept by the host budget, which uses it if the failures go on
            self.fallback.on_throttled(now)
            self._counters.count_throttle(self.fallback.stats().rate)
            return
        self._counters.count_throttle(answer[1])

    def on_success(self, now: float) -> None:
        """Nothing to send: recovery is a function of the time since the last shared throttle."""

    def rate(self, now: float) -> float:
        """The fleet's rate in force (``inf``: unlimited); the fallback's while Redis is away."""
        answer = self._call("rate", now)
        if answer is None:
            return self.fallback.rate(now) if self._down else self._counters.rate
        return answer[1]

    def stats(self) -> BudgetStats:
        """Counters of every call of this process, served by Redis or by the host fallback (the
        fallback's own ``stats()`` counts only the latter); ``rate`` is the rate in force at the
        last acquire or throttle, the fallback's while Redis is away (scope ``fleet->host``)."""
        return self._counters.snapshot(self.scope if not self._down else "fleet->host")


class _Health:
    """What one process knows of one Redis, for all its budgets: since when it fails (``now`` of the first failure
    of a run of failures with no answer in between; ``None``: it answers), and when it last failed."""

    __slots__ = ("failing_since", "last_failure")

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.last_failure = -math.inf

    def failed(self, now: float, fallback_after: float) -> float:
        """Count a failure at ``now``; how long the failures have lasted. A failure more than twice ``fallback_after``
        after the last one starts a new run: a lone timeout long ago (a throttle signal, which nothing retries) is no
        reason for another budget to fall back at its first."""
        if self.failing_since is None or now - self.last_failure > 2 * fallback_after:
            self.failing_since = now
        self.last_failure = now
        return now - self.failing_since


_healths: dict[str, _Health] = {}
if hasattr(os, "register_at_fork"):
    # before the budgets' own hooks (registered later): a child starts knowing nothing of its parent's failures
    os.register_at_fork(after_in_child=_healths.clear)


def _health_of(url: str) -> _Health:
    """The health of the Redis at ``url`` in this process."""
    return _healths.setdefault(url, _Health())  # atomic: no lock a fork could leave held


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is a reply that did not come in time (Redis may only be slow), not a refusal."""
    import redis

    return isinstance(exc, redis.TimeoutError | TimeoutError)


def failure(exc: BaseException) -> str:
    """What went wrong, in words: an authentication refused is no network trouble."""
    import redis

    text = str(exc)
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError) or text.startswith(
            ("NOAUTH", "WRONGPASS", "NOPERM")) or "must be called with the client already authenticated" in text:
        return "refused authentication"
    if isinstance(exc, redis.ResponseError):
        return "answered the budget script with an error"
    if isinstance(exc, redis.RedisError | OSError):
        return "unreachable"
    return "failed in redis-py"


def connect(url: str, timeout: float) -> Redis[bytes]:
    """A redis-py client for ``redis://`` / ``rediss://`` URLs that fails fast: short timeouts, no retries."""
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the dev environment has the extra
        raise ImportError(f"rate_limit_scope {redact(url)} needs redis-py: pip install 'mwaa-logging[redis]'") from exc

    return redis.Redis.from_url(url, **client_options(timeout))
