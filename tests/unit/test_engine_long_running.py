"""A process that runs for days: handlers and streams come and go; nothing the engine keeps may grow with them,
and what it reports must still add up."""

from __future__ import annotations

from mwaa_logging.build import build_budgets, build_channel
from mwaa_logging.engine.channel import Channel
from mwaa_logging.settings import Settings
from tests.unit.engine_fakes import OK, MemorySpill, Rig, ScriptedTransport, make_rig


def another_channel(rig: Rig) -> Channel:
    """One more handler's channel on ``rig``'s engine (and transport)."""
    settings = Settings.resolve({"send_interval": 1.0}, environ={})
    channel = build_channel(log_group_name="g", settings=settings, engine=rig.engine, transport=rig.transport,
                            spill=MemorySpill(), fallback_spill=MemorySpill(),
                            budgets=build_budgets(settings, shared=False))
    rig.engine.attach(channel)
    return channel


def test_process_stats_keep_counting_handlers_that_were_closed_and_retired() -> None:
    rig = make_rig()
    engine = rig.engine
    for _ in range(50):  # a long-running process: one handler per task, each closed at the task's end
        channel = another_channel(rig)
        for i in range(3):
            channel.append("task", int(rig.clock.wall() * 1000), f"line {i}")
        rig.run(1.1)
        channel.close(1.0)
        rig.run()
    stats = engine.stats()
    assert engine.channels() == [rig.channel]  # the closed ones are no longer served ...
    assert (stats.emitted, stats.delivered, stats.pending) == (150, 150, 0)  # ... but still counted
    assert stats.balanced()


def test_a_retired_channel_attached_again_is_counted_once() -> None:
    rig = make_rig()
    rig.append("before close")
    rig.run(1.1)
    rig.channel.close(1.0)
    rig.run()
    assert rig.engine.channels() == []
    rig.channel.reopen()  # a record logged after close()
    rig.append("after close")
    assert (rig.engine.stats().emitted, rig.engine.stats().delivered) == (2, 1)
    rig.run(1.1)
    rig.channel.close(1.0)
    rig.run()
    stats = rig.engine.stats()
    assert (stats.emitted, stats.delivered, stats.pending, stats.put_calls) == (2, 2, 0, 2)


def test_process_stats_add_up_while_events_are_still_queued() -> None:
    rig = make_rig(transport=ScriptedTransport([OK]))
    for i in range(5):
        rig.append(f"line {i}")  # queued: the sender has not drained them yet
    stats = rig.engine.stats()
    assert (stats.emitted, stats.pending) == (5, 5)
    assert stats.balanced()
