"""What the handler says about events CloudWatch refused for good (AUTH, INVALID): where they really went."""

from __future__ import annotations

import itertools
import logging

import pytest

from mwaa_logging.outcome import CallResult, Outcome
from tests.unit.engine_fakes import MemorySpill, ScriptedTransport, make_rig

_groups = itertools.count()


def refused_said(caplog: pytest.LogCaptureFixture, spill: MemorySpill, fallback: MemorySpill,
                 outcome: Outcome = Outcome.AUTH) -> tuple[str, MemorySpill]:
    group = f"refused-{next(_groups)}"  # the report is said once a minute per text
    fallback.description = "memory://fallback"
    rig = make_rig(ScriptedTransport([CallResult(outcome, "AccessDenied", "no")]), spill=spill,
                   fallback_spill=fallback, send_interval=0.1, group=group)
    rig.append("keep me")
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        rig.run(0.3)
    said = [r.getMessage() for r in caplog.records if "PutLogEvents to log group" in r.getMessage()]
    assert len(said) == 1, said
    return said[0], fallback


def test_refused_events_stored_in_the_fallback_are_said_to_be_there(caplog: pytest.LogCaptureFixture) -> None:
    """spill_to on a read-only file system: the lines went to the default directory, and the report said they
    were spilled to spill_to, where nothing was written."""
    said, fallback = refused_said(caplog, MemorySpill(fail=True), MemorySpill())
    assert [r.message for r in fallback.records] == ["keep me"]
    assert "spilled to memory://fallback (reason auth)" in said, said
    assert "memory://spill" not in said, said


def test_refused_events_no_target_could_store_are_said_to_be_kept(caplog: pytest.LogCaptureFixture) -> None:
    said, _ = refused_said(caplog, MemorySpill(fail=True), MemorySpill(fail=True), Outcome.INVALID)
    assert "spilled to" not in said, said
    assert "no spill target could store its 1 events (reason invalid)" in said, said


def test_refused_events_stored_where_spill_to_says_are_said_to_be_there(caplog: pytest.LogCaptureFixture) -> None:
    said, _ = refused_said(caplog, MemorySpill(), MemorySpill())
    assert "spilled to memory://spill (reason auth)" in said, said
