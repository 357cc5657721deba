"""Programmable faults of the local endpoint: which call fails how, by count, probability or time window."""

from __future__ import annotations

import enum
import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


class FaultKind(str, enum.Enum):
    #: HTTP 400 ``ThrottlingException`` "Rate exceeded"; nothing stored.
    THROTTLE = "throttle"
    #: HTTP 503 ``ServiceUnavailableException``; nothing stored.
    UNAVAILABLE = "unavailable"
    #: Connection closed without a reply; nothing stored.
    DROP = "drop"
    #: The call is handled normally after ``delay`` seconds.
    LATENCY = "latency"
    #: The call is handled (events stored), then the connection is closed without a reply.
    LOST_REPLY = "lost_reply"
    #: No reply until the fault is cleared or the server stops; then the connection is closed.
    HANG = "hang"
    #: HTTP 400 ``AccessDeniedException`` (IAM refuses the call, e.g. no ``logs:PutLogEvents``); nothing stored.
    DENIED = "denied"


@dataclass(frozen=True)
class FaultRule:
    """One fault. ``count`` None = every matching call; ``duration`` None = until cleared.

    ``api`` is an API name such as ``PutLogEvents`` or ``CreateLogStream``, or ``*`` for every call.
    """

    kind: FaultKind
    api: str = "PutLogEvents"
    count: int | None = None
    probability: float = 1.0
    duration: float | None = None
    delay: float = 0.0
    id: int = 0
    #: Monotonic deadline computed from ``duration`` when the rule is added.
    until: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from admin-API JSON (``kind`` plus optional fields)."""
        known = {"kind", "api", "count", "probability", "duration", "delay"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(
            kind=FaultKind(data["kind"]),
            api=str(data.get("api", "PutLogEvents")),
            count=None if data.get("count") is None else int(data["count"]),
            probability=float(data.get("probability", 1.0)),
            duration=None if data.get("duration") is None else float(data["duration"]),
            delay=float(data.get("delay", 0.0)),
        )


@dataclass(frozen=True)
class Decision:
    """What to do with one call: wait ``delay`` seconds, then apply ``kind`` (None = handle normally)."""

    kind: FaultKind | None = None
    delay: float = 0.0
    rule_id: int | None = None


class Faults:
    """Thread-safe set of fault rules consulted once per incoming call.

    Rules are tried in the order they were added; latency rules add up, the first other matching
    rule decides. A rule matches when its API matches, it has not expired, it has calls left and
    a random draw falls under its probability; a matching count rule uses up one call.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        #: Set whenever rules are cleared, so hung calls can let go.
        self.cleared = threading.Event()

    def add(self, rule: FaultRule) -> FaultRule:
        """Add ``rule`` (its ``id`` and deadline are assigned here) and return the stored rule."""
        if not 0.0 <= rule.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if rule.count is not None and rule.count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            until = None if rule.duration is None else self._clock() + rule.duration
            stored = replace(rule, id=next(self._ids), until=until)
            self._rules.append(stored)
            if stored.kind is FaultKind.HANG:
                self.cleared.clear()
            return stored

    def inject(
        self,
        kind: FaultKind | str,
        *,
        api: str = "PutLogEvents",
        count: int | None = None,
        probability: float = 1.0,
        duration: float | None = None,
        delay: float = 0.0,
    ) -> FaultRule:
        """Add a fault, e.g. ``inject("unavailable", count=2)`` or ``inject("latency", delay=0.2)``."""
        return self.add(FaultRule(FaultKind(kind), api, count, probability, duration, delay))

    def throttle_for(self, seconds: float, api: str = "PutLogEvents") -> FaultRule:
        """Throttle every matching call for the next ``seconds``."""
        return self.inject(FaultKind.THROTTLE, api=api, duration=seconds)

    def clear(self) -> None:
        """Remove every rule and release hung calls."""
        with self._lock:
            self._rules.clear()
        self.cleared.set()

    def remove(self, rule_id: int) -> bool:
        """Remove the rule ``rule_id`` (others stay); False if there was none. Hung calls all wait for one event:
        they are released when the last hang rule is removed, or by :meth:`clear`."""
        with self._lock:
            gone = [rule for rule in self._rules if rule.id == rule_id]
            self._rules[:] = [rule for rule in self._rules if rule.id != rule_id]
            hanging = any(rule.kind is FaultKind.HANG for rule in self._rules)
        if any(rule.kind is FaultKind.HANG for rule in gone) and not hanging:
            self.cleared.set()  # the calls it hangs go on (another rule's, once used up, would go too)
        return bool(gone)

    def rules(self) -> list[FaultRule]:
        with self._lock:
            now = self._clock()
            return [rule for rule in self._rules if rule.until is None or rule.until > now]

    def decide(self, api: str) -> Decision:
        """Consume matching rules for one call of ``api`` and say what to do with it."""
        with self._lock:
            if not self._rules:
                return Decision()
            now = self._clock()
            delay = 0.0
            kept: list[FaultRule] = []
            decided: FaultRule | None = None
            for rule in self._rules:
                if rule.until is not None and rule.until <= now:
                    continue
                if rule.count == 0:
                    continue
                applies = (
                    (decided is None or rule.kind is FaultKind.LATENCY)
                    and rule.api in ("*", api)
                    and (rule.probability >= 1.0 or self._rng.random() < rule.probability)
                )
                if applies:
                    if rule.kind is FaultKind.LATENCY:
                        delay += rule.delay
                    else:
                        decided = rule
                    if rule.count is not None:
                        rule = replace(rule, count=rule.count - 1)
                if rule.count != 0:
                    kept.append(rule)
            self._rules = kept
            if decided is None:
                return Decision(None, delay)
            return Decision(decided.kind, delay + decided.delay, decided.id)
