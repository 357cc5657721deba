"""Spill files in directories other local users share: nobody else reads our lines, plants lines we read back as
ours, or makes a spill overwrite a file through a symbolic link."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from mwaa_logging.protocols import SpillError
from mwaa_logging.reader import read_stream
from mwaa_logging.replay import RejectedExport
from mwaa_logging.spill import layout
from mwaa_logging.spill.local import LocalSpillSink, default_spill_directories, default_spill_sink
from mwaa_logging.spillformat import SpillRecord

NOW = int(time.time() * 1000)


def spill(text: str, stream: str = "s") -> SpillRecord:
    return SpillRecord("g", stream, NOW, text, "max_latency")


@pytest.fixture
def temp_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No cache directory (a service user without a home): the default spill directory is in the temp dir."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    temp.chmod(0o1777)  # as /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("HOME", str(tmp_path / "no-home"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    return temp


def test_the_default_temp_directory_is_this_users_alone(temp_only: Path) -> None:
    """It was ``/tmp/mwaa-logging-spill`` for every user, made with the umask (0755): any local user read the
    spilled lines (connection strings, tokens), and could make the directory first and own it."""
    default_spill_sink().write([spill("postgres://admin:hunter2@db/prod")])
    directory = temp_only / f"mwaa-logging-spill-{os.getuid()}"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert [path.name for path in directory.iterdir()] == ["g"]


def test_a_default_directory_every_user_may_write_in_is_neither_written_nor_read(temp_only: Path) -> None:
    """Another user made it first (``mkdir -m 777``) and planted a file: read_stream and Airflow's log view
    showed its forged line as one of the task's."""
    for name in (f"mwaa-logging-spill-{os.getuid()}", "mwaa-logging-spill"):  # this version's name, the earlier one
        planted = temp_only / name
        planted.mkdir()
        planted.chmod(0o777)
        LocalSpillSink(planted).write([spill(f"FORGED in {name}: task succeeded")])
    with pytest.raises(SpillError, match="every user may write in it"):
        default_spill_sink().write([spill("secret")])
    assert not any(path.name == "mwaa-logging-spill" or path.name.startswith("mwaa-logging-spill-")
                   for path in default_spill_directories() if path.is_dir())
    own = temp_only.parent / "own-spill"
    read = list(read_stream("g", "s", spill_to=str(own), include_cloudwatch=False))
    assert read == []


def test_a_default_directory_of_another_user_is_neither_written_nor_read(temp_only: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another user")
    planted = temp_only / f"mwaa-logging-spill-{os.getuid()}"
    planted.mkdir(mode=0o755)
    LocalSpillSink(planted).write([spill("FORGED")])
    for path in [planted, *planted.rglob("*")]:
        os.chown(path, 65534, 65534)
    with pytest.raises(SpillError, match="belongs to uid 65534"):
        default_spill_sink().write([spill("secret")])
    assert list(read_stream("g", "s", spill_to=str(temp_only.parent / "own"), include_cloudwatch=False)) == []


def test_lines_this_user_spilled_in_the_earlier_temp_directory_are_still_read(temp_only: Path) -> None:
    earlier = temp_only / "mwaa-logging-spill"
    earlier.mkdir(mode=0o755)
    LocalSpillSink(earlier).write([spill("spilled before the upgrade")])
    read = read_stream("g", "s", spill_to=str(temp_only.parent / "own"), include_cloudwatch=False)
    assert [event.message for event in read] == ["spilled before the upgrade"]


def test_a_symbolic_link_at_the_next_spill_file_is_not_followed(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """In a spill_to other users may write: a link at the name a spill writes aside (pid and counter are
    predictable) truncated the file it named, then was renamed into the spill."""
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    shared = tmp_path / "shared"
    name = layout.object_name("g", "s", NOW)
    monkeypatch.setattr(layout, "_counter", iter(range(int(name.split("-")[-1].split(".")[0]), 10**6)))
    (shared / name).parent.mkdir(parents=True)
    (shared / (name + ".tmp")).symlink_to(victim)
    where = LocalSpillSink(shared).write([spill("a line")])
    assert victim.read_text() == "precious\n"
    assert where == str(shared / name) and not (shared / name).is_symlink()
    assert [r.message for r in LocalSpillSink(shared).read_stream("g", "s")] == ["a line"]


def test_replays_export_of_rejected_lines_is_private_and_follows_no_link(tmp_path: Path) -> None:
    """The export (task log lines CloudWatch refused) was made with the umask (0644: every local user read it),
    and at its predictable default name (``./mwaa-logging-rejected-<UTC second>.jsonl.gz``) a planted link got the
    lines appended to the file it named."""
    previous = os.umask(0o022)
    try:
        export = RejectedExport(tmp_path / "rejected.jsonl.gz")
        export.write([spill("postgres://admin:hunter2@db/prod")])
        export.close()
    finally:
        os.umask(previous)
    assert (tmp_path / "rejected.jsonl.gz").stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    (tmp_path / "linked.jsonl.gz").symlink_to(victim)
    with pytest.raises(OSError):
        RejectedExport(tmp_path / "linked.jsonl.gz").write([spill("a line")])
    assert victim.read_text() == "precious\n"
