"""Spill to a local directory: gzip JSON Lines files, written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from mwaa_logging.protocols import PartialSpillError, SpillError
from mwaa_logging.spill.layout import SUFFIX, object_name, stream_prefix
from mwaa_logging.spillformat import SpillRecord, decode_records, encode_records, records_by_stream


def default_spill_directory() -> Path:
    """``$XDG_CACHE_HOME/mwaa-logging/spill`` (or ``~/.cache/...``), else the temp dir."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isdir(cache) and os.access(cache, os.W_OK):
        return Path(cache) / "mwaa-logging" / "spill"
    return Path(tempfile.gettempdir()) / "mwaa-logging-spill"


class LocalSpillSink:
    """Writes each stream's records to a new file under ``directory`` (one file per call and stream).

    A file appears whole or not at all (written aside, fsynced, renamed). If some streams' files were written
    and then one fails, :class:`PartialSpillError` says which records are still to be stored elsewhere, so
    that nothing is stored twice.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.description = str(self.directory)

    def write(self, records: Sequence[SpillRecord]) -> str:
        if not records:
            return self.description
        written: list[str] = []
        stored: set[tuple[str, str]] = set()
        for (group, stream), batch in records_by_stream(records).items():  # a file is named after its first record
            try:
                written.append(self._write_file(self.directory / object_name(group, stream, batch[0].timestamp),
                                                batch))
            except OSError as exc:
                message = f"cannot write spill file under {self.directory}: {exc}"
                if not written:
                    raise SpillError(message) from exc
                remaining = [r for r in records if (r.group, r.stream) not in stored]
                raise PartialSpillError(message, remaining, self._location_of(written)) from exc
            stored.add((group, stream))
        return self._location_of(written)

    def _location_of(self, written: Sequence[str]) -> str:
        return written[0] if len(written) == 1 else self.description

    @staticmethod
    def _write_file(path: Path, batch: Sequence[SpillRecord]) -> str:
        """Write ``batch`` to ``path`` atomically; no partial file is left behind on failure."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(encode_records(batch))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return str(path)

    def read_stream(self, group: str, stream: str) -> Iterator[SpillRecord]:
        """Every record spilled for one stream, file by file (not merged or sorted)."""
        folder = self.directory / stream_prefix(group, stream)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*" + SUFFIX)):
            yield from decode_records(path.read_bytes())

    def iter_files(self) -> Iterator[Path]:
        """Every spill file under the directory."""
        yield from sorted(self.directory.rglob("*" + SUFFIX))
