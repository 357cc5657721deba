"""A process that runs for days: handlers and streams come and go; nothing the engine keeps may grow with them,
and what it reports must still add up."""

from __future__ import annotations

import pytest

from mwaa_logging.build import build_budgets, build_channel
from mwaa_logging.engine import delivery
from mwaa_logging.engine.channel import Channel, StreamBuffer
from mwaa_logging.events import MESSAGE
from mwaa_logging.outcome import CallResult, Outcome
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


def test_streams_that_sent_everything_are_forgotten_and_come_back_when_used_again() -> None:
    rig = make_rig()
    for i in range(2000):  # an Airflow 3 supervisor or triggerer: a stream per task try, all on one handler
        rig.append("line", stream=f"try-{i}")
    rig.run(1.1)
    assert len(rig.transport.puts) == 2000
    rig.run(0.1)
    assert rig.channel.buffers == {}  # kept for the process's life, they were scanned on every wake-up
    rig.append("again", stream="try-7")
    rig.run(1.1)
    assert (rig.transport.puts[-1].stream, rig.transport.delivered_messages()[-1]) == ("try-7", "again")
    assert rig.engine.stats().balanced()


def test_a_stream_that_owes_a_spill_marker_is_kept_until_the_marker_is_sent() -> None:
    down = {"down"}
    refused = CallResult(Outcome.TRANSIENT, error_code="ServiceUnavailableException")
    rig = make_rig(ScriptedTransport(on_call=lambda call: refused if call.stream in down else OK), max_latency=5)
    rig.append("lost to the outage", stream="down")
    rig.run(10.0)  # retried with backoff, then spilled
    assert len(rig.spill.records) == 1
    rig.append("elsewhere", stream="up")
    rig.run(80.0, step=1.0)
    assert set(rig.channel.buffers) == {"down"}  # forgetting it would lose the note that a line went to the spill
    down.clear()
    rig.append("back", stream="down")
    rig.run(10.0, step=0.5)
    sent = [e[MESSAGE] for c in rig.transport.puts if c.stream == "down" and c.op == "put" for e in c.events]
    assert "back" in sent and any("spill" in m for m in sent)  # the marker went out with the next line
    rig.append("later", stream="up")
    rig.run(1.1)
    assert rig.channel.buffers == {}  # the marker sent, nothing owed: both forgotten


def test_one_pass_over_many_due_streams_looks_at_each_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = make_rig()
    for i in range(1000):
        rig.append("line", stream=f"s{i}")
    rig.run()
    rig.clock.advance(1.1)
    looks = 0
    real = delivery.retry_due

    def counted(buffer: StreamBuffer, last_call: float) -> float:
        nonlocal looks
        looks += 1
        return real(buffer, last_call)

    monkeypatch.setattr(delivery, "retry_due", counted)
    rig.engine.run_once()
    assert len(rig.transport.puts) == 1000  # all sent in one pass ...
    assert looks <= 4 * 1000  # ... looking at each stream a few times (every stream on every send: 500,000)
