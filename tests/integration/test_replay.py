"""``mwaa-logging replay`` end to end over HTTP: S3 and local sources into the strict local endpoint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mwaa_logging.aws.clients import make_logs_client
from mwaa_logging.aws.s3spill import S3SpillSink
from mwaa_logging.aws.transport import BotocoreTransport
from mwaa_logging.budget import BudgetConfig
from mwaa_logging.budgets.process import ProcessBudget
from mwaa_logging.cli import main
from mwaa_logging.limits import MAX_AGE_MS
from mwaa_logging.replay import REPLAYED_SUFFIX, LocalSource, RejectedExport, Replayer, records_in
from mwaa_logging.spill.layout import stream_prefix
from mwaa_logging.spill.local import LocalSpillSink
from mwaa_logging.spillformat import SpillRecord, encode_records
from mwaa_logging.testing.local_aws import LocalAWS

BUCKET = "spill"
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def aws(aws_in_env: LocalAWS) -> LocalAWS:
    return aws_in_env


def now_ms() -> int:
    return int(time.time() * 1000)


def spilled(group: str, stream: str, count: int, start: int, tag: str = "") -> list[SpillRecord]:
    return [SpillRecord(group, stream, start + i, f"{tag}{group}|{stream}|{i:05d}", "max_latency", "Throttling")
            for i in range(count)]


def replay(aws: LocalAWS, source: str, *extra: str) -> int:
    return main(["replay", source, "--endpoint-url", aws.url, "--s3-endpoint-url", aws.url,
                 "--no-progress", "--rate", "200", *extra])


def test_s3_replay_puts_every_line_once_exports_too_old_and_a_second_run_adds_nothing(
    aws: LocalAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "env/spill", client=s3)
    recent = now_ms() - 3600_000
    expected: dict[tuple[str, str], list[str]] = {}
    for group in ("airflow-env-Task", "/aws/other"):
        for stream in ("dag_id=d/run_id=r/task_id=t/attempt=1.log", "worker-1"):
            # Several spills per stream (objects interleaved in time), as a throttled sender makes them.
            first = spilled(group, stream, 300, recent, "a:")
            second = spilled(group, stream, 300, recent + 100, "b:")
            sink.write(first)
            sink.write(second)
            expected[(group, stream)] = [r.message for r in sorted(first + second, key=lambda r: r.timestamp)]
    too_old = spilled("airflow-env-Task", "worker-1", 5, now_ms() - MAX_AGE_MS - DAY_MS, "old:")
    sink.write(too_old)
    objects_before = len(list(sink.list_objects()))
    assert objects_before == 9
    export = tmp_path / "rejected.jsonl.gz"

    assert replay(aws, "s3://spill/env/spill", "--export-rejected", str(export)) == 0
    out = capsys.readouterr().out
    assert "replay of s3://spill/env/spill" in out and "2400" in out

    for (group, stream), messages in expected.items():
        assert aws.messages(group, stream) == messages  # each exactly once, in timestamp order
    assert sorted(r.message for r in records_in([export])) == sorted(r.message for r in too_old)
    assert {r.reason for r in records_in([export])} == {"too_old"}
    assert list(sink.list_objects()) == []
    moved = s3.list_objects_v2(Bucket=BUCKET, Prefix="env/spill/@replayed/")["KeyCount"]
    assert moved == objects_before

    stats = aws.stats()
    assert stats.events_accepted == 2400 and stats.invalid == 0
    assert stats.calls["PutLogEvents"] <= 4 + stats.not_found  # one batch per stream (+ retries after create)
    assert replay(aws, "s3://spill/env/spill", "--export-rejected", str(export)) == 0
    for (group, stream), messages in expected.items():
        assert aws.messages(group, stream) == messages  # no duplicates after the second run
    assert aws.stats().events_accepted == 2400
    assert len(list(records_in([export]))) == len(too_old)


def test_local_dry_run_changes_nothing_then_replay_creates_the_missing_stream(
    aws: LocalAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "spill"
    local = LocalSpillSink(directory)
    records = spilled("new-group", "new/stream", 50, now_ms() - 60_000)
    local.write(records[:20])
    local.write(records[20:])
    files = sorted(directory.rglob("*.jsonl.gz"))
    assert len(files) == 2

    assert replay(aws, str(directory), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "would put" in out
    assert sorted(directory.rglob("*.jsonl.gz")) == files
    assert aws.streams() == {}

    export = tmp_path / "rejected.jsonl"
    assert replay(aws, f"file://{directory}", "--export-rejected", str(export)) == 0
    assert aws.messages("new-group", "new/stream") == [r.message for r in records]
    assert list(directory.rglob("*.jsonl.gz")) == []
    assert sorted(p.name for p in directory.rglob("*" + REPLAYED_SUFFIX)) == sorted(
        p.name + REPLAYED_SUFFIX for p in files)
    assert not export.exists()  # nothing rejected: no export file


def test_replay_under_a_tight_quota_retries_throttles_and_loses_nothing(
    aws: LocalAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "spill"
    local = LocalSpillSink(directory)
    start = now_ms() - 600_000
    streams = [f"s{i:02d}" for i in range(8)]
    for stream in streams:
        local.write(spilled("g", stream, 40, start))
    aws.set_quota(put_tps=4)
    started = time.monotonic()
    assert replay(aws, str(directory), "--max-objects-per-unit", "1") == 0
    elapsed = time.monotonic() - started
    for stream in streams:
        assert aws.messages("g", stream) == [r.message for r in spilled("g", stream, 40, start)]
    stats = aws.stats()
    out = capsys.readouterr().out
    assert stats.throttled > 0, "the quota must have been hit for this test to mean anything"
    assert "throttled" in out
    assert elapsed < 60


def test_events_expired_by_retention_are_exported_not_dropped(aws: LocalAWS, tmp_path: Path) -> None:
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="short")
    logs.put_retention_policy(logGroupName="short", retentionInDays=1)
    logs.create_log_stream(logGroupName="short", logStreamName="s")
    directory = tmp_path / "spill"
    old = spilled("short", "s", 10, now_ms() - 3 * DAY_MS, "expired:")
    fresh = spilled("short", "s", 10, now_ms() - 60_000, "fresh:")
    LocalSpillSink(directory).write(old + fresh)
    export = tmp_path / "rejected.jsonl.gz"
    assert replay(aws, str(directory), "--export-rejected", str(export)) == 0
    assert aws.messages("short", "s") == [r.message for r in fresh]
    exported = list(records_in([export]))
    assert [r.message for r in exported] == [r.message for r in old]
    assert {r.reason for r in exported} == {"rejected_expired"}


def test_a_unit_that_cannot_be_put_stays_unmarked_for_the_next_run(aws: LocalAWS, tmp_path: Path) -> None:
    directory = tmp_path / "spill"
    LocalSpillSink(directory).write(spilled("g", "s", 5, now_ms() - 1000))
    LocalSpillSink(directory).write(spilled("g", "t", 5, now_ms() - 1000))
    transport = BotocoreTransport(make_logs_client(endpoint_url=aws.url))  # no botocore retries
    budget = ProcessBudget(BudgetConfig(rate=1000))
    aws.faults.inject("throttle", count=4)  # more throttles than the first unit may retry
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:  # time passes only when the replayer waits
        slept.append(seconds)
        clock[0] += seconds

    replayer = Replayer(transport, budget, sleep=sleep, clock=lambda: clock[0], max_attempts=3)
    summary = replayer.run(LocalSource(directory), max_objects_per_unit=1)
    assert summary.objects_failed == 1 and summary.objects_replayed == 1
    assert "throttled" in summary.errors[0] and summary.throttled == 4 and len(slept) >= 3
    left = list(directory.rglob("*.jsonl.gz"))
    assert len(left) == 1
    again = Replayer(transport, budget, sleep=sleep, clock=lambda: clock[0]).run(LocalSource(directory))
    assert again.objects_replayed == 1 and again.objects_failed == 0
    assert len(aws.messages("g", "s")) == 5 and len(aws.messages("g", "t")) == 5


CHILD = r"""
import logging, os, sys
import mwaa_logging
handler = mwaa_logging.CloudWatchLogHandler(
    log_group_name="airflow-env-Task", log_stream_name="worker-" + sys.argv[1],
    spill_to="s3://spill/env", max_latency=0.5, send_interval=0.1, close_timeout=3)
log = logging.getLogger("task")
log.propagate = False
log.addHandler(handler)
log.setLevel(logging.INFO)
handler.setFormatter(logging.Formatter("%(message)s"))
for i in range(int(sys.argv[2])):
    log.info("proc %s line %05d", sys.argv[1], i)
log.info("proc %s big %s", sys.argv[1], "z" * 1_200_000)
handler.close()
"""


def test_throttled_processes_spill_to_s3_then_replay_delivers_every_line_once(
    aws: LocalAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's 'done when': CloudWatch refuses every call for longer than max_latency."""
    import os
    import subprocess
    import sys

    from mwaa_logging.reader import read_stream

    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.faults.inject("throttle")  # every PutLogEvents, until cleared
    lines, procs = 2000, 3
    env = {**os.environ, **aws.env()}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(p), str(lines)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for p in range(procs)]
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0, out.decode()
    assert aws.stats().events_accepted == 0 and aws.stats().throttled > 0

    def expected(p: int) -> list[str]:
        return [f"proc {p} line {i:05d}" for i in range(lines)] + [f"proc {p} big " + "z" * 1_200_000]

    s3 = aws.client("s3")
    for p in range(procs):  # every line is in S3 (the big one in chunks), readable as one log
        spilled = [e.message for e in read_stream("airflow-env-Task", f"worker-{p}", spill_to="s3://spill/env",
                                                  include_cloudwatch=False, s3_client=s3)]
        assert spilled == expected(p)

    aws.faults.clear()
    assert replay(aws, "s3://spill/env") == 0
    assert replay(aws, "s3://spill/env") == 0  # the second run finds nothing
    for p in range(procs):
        stored = [m for m in aws.messages("airflow-env-Task", f"worker-{p}") if not m.startswith("[mwaa-logging] ")]
        assert len(stored) == lines + 2  # the big line is two chunks in CloudWatch, each once
        merged = [e.message for e in read_stream("airflow-env-Task", f"worker-{p}", spill_to="s3://spill/env",
                                                 s3_client=s3) if not e.message.startswith("[mwaa-logging] ")]
        assert merged == expected(p)


def test_refused_credentials_stop_the_run_and_mark_nothing(tmp_path: Path) -> None:
    from mwaa_logging.outcome import CallResult, Outcome

    class Refusing:
        calls = 0

        def put_log_events(self, group: str, stream: str, events: object) -> CallResult:
            self.calls += 1
            return CallResult(Outcome.AUTH, "UnrecognizedClientException", "The security token is invalid")

    for stream in ("a", "b", "c"):
        LocalSpillSink(tmp_path).write(spilled("g", stream, 3, now_ms()))
    transport = Refusing()
    summary = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000)),  # type: ignore[arg-type]
                       sleep=lambda _: None).run(LocalSource(tmp_path))
    assert transport.calls == 1 and summary.objects_replayed == 0
    assert summary.errors == ["auth: PutLogEvents g/a: UnrecognizedClientException The security token is invalid"]
    assert len(list(tmp_path.rglob("*.jsonl.gz"))) == 3


HOLD_LOCK = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_stream_another_replay_holds_is_skipped_not_put_twice(aws: LocalAWS, tmp_path: Path) -> None:
    """Two replays of one spill directory at once put every line twice (and each reported the other's marks as
    failures). A replay holds a stream's directory while it replays it: the other skips that stream; a holder
    killed with SIGKILL lets go."""
    import subprocess
    import sys

    from mwaa_logging.replay import LOCK_NAME

    directory = tmp_path / "spill"
    start = now_ms() - 60_000
    for stream in ("held", "free"):
        LocalSpillSink(directory).write(spilled("g", stream, 30, start))
    held_dir = next(p.parent for p in directory.rglob("*.jsonl.gz") if p.parent.name == "held")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(held_dir / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        transport = BotocoreTransport(make_logs_client(endpoint_url=aws.url))
        first = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000))).run(LocalSource(directory))
        assert (first.objects_replayed, first.objects_skipped, first.objects_failed) == (1, 1, 0)
        assert aws.streams() == {"g": ["free"]}
        assert len(list(held_dir.glob("*.jsonl.gz"))) == 1  # left for the run that holds it
        command = [sys.executable, "-m", "mwaa_logging.cli", "replay", str(directory), "--endpoint-url", aws.url,
                   "--no-progress", "--export-rejected", os.devnull]
        cli = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, **aws.env()})
        assert cli.returncode == 3, cli.stdout + cli.stderr  # was 0: the held stream's lines are not replayed yet
        assert f"skipped 1 objects: {held_dir} is locked by another replay running now" in " ".join(cli.stderr.split())
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock
        holder.wait(10)
    again = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000))).run(LocalSource(directory))
    assert (again.objects_replayed, again.objects_skipped, again.objects_failed) == (1, 0, 0)
    assert aws.messages("g", "held") == [r.message for r in spilled("g", "held", 30, start)]
    assert aws.messages("g", "free") == [r.message for r in spilled("g", "free", 30, start)]


def test_files_another_replay_marked_after_the_listing_are_skipped_not_failed(aws: LocalAWS, tmp_path: Path) -> None:
    directory = tmp_path / "spill"
    for part in range(3):
        LocalSpillSink(directory).write(spilled("g", "s", 5, now_ms() - 60_000, tag=f"{part}|"))
    source = LocalSource(directory)
    listed = list(source.objects())
    source.mark(listed[1])  # as another run does once it has put the file
    transport = BotocoreTransport(make_logs_client(endpoint_url=aws.url))
    summary = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000))).run(source, objects=listed)
    assert (summary.objects_replayed, summary.objects_skipped, summary.objects_failed) == (2, 1, 0)
    assert summary.errors == []
    assert len(aws.messages("g", "s")) == 10


def test_records_naming_another_stream_than_their_object_are_exported_not_put(
    aws: LocalAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whoever may write one stream's spill prefix could have had replay put lines into any stream (the reader
    showed them nowhere). Now they go to the export with reason ``misplaced``, said, and the rest is put."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    own = spilled("airflow-env-Task", "worker-1", 3, now_ms() - 60_000)
    planted = spilled("/aws/lambda/payments", "prod", 2, now_ms() - 60_000, "forged:")
    key = "env/spill/" + stream_prefix("airflow-env-Task", "worker-1") + "20261207T000000-h-1-00000000.jsonl.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=encode_records(own + planted))
    export = tmp_path / "rejected.jsonl.gz"

    assert replay(aws, "s3://spill/env/spill", "--export-rejected", str(export)) == 1
    err = capsys.readouterr().err
    assert f"misplaced: 2 records in s3://spill/{key} name /aws/lambda/payments/prod" in err
    assert aws.messages("airflow-env-Task", "worker-1") == [r.message for r in own]
    assert "/aws/lambda/payments" not in aws.streams()
    exported = list(records_in([export]))
    assert [(r.group, r.stream, r.message, r.reason) for r in exported] == [
        (r.group, r.stream, r.message, "misplaced") for r in planted]
    assert exported[0].detail == f"found in s3://spill/{key}"
    assert list(S3SpillSink(BUCKET, "env/spill", client=s3).list_objects()) == []  # all accounted for: marked


@pytest.mark.parametrize("given", [".", "s", "../s/."])
def test_a_stream_directory_given_relative_to_the_working_directory_is_replayed(
    aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """``cd <spill>/<group>/<stream> && mwaa-logging replay .`` put nothing: the stream's directory read as ".", not
    its group and stream, and every record went to the export as misplaced."""
    directory = tmp_path / "spill"
    records = spilled("g", "s", 3, now_ms() - 60_000)
    LocalSpillSink(directory).write(records)
    stream_directory = directory / stream_prefix("g", "s")
    monkeypatch.chdir(stream_directory if given != "s" else stream_directory.parent)
    assert replay(aws, given, "--export-rejected", str(tmp_path / "rejected.jsonl.gz")) == 0
    assert aws.messages("g", "s") == [r.message for r in records]


def test_an_export_that_cannot_be_created_stops_the_run_before_anything_is_put(
    aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from a directory it cannot write (``/``, a read-only container root), replay put a unit, failed to
    export its rejected events, left it unmarked and stopped: every rerun put the same lines again."""
    directory = tmp_path / "spill"
    LocalSpillSink(directory).write(spilled("g", "s", 5, now_ms() - 60_000)
                                    + spilled("g", "s", 2, now_ms() - MAX_AGE_MS - DAY_MS, "old:"))
    monkeypatch.chdir("/proc")  # nobody, root included, creates a file here: the default export name cannot be
    assert replay(aws, str(directory)) == 2
    assert "cannot write the export of rejected events mwaa-logging-rejected-" in capsys.readouterr().err
    assert aws.streams() == {}
    assert len(list(directory.rglob("*.jsonl.gz"))) == 1


def test_an_export_that_fails_after_the_put_leaves_its_unit_unmarked_and_stops_the_run(
    aws: LocalAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk that fills during the run (/dev/full refuses every write): what was put with the events that could
    not be exported stays unmarked (put again by the next run, never lost) and the run stops, saying so."""
    directory = tmp_path / "spill"
    LocalSpillSink(directory).write(spilled("a", "s", 5, now_ms() - 60_000)
                                    + spilled("a", "s", 2, now_ms() - MAX_AGE_MS - DAY_MS, "old:"))
    LocalSpillSink(directory).write(spilled("b", "s", 5, now_ms() - 60_000))
    assert replay(aws, str(directory), "--export-rejected", "/dev/full") == 1
    err = capsys.readouterr().err
    assert "could not export 2 rejected events to /dev/full" in err and "the run stopped" in err
    assert len(aws.messages("a", "s")) == 5 and "b" not in aws.streams()
    assert len(list(directory.rglob("*.jsonl.gz"))) == 2  # both still there, neither marked
    assert Path("/dev/full").exists()  # an export file it did not create is never removed


REPLAY_WITHOUT_WRITE_ACCESS = r"""
import sys
from mwaa_logging.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_stream_directory_replay_cannot_write_in_is_skipped_not_put(
    aws: LocalAWS, tmp_path: Path
) -> None:
    """Files replay could read but not rename (another user's spill, a read-only mount) were put, then failed to
    be marked: every run put them again. The stream is now skipped, saying why, before anything is put."""
    import shutil
    import subprocess
    import sys

    directory = tmp_path / "spill"
    records = spilled("g", "s", 5, now_ms() - 60_000)
    LocalSpillSink(directory).write(records)
    stream_directory = directory / stream_prefix("g", "s")
    stream_directory.chmod(0o555)
    command = [sys.executable, "-c", REPLAY_WITHOUT_WRITE_ACCESS, "replay", str(directory), "--endpoint-url",
               aws.url, "--no-progress", "--export-rejected", str(tmp_path / "rejected.jsonl.gz")]
    if os.geteuid() == 0:  # root writes anywhere: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux): cannot take away write access")
        command = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    try:
        for _ in range(2):
            run = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert run.returncode == 1, run.stderr
            assert "cannot write in" in run.stderr and "nothing of it was put" in run.stderr
        assert aws.streams() == {}
        assert len(list(stream_directory.glob("*.jsonl.gz"))) == 1
    finally:
        stream_directory.chmod(0o755)
    assert replay(aws, str(directory)) == 0
    assert aws.messages("g", "s") == [r.message for r in records]


def test_a_throttled_create_log_stream_is_retried_with_backoff(aws: LocalAWS, tmp_path: Path) -> None:
    """Many tasks starting at once keep CreateLogStream's quota busy: replay gave up on a new stream within a
    second, reporting a missing stream. Now a throttled create is retried with backoff, as a throttled put is."""
    directory = tmp_path / "spill"
    records = spilled("g", "new", 5, now_ms() - 60_000)
    LocalSpillSink(directory).write(records)
    aws.faults.inject("throttle", api="CreateLogStream", count=3)
    transport = BotocoreTransport(make_logs_client(endpoint_url=aws.url))
    slept: list[float] = []
    replayer = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000)), sleep=slept.append, jitter=lambda: 1.0)
    summary = replayer.run(LocalSource(directory))
    assert (summary.objects_replayed, summary.objects_failed, summary.errors) == (1, 0, [])
    assert summary.throttled == 3 and slept[:3] == [0.5, 1.0, 2.0]
    assert aws.messages("g", "new") == [r.message for r in records]
    assert aws.stats().calls["CreateLogStream"] == 4


def test_a_create_log_stream_throttled_past_every_retry_is_reported_as_throttled(
    aws: LocalAWS, tmp_path: Path
) -> None:
    directory = tmp_path / "spill"
    LocalSpillSink(directory).write(spilled("g", "new", 5, now_ms() - 60_000))
    aws.faults.inject("throttle", api="CreateLogStream")
    transport = BotocoreTransport(make_logs_client(endpoint_url=aws.url))
    replayer = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000)), sleep=lambda _s: None, max_attempts=3)
    summary = replayer.run(LocalSource(directory))
    assert summary.objects_failed == 1
    assert summary.errors[0].startswith("throttled: CreateLogStream g/new: ThrottlingException")
    assert len(list(directory.rglob("*.jsonl.gz"))) == 1


def test_an_export_written_into_the_spill_directory_is_not_taken_for_a_spill_file(
    aws: LocalAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from the spill directory itself, the default export landed among the spill files: the next run
    listed it, exported all of it again as misplaced and exited 1."""
    directory = tmp_path / "spill"
    LocalSpillSink(directory).write(spilled("g", "s", 3, now_ms() - 60_000)
                                    + spilled("g", "s", 2, now_ms() - MAX_AGE_MS - DAY_MS, "old:"))
    monkeypatch.chdir(directory)
    assert replay(aws, ".") == 0
    exports = list(directory.glob("mwaa-logging-rejected-*.jsonl.gz"))
    assert len(exports) == 1 and len(list(records_in(exports))) == 2
    capsys.readouterr()
    assert replay(aws, ".") == 0
    assert "misplaced" not in capsys.readouterr().err
    assert list(directory.glob("mwaa-logging-rejected-*.jsonl.gz")) == exports  # nothing new exported
    assert len(aws.messages("g", "s")) == 3


def test_objects_a_role_may_copy_but_not_delete_are_put_once_not_by_every_run(aws: LocalAWS) -> None:
    """Marking copies an object under @replayed/ and deletes it; a role without s3:DeleteObject (a common guard on
    log buckets) left every object to be put again by every run. A run now finds the copy and only marks."""
    from types import SimpleNamespace
    from typing import Any

    from mwaa_logging.replay import S3Source

    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sink = S3SpillSink(BUCKET, "env/spill", client=s3)
    records = spilled("g", "s", 20, now_ms() - 60_000)
    sink.write(records[:10])
    sink.write(records[10:])

    def deny_deleting_spill_objects(params: dict[str, Any], **_: Any) -> Any:
        if params["url_path"].endswith(".jsonl.gz"):  # the lease object may still be removed
            return SimpleNamespace(status_code=403), {"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                                                      "ResponseMetadata": {"HTTPStatusCode": 403}}
        return None

    no_delete = aws.client("s3")
    no_delete.meta.events.register("before-call.s3.DeleteObject", deny_deleting_spill_objects)
    transport = BotocoreTransport(make_logs_client(endpoint_url=aws.url))

    def run(client: Any) -> Any:
        return Replayer(transport, ProcessBudget(BudgetConfig(rate=1000))).run(
            S3Source(f"s3://{BUCKET}/env/spill", client=client))

    first = run(no_delete)
    assert (first.objects_replayed, first.objects_failed) == (0, 2) and first.events_put == 20
    second = run(no_delete)
    assert (second.objects_replayed, second.objects_failed, second.events_put) == (0, 2, 0)
    assert all("put by an earlier run" in error and "AccessDenied" in error for error in second.errors)
    assert aws.messages("g", "s") == [r.message for r in records]  # once, not once a run
    third = run(s3)
    assert (third.objects_replayed, third.objects_failed, third.events_put) == (2, 0, 0)
    assert list(sink.list_objects()) == []
    assert aws.messages("g", "s") == [r.message for r in records]


def test_an_export_another_run_wrote_to_is_not_removed_by_the_run_that_created_it(tmp_path: Path) -> None:
    """Two replays started in the same second in one directory shared the default name; the one that created the
    file and rejected nothing removed it at its end, with the other's rejected events in it."""
    path = tmp_path / "rejected.jsonl.gz"
    first, second = RejectedExport(path), RejectedExport(path)
    first.open()
    second.open()
    rejected = spilled("g", "s", 1, 0, "old:")
    second.write(rejected)
    first.close()
    second.close()
    assert [r.message for r in records_in([path])] == [r.message for r in rejected]
    alone = RejectedExport(tmp_path / "nothing.jsonl.gz")
    alone.open()
    alone.close()
    assert not (tmp_path / "nothing.jsonl.gz").exists()  # created, left empty: removed
