"""The library's own messages: said once a minute per text, or per key when the text changes every time."""

from __future__ import annotations

import logging

import pytest

from mwaa_logging.engine import diagnostics


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnostics, "_last_said", {})


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mwaa_logging"]


def test_a_repeated_text_is_said_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        for _ in range(3):
            diagnostics.report("spill to s3://b failed")
        diagnostics.report("another text")
    assert said(caplog) == ["spill to s3://b failed", "another text"]


def test_texts_that_name_a_new_temporary_file_each_time_are_muted_by_their_key(
        caplog: pytest.LogCaptureFixture) -> None:
    """'fallback spill failed too' names the unique temp file it could not write: without a key, one message
    per stream every 5 s (a read-only disk)."""
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        for n in range(5):
            diagnostics.report(f"fallback spill failed too (OSError(30, '/spill/g/s/{n}.tmp'))", key="fallback: /spill")
        diagnostics.report("fallback spill failed too (OSError(30, '/other/x.tmp'))", key="fallback: /other")
    assert said(caplog) == ["fallback spill failed too (OSError(30, '/spill/g/s/0.tmp'))",
                            "fallback spill failed too (OSError(30, '/other/x.tmp'))"]
