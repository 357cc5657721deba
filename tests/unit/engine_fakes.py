"""Fakes for driving the engine deterministically: a clock, a scripted transport, an in-memory spill."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mwaa_logging.build import build_budgets, build_channel
from mwaa_logging.engine.channel import Channel
from mwaa_logging.engine.engine import Engine
from mwaa_logging.events import MESSAGE, LogEvent
from mwaa_logging.outcome import CallResult, Outcome
from mwaa_logging.protocols import SpillError
from mwaa_logging.settings import Settings
from mwaa_logging.spillformat import SpillRecord

WALL_START = 1_700_000_000.0


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> float:
        """Wall clock moving with the monotonic one."""
        return WALL_START + self.now


@dataclass
class Call:
    op: str
    group: str
    stream: str = ""
    events: list[LogEvent] = field(default_factory=list)


Responder = Callable[[Call], CallResult]
OK = CallResult(Outcome.OK)


class ScriptedTransport:
    """Answers PutLogEvents from a script (then OK); records every call."""

    def __init__(self, script: Sequence[CallResult | Responder] = (), *, on_call: Responder | None = None) -> None:
        self.script = list(script)
        self.on_call = on_call
        self.calls: list[Call] = []
        self.groups: set[str] = set()
        self.streams: set[tuple[str, str]] = set()

    def _answer(self, call: Call) -> CallResult:
        self.calls.append(call)
        if self.on_call is not None:
            return self.on_call(call)
        if self.script:
            step = self.script.pop(0)
            return step(call) if callable(step) else step
        return OK

    def put_log_events(self, group: str, stream: str, events: Sequence[LogEvent]) -> CallResult:
        return self._answer(Call("put", group, stream, list(events)))

    def create_log_group(self, group: str, tags: Mapping[str, str] | None = None) -> CallResult:
        self.groups.add(group)
        self.calls.append(Call("create_group", group))
        return OK

    def create_log_stream(self, group: str, stream: str) -> CallResult:
        self.streams.add((group, stream))
        self.calls.append(Call("create_stream", group, stream))
        return OK

    def put_retention_policy(self, group: str, days: int) -> CallResult:
        self.calls.append(Call("retention", group))
        return OK

    def tag_log_group(self, group: str, tags: Mapping[str, str]) -> CallResult:
        self.calls.append(Call("tags", group))
        return OK

    @property
    def puts(self) -> list[Call]:
        return [c for c in self.calls if c.op == "put"]

    def delivered_messages(self, ok_only: bool = True) -> list[str]:
        return [e[MESSAGE] for c in self.puts for e in c.events]


class MemorySpill:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[SpillRecord] = []
        self.fail = fail
        self.description = "memory://spill"

    def write(self, records: Sequence[SpillRecord]) -> str:
        if self.fail:
            raise SpillError("disk on fire")
        self.records.extend(records)
        return self.description


@dataclass
class Rig:
    clock: FakeClock
    engine: Engine
    channel: Channel
    transport: ScriptedTransport
    spill: MemorySpill

    def append(self, message: str, stream: str = "s", *, ts_offset_ms: int = 0) -> None:
        self.channel.append(stream, int(self.clock.wall() * 1000) + ts_offset_ms, message)

    def run(self, seconds: float = 0.0, step: float = 0.05) -> None:
        """Advance the clock in steps, running the sender at each step."""
        self.engine.run_once()
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
            self.engine.run_once()


def make_rig(transport: ScriptedTransport | None = None, spill: MemorySpill | None = None,
             random_value: float = 0.5, **settings: Any) -> Rig:
    clock = FakeClock()
    engine = Engine(clock=clock, wall_clock=clock.wall, random_source=lambda: random_value, start_thread=False)
    transport = transport or ScriptedTransport()
    spill = spill or MemorySpill()
    settings.setdefault("send_interval", 1.0)
    group = settings.pop("group", "g")
    create_log_group = settings.pop("create_log_group", True)
    retention_days = settings.pop("log_group_retention_days", None)
    fallback = settings.pop("fallback_spill", None)
    resolved = Settings.resolve(settings, environ={})
    channel = build_channel(
        log_group_name=group, settings=resolved, engine=engine, transport=transport, spill=spill,
        fallback_spill=fallback or MemorySpill(), create_log_group=create_log_group,
        log_group_retention_days=retention_days,
        budgets=build_budgets(resolved, shared=False),
    )
    engine.attach(channel)
    return Rig(clock, engine, channel, transport, spill)
