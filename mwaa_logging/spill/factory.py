"""Build the spill target named by the ``spill_to`` setting."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from mwaa_logging.protocols import SpillSink
from mwaa_logging.spill.local import LocalSpillSink, default_spill_directory


def local_directory_of(spill_to: str) -> str:
    """The directory a ``spill_to`` value names (a path or a ``file://`` URL)."""
    if spill_to.startswith("file://"):
        parsed = urlparse(spill_to)
        return unquote(parsed.path)
    return spill_to


def build_spill_sink(spill_to: str | None) -> SpillSink:
    """A sink for ``spill_to``: a directory path, a ``file://`` URL, or None for the default directory."""
    if not spill_to:
        return LocalSpillSink(default_spill_directory())
    return LocalSpillSink(local_directory_of(spill_to))
