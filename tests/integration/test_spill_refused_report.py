"""Events CloudWatch refuses for good (AUTH) while ``spill_to`` cannot be written: the report names where they went
(the default directory), not ``spill_to``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import mwaa_logging
from mwaa_logging.testing.local_aws import LocalAWS
from tests.integration.spill_reading import spilled_records


def test_refused_events_are_said_to_be_where_they_were_stored(
        local_aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    spill_to = tmp_path / "read-only"
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # the default directory, the last resort
    local_aws.faults.inject("denied")
    try:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="refused-ro", log_stream_name="s",
                                                    endpoint_url=local_aws.url, spill_to=str(spill_to / "spill"),
                                                    send_interval=0.1)
        # after construction (which refuses it): nothing can be written under it
        spill_to.write_text("a file where the spill directory should be")
        logger = logging.getLogger("refused-ro")
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
            for i in range(3):
                logger.info("line %d", i)
            handler.close(3)
    finally:
        local_aws.faults.clear()
    assert sorted(r.message for r in spilled_records(cache)) == [f"line {i}" for i in range(3)]
    said = [r.getMessage() for r in caplog.records if "PutLogEvents to log group refused-ro" in r.getMessage()]
    assert said, [r.getMessage() for r in caplog.records]
    assert all(str(spill_to) not in message and str(cache) in message for message in said), said
