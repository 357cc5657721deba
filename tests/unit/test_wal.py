"""The Airflow 2 raw task's write-ahead log: what a mark covers, what a dead process's file gives back."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mwaa_logging.airflow.wal import MARK_SUFFIX, WriteAheadLog, dead_logs, encode_line, unsettled, wal_key


def write_mark(wal: WriteAheadLog, offset: int, oldest: int) -> None:
    wal.mark_path.write_bytes(b"%020d %020d\n" % (offset, oldest))


def test_without_a_mark_every_line_is_unsettled(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, "k")
    for i in range(3):
        wal.append(1000 + i, f"line {i}\nwith a newline and \u00e9")
    assert unsettled(wal.path) == [(1000 + i, f"line {i}\nwith a newline and \u00e9") for i in range(3)]


def test_a_mark_covers_the_lines_before_it_older_than_its_oldest_pending(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, "k")
    wal.append(1000, "a")
    wal.append(3000, "b")  # still pending when the mark was made (oldest = 3000)
    wal.append(2000, "c")
    offset = wal.offset
    wal.append(1500, "d")  # written after the mark: whatever its time
    write_mark(wal, offset, 3000)
    assert unsettled(wal.path) == [(3000, "b"), (1500, "d")]
    write_mark(wal, offset, -1)  # nothing pending at the mark
    assert unsettled(wal.path) == [(1500, "d")]


def test_the_line_being_written_when_the_process_died_is_skipped(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, "k")
    wal.append(1000, "whole")
    with wal.path.open("ab") as file:
        file.write(encode_line(2000, "cut")[:-3])
    assert unsettled(wal.path) == [(1000, "whole")]


def test_a_failed_write_stops_the_log_and_the_app_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WriteAheadLog(tmp_path, "k")
    wal.append(1000, "kept")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    wal.append(2000, "lost")
    wal.append(3000, "not tried")
    assert wal.stopped
    monkeypatch.undo()
    assert unsettled(wal.path) == [(1000, "kept")]


def test_dead_logs_are_the_files_of_processes_that_are_gone(tmp_path: Path) -> None:
    key = wal_key("group", "dag_id=d/run_id=r/task_id=t/attempt=1.log")
    mine = WriteAheadLog(tmp_path, key)
    mine.append(1000, "my own, still writing")
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from mwaa_logging.airflow.wal import WriteAheadLog; "
         "w = WriteAheadLog(Path(sys.argv[1]), sys.argv[2]); w.append(2000, 'from the dead one')",
         str(tmp_path), key],
        check=True, capture_output=True, text=True,
    )
    assert not child.stderr
    found = list(dead_logs(tmp_path, key))
    assert [d.lines for d in found] == [[(2000, "from the dead one")]]
    assert found[0].path.with_suffix(MARK_SUFFIX).exists()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # on purpose
def test_a_forked_child_writes_its_own_file(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, "k")
    wal.append(1000, "parent")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            wal.append(2000, "child")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    wal.append(3000, "parent again")
    assert unsettled(wal.path) == [(1000, "parent"), (3000, "parent again")]
    assert unsettled(tmp_path / f"k.{pid}.wal") == [(2000, "child")]
