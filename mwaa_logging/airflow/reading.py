"""Read a task's stream back for Airflow: CloudWatch plus spilled lines, split events reassembled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mwaa_logging.reader import ReadEvent, read_stream
from mwaa_logging.spill.local import default_spill_directories
from mwaa_logging.spillformat import DamagedSpill


def spill_locations(spill_to: str | None) -> list[str]:
    """Where this deployment's spilled lines can be: ``spill_to`` and the engine's local fallback."""
    locations = [spill_to] if spill_to else []
    for fallback in map(str, default_spill_directories()):
        if fallback not in locations and Path(fallback).is_dir():
            locations.append(fallback)
    return locations


#: ``ReadEvent.source`` of the notes the reader adds (a spill location it could not read).
NOTE_SOURCE = "mwaa-logging"


def read_events(client: Any, log_group: str, log_stream: str, spill_to: str | None = None) -> Iterator[ReadEvent]:
    """Every event of ``log_stream`` in order, complete (spilled lines merged, split events joined).

    A spill location this process cannot read (no ``s3:ListBucket`` for the API server, a bucket gone) does not
    hide the rest: the log is shown without it, and a last line says what could not be read.
    """
    unreadable: list[tuple[str, Exception]] = []
    yield from read_stream(log_group, log_stream, logs_client=client, spill_to=spill_locations(spill_to),
                           on_spill_error=lambda where, error: unreadable.append((where, error)))
    for where, error in unreadable:
        if isinstance(error, DamagedSpill):
            note = f"mwaa-logging found the spill object {where} damaged: {error}; the log above has what it salvaged"
        else:
            note = (f"mwaa-logging could not read spilled lines at {where}: {error!r}; the log above may miss lines "
                    "spilled there")
        yield ReadEvent(time.time_ns() // 1_000_000, note, NOTE_SOURCE)


def is_missing_stream(error: BaseException) -> bool:
    """Whether ``error`` is CloudWatch's ResourceNotFoundException (no such group or stream)."""
    response = getattr(error, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == "ResourceNotFoundException"
