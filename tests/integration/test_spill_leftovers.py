"""Spill files left behind or damaged, with real processes and files and the local endpoint's S3: a file a killed
writer left unfinished (``.tmp``) and a file or object cut short are read back and replayed for every complete
record they hold, once, and what could not be read is said; a file being written is never taken."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.cli import main
from mwaa_logging.reader import read_stream
from mwaa_logging.replay import LocalSource
from mwaa_logging.spill.layout import object_name, quote_name, writer_host
from mwaa_logging.spill.leftovers import UNASKABLE_AFTER_S, is_left_behind
from mwaa_logging.spillformat import SpillRecord, encode_records
from mwaa_logging.testing.local_aws import LocalAWS
from tests.waiting import wait_until

STREAMS = 4  # a write of this many streams stages every file, then syncs once (a close deadline's spill)
LINES = 500
#: A group no other test spills to: readers also search the default spill directories, which the suite's other
#: tests may have filled (with lines of a group "g", for instance).
GROUP = f"leftovers-{os.getpid()}"

#: Spills one write of STREAMS streams into argv[1] and stops where every file is written aside (``.tmp``), before
#: they are renamed: as a task killed (SIGKILL) at its close deadline leaves them.
WRITER = textwrap.dedent(f"""
    import sys, time
    from mwaa_logging.spill import local
    from mwaa_logging.spillformat import SpillRecord

    def stop(directory):
        print("staged", flush=True)
        sys.stdin.read()

    local._sync_file_system = stop
    start = int(time.time() * 1000) - 60_000
    local.LocalSpillSink(sys.argv[1]).write([
        SpillRecord({GROUP!r}, f"s{{k}}", start + i, f"s{{k}} line {{i}}", "close_deadline")
        for k in range({STREAMS}) for i in range({LINES})])
""")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "spill")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "staged\n"
        yield process
    finally:
        process.kill()
        process.wait()


def messages(directory: Path, stream: str) -> list[str]:
    return [e.message for e in read_stream(GROUP, stream, spill_to=directory, include_cloudwatch=False)]


def replay(aws: LocalAWS, source: str) -> int:
    return main(["replay", source, "--endpoint-url", aws.url, "--s3-endpoint-url", aws.url, "--no-progress",
                 "--rate", "200", "--export-rejected", os.devnull])


def test_files_a_killed_writer_left_are_read_and_replayed_once_never_while_it_runs(
        aws_in_env: LocalAWS, tmp_path: Path, writer: subprocess.Popen[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A task SIGKILLed while it spilled left ``.tmp`` files: their lines existed nowhere else, yet neither the
    reader nor replay ever looked at them (2,000 of 2,000 lines missing here), and nothing cleaned them up."""
    directory = tmp_path / "spill"
    staged = sorted(directory.rglob("*.tmp"))
    assert len(staged) == STREAMS
    assert messages(directory, "s0") == []  # being written: not this reader's, not replay's
    assert list(LocalSource(directory).objects()) == []

    writer.send_signal(signal.SIGKILL)
    writer.wait()
    cut = staged[3]
    os.truncate(cut, cut.stat().st_size * 6 // 10)  # and one killed halfway through its write
    expected = [f"s0 line {i}" for i in range(LINES)]
    assert messages(directory, "s0") == expected

    assert replay(aws_in_env, str(directory)) == 1  # a file was cut short: said, and the exit status says so
    captured = capsys.readouterr()
    said = " ".join(captured.err.split())  # rich wraps at the console's width
    assert f"damaged {cut}: its gzip data ends early (truncated); salvaged its first" in said, said
    salvaged = int(said.split("salvaged its first ")[1].split()[0])
    assert 0 < salvaged < LINES
    for k in range(3):
        assert aws_in_env.messages(GROUP, f"s{k}") == [f"s{k} line {i}" for i in range(LINES)]
    assert aws_in_env.messages(GROUP, "s3") == [f"s3 line {i}" for i in range(salvaged)]
    assert sorted(directory.rglob("*.tmp")) == []
    assert sorted(directory.rglob("*.tmp.replayed")) == [path.with_name(path.name + ".replayed") for path in staged]

    assert replay(aws_in_env, str(directory)) == 0  # nothing left to do: no line twice
    assert aws_in_env.stats().events_accepted == 3 * LINES + salvaged
    read = read_stream(GROUP, "s0", spill_to=directory, logs_client=aws_in_env.client("logs"))
    assert [e.message for e in read] == expected  # from CloudWatch now


def test_a_spill_file_cut_short_is_read_for_its_complete_records_and_the_loss_said(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spill file truncated (a copy cut short) was skipped whole: 0 of its lines read back, though most were
    intact; replay failed it on every run."""
    directory = tmp_path / "spill"
    start = int(time.time() * 1000) - 60_000
    records = [SpillRecord(GROUP, "s", start + i, f"line {i} " + "x" * 100, "max_latency") for i in range(2000)]
    path = directory / object_name(GROUP, "s", start)
    path.parent.mkdir(parents=True)
    data = encode_records(records)
    path.write_bytes(data[:len(data) * 6 // 10])
    said: list[tuple[str, str]] = []
    read = [e.message for e in read_stream(GROUP, "s", spill_to=directory, include_cloudwatch=False,
                                           on_spill_error=lambda where, error: said.append((where, str(error))))]
    assert 1000 < len(read) < 2000
    assert read == [r.message for r in records[:len(read)]]
    assert said == [(str(path), f"its gzip data ends early (truncated); salvaged its first {len(read)} records "
                     f"(complete), lost the line after them ({incomplete_line(data[:len(data) * 6 // 10], len(read))} "
                     "bytes, incomplete) and whatever followed it")]
    assert main(["read", GROUP, "s", "--spilled-only", "--spill-to", str(directory)]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == len(read) and err.startswith(f"mwaa-logging read: damaged spill object {path}: ")


def incomplete_line(cut: bytes, complete: int) -> int:
    """Bytes of the line after the first ``complete`` lines of gzip data ``cut`` short."""
    return len(zlib.decompressobj(wbits=31).decompress(cut).split(b"\n")[complete])


def test_an_s3_object_cut_short_is_read_and_replayed_for_its_complete_records(
        aws_in_env: LocalAWS, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = aws_in_env.client("s3")
    s3.create_bucket(Bucket="spill")
    start = int(time.time() * 1000) - 60_000
    records = [SpillRecord(GROUP, "s", start + i, f"line {i} " + "y" * 100, "max_latency") for i in range(2000)]
    key = "p/" + object_name(GROUP, "s", start)
    data = encode_records(records)
    s3.put_object(Bucket="spill", Key=key, Body=data[:len(data) // 2])
    said: list[str] = []
    read = [e.message for e in read_stream(GROUP, "s", spill_to=S3SpillSink("spill", "p", client=s3),
                                           include_cloudwatch=False,
                                           on_spill_error=lambda where, error: said.append(where))]
    assert 500 < len(read) < 2000 and read == [r.message for r in records[:len(read)]]
    assert said == [f"s3://spill/{key}"]

    assert replay(aws_in_env, "s3://spill/p") == 1
    assert f"salvaged its first {len(read)} records" in " ".join(capsys.readouterr().err.split())
    assert aws_in_env.messages(GROUP, "s") == read
    assert s3.list_objects_v2(Bucket="spill", Prefix="p/@replayed/")["KeyCount"] == 1
    assert replay(aws_in_env, "s3://spill/p") == 0
    assert aws_in_env.messages(GROUP, "s") == read


def tmp_file(directory: Path, pid: int, *, host: str | None = None, age: float = 0.0) -> Path:
    name = object_name(GROUP, "s", 0).rsplit("/", 1)[1]
    stamp, rest = name.split("-", 1)
    counter = rest.rsplit("-", 1)[1]
    path = directory / f"{stamp}-{writer_host() if host is None else quote_name(host)[:64]}-{pid}-{counter}.tmp"
    path.write_bytes(b"")
    written = time.time() - age
    os.utime(path, (written, written))
    return path


def pid_unused_here() -> int:
    """A pid no process of this pid namespace has now (from the top of the range, where pids are rarely in use)."""
    top = int(Path("/proc/sys/kernel/pid_max").read_text())
    return next(pid for pid in range(top - 2, 300, -1) if not Path(f"/proc/{pid}").exists())


def test_a_file_being_written_in_another_pid_namespace_of_this_host_is_not_taken(tmp_path: Path) -> None:
    """Two containers with this host's name (host networking) share a spill volume: a writer of the other one
    runs with a pid this namespace does not have. Its file was taken as left behind while it was being written
    (put by replay, then renamed by its writer and put again); now it counts as another host's."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare")
    pid = pid_unused_here()
    user_namespace = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    # In a new pid namespace (its own /proc): the next process started gets `pid`, and runs the writer.
    script = f"echo {pid - 1} > /proc/sys/kernel/ns_last_pid && {sys.executable} -c \"$0\" \"$1\"; exit $?"
    process = subprocess.Popen(["unshare", *user_namespace, "--pid", "--fork", "--mount-proc", "--kill-child",
                                "sh", "-c", script, WRITER, str(tmp_path / "spill")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        if process.stdout.readline() != "staged\n":
            pytest.skip("this machine does not allow a new pid namespace here (unshare failed)")
        staged = sorted((tmp_path / "spill").rglob("*.tmp"))
        assert len(staged) == STREAMS and all(f"-{pid}-" in path.name for path in staged)
        assert not Path(f"/proc/{pid}").exists()  # that pid means nothing here
        assert all(not is_left_behind(path) for path in staged)
        assert list(LocalSource(tmp_path / "spill").objects()) == []
        written = time.time() - UNASKABLE_AFTER_S - 60  # as another host's, once unchanged for an hour
        os.utime(staged[0], (written, written))
        assert is_left_behind(staged[0])
    finally:
        process.kill()
        process.wait()


def test_who_left_a_file_being_written(tmp_path: Path) -> None:
    """Its writer runs (not taken), was killed (taken, also while still a zombie), or its pid now belongs to a
    process that started after the file was last written (taken); another host's file once it is an hour old."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not is_left_behind(tmp_file(tmp_path, sleeper.pid))
        assert is_left_behind(tmp_file(tmp_path, sleeper.pid, age=600))  # the pid was reused since
        assert not is_left_behind(tmp_file(tmp_path, os.getpid(), age=10 * UNASKABLE_AFTER_S))
        sleeper.kill()
        zombie = tmp_file(tmp_path, sleeper.pid)
        wait_until(lambda: is_left_behind(zombie))  # killed, not yet reaped
    finally:
        sleeper.kill()
        sleeper.wait()
    assert is_left_behind(tmp_file(tmp_path, sleeper.pid))
    assert not is_left_behind(tmp_file(tmp_path, 1, host="other-host", age=UNASKABLE_AFTER_S - 60))
    assert is_left_behind(tmp_file(tmp_path, 1, host="other-host", age=UNASKABLE_AFTER_S + 60))
    link = tmp_file(tmp_path, sleeper.pid)  # a symbolic link with a left file's name is not a spill file
    link.rename(tmp_path / "elsewhere")
    link.symlink_to(tmp_path / "elsewhere")
    assert not is_left_behind(link)
