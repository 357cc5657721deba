"""Spill to a local directory: gzip JSON Lines files, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from itertools import groupby
from pathlib import Path

from mwaa_logging.protocols import SpillError
from mwaa_logging.spill.layout import SUFFIX, object_name, stream_prefix
from mwaa_logging.spillformat import SpillRecord, decode_records, encode_records


def default_spill_directory() -> Path:
    """``$XDG_CACHE_HOME/mwaa-logging/spill`` (or ``~/.cache/...``), else the temp dir."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isdir(cache) and os.access(cache, os.W_OK):
        return Path(cache) / "mwaa-logging" / "spill"
    return Path(tempfile.gettempdir()) / "mwaa-logging-spill"


class LocalSpillSink:
    """Writes each stream's records to a new file under ``directory`` (one file per call and stream)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.description = str(self.directory)

    def write(self, records: Sequence[SpillRecord]) -> str:
        if not records:
            return self.description
        written: list[str] = []
        try:
            for (group, stream), stream_records in groupby(records, key=lambda r: (r.group, r.stream)):
                batch = list(stream_records)
                path = self.directory / object_name(group, stream, batch[0].timestamp)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(encode_records(batch))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                written.append(str(path))
        except OSError as exc:
            raise SpillError(f"cannot write spill file under {self.directory}: {exc}") from exc
        return written[0] if len(written) == 1 else self.description

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
