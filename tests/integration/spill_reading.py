"""Read back what a test's spill directory holds."""

from __future__ import annotations

from pathlib import Path

from mwaa_logging.spillformat import SpillRecord, decode_records


def spilled_records(directory: Path) -> list[SpillRecord]:
    return [r for path in sorted(directory.rglob("*.jsonl.gz")) for r in decode_records(path.read_bytes())]
