"""The Airflow integration's own logic, without Airflow: naming, message format, kwargs, the remote IO."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mwaa_logging.airflow.messages import event_to_message, message_to_line, timestamp_ms
from mwaa_logging.airflow.naming import (
    LogGroupTarget,
    configured_log_group,
    is_cloudwatch_remote_base,
    stream_name_for,
)
from mwaa_logging.airflow.options import split_handler_kwargs
from mwaa_logging.airflow.remote_io import IDLE_STREAM_SECONDS, CloudWatchRemoteLogIO
from mwaa_logging.engine.stats import Counters, Stats
from mwaa_logging.reader import ReadEvent
from mwaa_logging.settings import SettingsError

ARN = "arn:aws:logs:eu-west-1:123456789012:log-group:airflow-prod-Task"
RELATIVE = "dag_id=d/run_id=manual__2026-11-24T07:41:15+00:00/task_id=t/attempt=1.log"
STREAM = "dag_id=d/run_id=manual__2026-11-24T07_41_15+00_00/task_id=t/attempt=1.log"


def test_log_group_and_region_come_from_the_remote_base_arn() -> None:
    target = LogGroupTarget.from_remote_base(f"cloudwatch://{ARN}")
    assert (target.region_name, target.log_group_name, target.arn) == ("eu-west-1", "airflow-prod-Task", ARN)
    assert is_cloudwatch_remote_base(f"cloudwatch://{ARN}") and not is_cloudwatch_remote_base("s3://bucket/logs")
    with pytest.raises(ValueError, match="log-group"):
        LogGroupTarget.from_arn("arn:aws:s3:::bucket")


def test_stream_name_is_the_providers() -> None:
    assert stream_name_for(RELATIVE) == STREAM


def test_a_stream_name_over_cloudwatchs_512_characters_is_shortened_the_same_way_each_time() -> None:
    relative = f"dag_id={'d' * 250}/run_id=manual__2026-12-07T04:00:00+00:00/task_id={'t' * 250}/attempt=1.log"
    name = stream_name_for(relative)
    assert len(name) == 512 and name == stream_name_for(relative) and ":" not in name
    assert name.startswith("dag_id=ddd") and name != stream_name_for(relative.replace("attempt=1", "attempt=2"))


def test_event_becomes_json_message_with_timestamp_as_event_time() -> None:
    event = {"event": "hello", "level": "info", "timestamp": "2026-11-24T07:41:15.250000Z", "n": 1}
    message, stamp = event_to_message(event)
    assert json.loads(message) == {"event": "hello", "level": "info", "n": 1}
    assert stamp == 1795506075250
    assert "timestamp" in event  # the supervisor's own file output still gets it


def test_unreadable_timestamp_falls_back_instead_of_losing_the_line() -> None:
    assert timestamp_ms("not a time", default_ms=7) == 7
    assert timestamp_ms(None, default_ms=7) == 7
    assert timestamp_ms(1_700_000_000_000) == 1_700_000_000_000


def test_cloudwatch_event_reads_back_as_airflow_json_line() -> None:
    line = json.loads(message_to_line('{"event": "hello", "level": "info"}', 1795506075250))
    assert line == {"event": "hello", "level": "info", "timestamp": "2026-11-24T07:41:15.250000+00:00"}
    assert json.loads(message_to_line("plain text", 0))["event"] == "plain text"


def test_handler_kwargs_split_into_io_and_engine_settings() -> None:
    io_kwargs, settings = split_handler_kwargs(
        {"max_bytes": 10, "delete_local_copy": False, "spill_to": "s3://b/p", "max_latency": 60},
        frozenset({"max_bytes", "backup_count", "delay"}),
    )
    assert io_kwargs == {"delete_local_copy": False}
    assert settings == {"spill_to": "s3://b/p", "max_latency": 60}
    with pytest.raises(ValueError, match="spil_to"):
        split_handler_kwargs({"spil_to": "x"}, frozenset())
    assert split_handler_kwargs({"delete_local_copy": "false"}, frozenset())[0] == {"delete_local_copy": False}
    with pytest.raises(ValueError, match="delete_local_copy='sometimes' is not true or false"):
        split_handler_kwargs({"delete_local_copy": "sometimes"}, frozenset())
    with pytest.raises(ValueError, match="conn_id=5 is not a string"):
        split_handler_kwargs({"conn_id": 5}, frozenset())


@pytest.mark.parametrize(("arn", "remote_base", "setting"), [
    ("bad", "cloudwatch://" + ARN, r"\[logging\] remote_task_handler_kwargs: log_group_arn: Not a CloudWatch"),
    (None, "cloudwatch://my-group", r"\[logging\] remote_base_log_folder: Not a CloudWatch log group ARN: 'my-group'"),
    (None, "s3://bucket/logs", r"\[logging\] remote_base_log_folder: .*must start with cloudwatch://"),
])
def test_a_bad_log_group_names_the_setting_it_came_from(arn: str | None, remote_base: str, setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        configured_log_group(arn, remote_base)
    assert configured_log_group(arn and ARN, "cloudwatch://" + ARN).arn == ARN


@dataclass
class FakeStream:
    name: str
    close_result: bool = True
    spilled: dict[str, int] = field(default_factory=dict)
    lines: list[tuple[str, int | None]] = field(default_factory=list)
    closed_with: list[float | None] = field(default_factory=list)

    def write(self, message: str, timestamp_ms: int | None = None) -> None:
        self.lines.append((message, timestamp_ms))

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        self.closed_with.append(timeout)
        return self.close_result

    def stats(self) -> Stats:
        return Stats.of(Counters(emitted=len(self.lines), spilled=Counter(self.spilled)), pending=0, pending_bytes=0,
                        oldest_pending_age=0.0)


@dataclass
class FakeFileLogger:
    """What structlog's BytesLogger looks like to a processor: a ``_file`` with a ``name``."""

    _file: Any


def make_io(tmp_path: Path, **kwargs: Any) -> tuple[CloudWatchRemoteLogIO, list[FakeStream]]:
    opened: list[FakeStream] = []

    def open_stream(group: str, stream: str, **settings: Any) -> FakeStream:
        assert group == "airflow-prod-Task" and settings["region_name"] == "eu-west-1"
        opened.append(FakeStream(stream))
        clients.append(settings["boto3_client"])
        return opened[-1]

    clients: list[Any] = []
    kwargs.setdefault("write_client_factory", lambda: None)
    kwargs.setdefault("base_log_folder", tmp_path)
    remote = CloudWatchRemoteLogIO(log_group_arn=ARN, open_stream=open_stream, **kwargs)
    remote.clients = clients  # type: ignore[attr-defined]
    return remote, opened


def task_logger(tmp_path: Path) -> FakeFileLogger:
    path = tmp_path / RELATIVE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("local copy\n")
    handle = io.BytesIO()
    handle.name = str(path)  # type: ignore[attr-defined]
    return FakeFileLogger(handle)


def test_processor_sends_task_lines_to_the_task_stream_and_skips_other_loggers(tmp_path: Path) -> None:
    remote, opened = make_io(tmp_path)
    (process,) = remote.processors
    event = {"event": "line", "timestamp": "2026-11-24T07:41:15Z"}
    assert process(task_logger(tmp_path), "info", event) is event
    stdout_like = io.BytesIO()
    stdout_like.name = "<stdout>"  # type: ignore[attr-defined]
    for other in (None, object(), FakeFileLogger(stdout_like), FakeFileLogger(io.BytesIO())):
        process(other, "info", {"event": "not a task line"})
    assert [s.name for s in opened] == [STREAM]
    assert opened[0].lines == [('{"event": "line"}', 1795506075000)]


def test_a_base_log_folder_starting_with_a_tilde_ships_the_task_lines(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3 names task log files under ``base_log_folder`` as configured, ``~`` unexpanded: expanding it only
    on our side shipped nothing, and said nothing."""
    monkeypatch.setenv("HOME", str(tmp_path))
    remote, opened = make_io(tmp_path, base_log_folder="~/logs")
    (process,) = remote.processors
    for name in ("~/logs", str(tmp_path / "logs")):
        handle = io.BytesIO()
        handle.name = f"{name}/{RELATIVE}"  # type: ignore[attr-defined]
        process(FakeFileLogger(handle), "info", {"event": f"under {name}"})
    assert [s.name for s in opened] == [STREAM]
    assert [message for message, _ in opened[0].lines] == ['{"event": "under ~/logs"}',
                                                           f'{{"event": "under {tmp_path}/logs"}}']
    local = tmp_path / "logs" / RELATIVE
    local.parent.mkdir(parents=True)
    local.write_text("local copy\n")
    remote.upload(f"~/logs/{RELATIVE}")
    assert not local.exists()


@pytest.mark.parametrize("stamp", [datetime(2026, 11, 24, 7, 41, 15, 250999, tzinfo=timezone.utc),
                                   "2026-11-24T07:41:15.250999Z"], ids=["datetime", "iso string"])
def test_the_local_copy_of_a_line_gets_the_timestamp_it_reads_back_with(tmp_path: Path, stamp: object) -> None:
    """Airflow drops a running task's line it has from both its local file and us only if the two are equal:
    the line Airflow writes locally (the event the processor returns) keeps CloudWatch's milliseconds."""
    remote, opened = make_io(tmp_path)
    (process,) = remote.processors
    local = process(task_logger(tmp_path), "info", {"event": "line", "level": "info", "timestamp": stamp})
    ((message, shipped_ms),) = opened[0].lines
    assert shipped_ms == 1795506075250 and "timestamp" not in json.loads(message)  # nothing more is shipped
    read_back = json.loads(message_to_line(message, shipped_ms))
    assert parse_time(local["timestamp"]) == parse_time(read_back["timestamp"])
    assert {**local, "timestamp": None} == {**read_back, "timestamp": None}
    assert type(local["timestamp"]) is type(stamp)


def parse_time(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_upload_drains_the_stream_then_deletes_the_local_copy(tmp_path: Path) -> None:
    remote, opened = make_io(tmp_path, settings={"close_timeout": 4})
    (process,) = remote.processors
    logger = task_logger(tmp_path)
    process(logger, "info", {"event": "a"})
    remote.upload(RELATIVE)
    assert opened[0].closed_with == [4.0]
    assert not (tmp_path / RELATIVE).exists()
    # a deferred task resuming on this worker appends to the same path: a fresh stream, same name
    process(logger, "info", {"event": "b"})
    assert [s.name for s in opened] == [STREAM, STREAM] and opened[1].lines[0][0] == '{"event": "b"}'


def test_upload_keeps_the_local_copy_when_the_drain_could_not_account_for_every_line(tmp_path: Path) -> None:
    remote, opened = make_io(tmp_path)
    (process,) = remote.processors
    process(task_logger(tmp_path), "info", {"event": "a"})
    opened[0].close_result = False
    remote.upload(str(tmp_path / RELATIVE))  # absolute paths work too
    assert (tmp_path / RELATIVE).exists()


def test_upload_keeps_the_local_copy_when_lines_were_spilled_during_the_task(tmp_path: Path) -> None:
    """Drained in time, but some lines went to the spill (max_latency) rather than CloudWatch."""
    remote, opened = make_io(tmp_path)
    (process,) = remote.processors
    process(task_logger(tmp_path), "info", {"event": "a"})
    opened[0].spilled = {"max_latency": 1}
    remote.upload(RELATIVE)
    assert (tmp_path / RELATIVE).exists()


def test_a_failing_stream_never_breaks_the_task_logging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: Any, **kwargs: Any) -> FakeStream:
        raise RuntimeError("boom")

    remote = CloudWatchRemoteLogIO(
        base_log_folder=tmp_path, log_group_arn=ARN, open_stream=broken, write_client_factory=lambda: None
    )
    (process,) = remote.processors
    event = {"event": "a"}
    assert process(task_logger(tmp_path), "info", event) is event
    assert remote.errors == 1 and "boom" in capsys.readouterr().err


@pytest.mark.parametrize(("settings", "named"), [
    ({"max_latency": -1}, "max_latency"),
    ({"spill_to": "/dev/null"}, "spill_to='/dev/null'"),  # refused when a stream was built, in every task
])
def test_a_bad_setting_fails_at_startup(tmp_path: Path, settings: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        CloudWatchRemoteLogIO(base_log_folder=tmp_path, log_group_arn=ARN, settings=settings)


def test_read_and_stream_return_every_event_as_airflow_lines(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def reader(client: Any, group: str, stream: str, spill_to: str | None) -> Iterator[ReadEvent]:
        seen.append((group, stream))
        yield ReadEvent(timestamp=1000, message='{"event": "one"}', source="cloudwatch")
        yield ReadEvent(timestamp=2000, message="two", source="spill")

    remote = CloudWatchRemoteLogIO(
        base_log_folder=tmp_path, log_group_arn=ARN, read_client_factory=lambda: None, event_reader=reader
    )
    sources, streams = remote.stream(RELATIVE, None)
    assert sources[0].startswith("mwaa-logging: reading CloudWatch") and STREAM in sources[0]
    assert [json.loads(line)["event"] for line in streams[0]] == ["one", "two"]
    _, lines = remote.read(RELATIVE, None)
    assert all(line.endswith("\n") for line in lines) and len(lines) == 2
    assert seen == [("airflow-prod-Task", STREAM)] * 2


def test_a_missing_stream_reads_as_a_notice(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    def reader(client: Any, group: str, stream: str, spill_to: str | None) -> Iterator[ReadEvent]:
        raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "x"}}, "GetLogEvents")
        yield  # pragma: no cover

    remote = CloudWatchRemoteLogIO(
        base_log_folder=tmp_path, log_group_arn=ARN, read_client_factory=lambda: None, event_reader=reader
    )
    _, streams = remote.stream(RELATIVE, None)
    (line,) = list(streams[0])
    assert "No log stream" in json.loads(line)["event"]


def file_logger(tmp_path: Path, relative: str) -> FakeFileLogger:
    handle = io.BytesIO()
    handle.name = str(tmp_path / relative)  # type: ignore[attr-defined]
    return FakeFileLogger(handle)


@pytest.mark.parametrize("connection", [True, False])
def test_every_stream_of_a_process_shares_one_client(tmp_path: Path, connection: bool) -> None:
    """Without a connection each stream built its own botocore client (~0.5 MB and ~40 ms): the DAG processor,
    which opens a stream per DAG file a day, grew by 1.1 GB for 2,000 of them."""
    given = object()
    remote, _ = make_io(tmp_path, write_client_factory=lambda: given if connection else None,
                        settings={"read_timeout": 2.5})
    (process,) = remote.processors
    for k in range(3):
        process(file_logger(tmp_path, f"dag_processor/2026-12-07/dags/dag_{k}.py.log"), "info", {"event": "x"})
    clients = remote.clients  # type: ignore[attr-defined]
    assert len(clients) == 3 and all(client is clients[0] for client in clients)
    if connection:
        assert clients[0] is given
    else:  # built from the settings, as the engine would have
        assert (clients[0].meta.region_name, clients[0].meta.config.read_timeout) == ("eu-west-1", 2.5)


def test_streams_idle_since_the_previous_look_are_closed_and_a_later_line_reopens_them(tmp_path: Path) -> None:
    """Airflow never uploads the DAG processor's per-file logs: their streams stayed open for the process's life."""
    now = [0.0]
    remote, opened = make_io(tmp_path, clock=lambda: now[0])
    (process,) = remote.processors
    old, busy = (file_logger(tmp_path, f"dag_processor/2026-12-06/dags/{name}.py.log") for name in ("old", "busy"))

    def at(seconds: float, logger: FakeFileLogger | None = None, relative: str | None = None) -> None:
        now[0] = seconds
        process(logger or file_logger(tmp_path, relative or f"x/{seconds}.log"), "info", {"event": "line"})

    at(0, old)
    at(0, busy)
    at(IDLE_STREAM_SECONDS + 1)  # a new stream: the first look notes what each stream had
    assert [s.closed_with for s in opened] == [[], [], []]
    at(1000, busy)
    opened[0].spilled = {"max_latency": 1}
    at(2 * IDLE_STREAM_SECONDS + 2)  # the next look: "old" had nothing since the first (the third came after it)
    assert [s.closed_with for s in opened] == [[0], [], [], []]
    assert set(remote._streams) == {s.name for s in opened[1:]}
    at(2000, old)  # written again: a new stream of the same name
    assert opened[4].name == opened[0].name and len(opened[4].lines) == 1
    # a stream closed with spilled lines keeps its local copy at upload, as an open one would
    local = tmp_path / "dag_processor/2026-12-06/dags/old.py.log"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("local copy\n")
    remote.upload("dag_processor/2026-12-06/dags/old.py.log")
    assert local.exists()


def test_a_read_client_made_because_the_connection_could_not_be_looked_up_is_not_kept_for_good() -> None:
    """The Airflow 2 handler keeps its read client for the process; a client of the default chain made because the
    connection's lookup failed (no provider here; a database blip, a connection added later) is not the one this
    configuration gives, and is made again later."""
    from mwaa_logging.airflow.clients import read_client_settled

    assert read_client_settled("eu-west-1", "aws_default")[1] is False  # wanted, could not be had
    assert read_client_settled("eu-west-1", None)[1] is True  # no connection to use: the default chain it is
    assert read_client_settled("eu-west-1", "aws_default", "http://127.0.0.1:9")[1] is True  # an endpoint wins


def test_the_remote_io_makes_a_read_client_made_without_the_connection_again_a_minute_later(tmp_path: Path) -> None:
    from mwaa_logging.airflow.clients import UNSETTLED_READ_CLIENT_SECONDS

    now = [0.0]
    remote = CloudWatchRemoteLogIO(base_log_folder=tmp_path, log_group_arn=ARN, conn_id="aws_default",
                                   clock=lambda: now[0])  # no provider here: the lookup fails
    first = remote.read_client()
    assert remote.read_client() is first
    now[0] = UNSETTLED_READ_CLIENT_SECONDS + 1
    assert remote.read_client() is not first
    settled = CloudWatchRemoteLogIO(base_log_folder=tmp_path, log_group_arn=ARN, clock=lambda: now[0])
    kept = settled.read_client()
    now[0] += 10 * UNSETTLED_READ_CLIENT_SECONDS
    assert settled.read_client() is kept  # no connection to use: the default chain's client is the one
