"""A spill file holding a line that is not a spill record (intact gzip data, or data cut short): the reader shows its
other lines and names the bad one; replay puts none of it, leaves it unmarked, and says which line (README: "a line
that is not a spill record, is reported with its name (the rest is read), and replay counts it as failed")."""

from __future__ import annotations

import contextlib
import gzip
import re
import time
from pathlib import Path

from mwaa_logging.aws.clients import make_logs_client
from mwaa_logging.aws.transport import BotocoreTransport
from mwaa_logging.budget import BudgetConfig
from mwaa_logging.budgets.process import ProcessBudget
from mwaa_logging.reader import read_stream
from mwaa_logging.replay import LocalSource, Replayer
from mwaa_logging.spill.layout import REPLAYED_SUFFIX, object_name
from mwaa_logging.spillformat import SpillRecord, encode_records
from mwaa_logging.testing.local_aws import LocalAWS
from mwaa_logging.testing.store import ResourceNotFound

GROUP = "bad-lines"  # the reader reads the default spill directories too, which other tests write


def plant(directory: Path) -> Path:
    start = int(time.time() * 1000)
    good = [SpillRecord(GROUP, "s", start + i, f"good {i}", "max_latency") for i in range(3)]
    lines = gzip.decompress(encode_records(good)).splitlines(keepends=True)
    path = directory / object_name(GROUP, "s", start)
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(lines[0] + b'{"timestamp": null}\n' + lines[1] + lines[2]))
    return path


def test_the_reader_shows_the_other_lines_of_an_object_with_a_bad_line_and_names_it(tmp_path: Path) -> None:
    path = plant(tmp_path)
    said: dict[str, str] = {}
    events = read_stream(GROUP, "s", spill_to=tmp_path, include_cloudwatch=False,
                         on_spill_error=lambda where, error: said.update({where: str(error)}))
    assert [event.message for event in events] == ["good 0", "good 1", "good 2"]
    assert said == {str(path): "line 2 is not a spill record: timestamp is not a number: None; its other 3 records "
                               "are read"}


def test_replay_leaves_an_object_with_a_bad_line_unmarked_and_puts_none_of_it(
        aws_in_env: LocalAWS, tmp_path: Path) -> None:
    path = plant(tmp_path)
    transport = BotocoreTransport(make_logs_client(endpoint_url=aws_in_env.url))
    summary = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000))).run(LocalSource(tmp_path))
    assert (summary.objects_failed, summary.objects_replayed, summary.events_read) == (1, 0, 0)
    assert summary.errors == [f"read {path}: line 2 is not a spill record: timestamp is not a number: None; none of "
                              "its 3 other records is put, and it stays unmarked"]
    assert path.exists() and not path.with_name(path.name + REPLAYED_SUFFIX).exists()
    with contextlib.suppress(ResourceNotFound):  # (never created: nothing was put)
        assert aws_in_env.messages(GROUP, "s") == []


def plant_cut(directory: Path, count: int = 300) -> tuple[Path, list[str]]:
    """A file with a bad line 101 whose gzip data ends early: its last line is cut, the others are complete."""
    start = int(time.time() * 1000)
    good = [SpillRecord(GROUP, "cut", start + i, f"good {i}", "max_latency") for i in range(count)]
    lines = gzip.decompress(encode_records(good)).splitlines(keepends=True)
    path = directory / object_name(GROUP, "cut", start)
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"".join(lines[:100]) + b'{"timestamp": null}\n' + b"".join(lines[100:]))[:-20])
    return path, [record.message for record in good]


def test_replay_leaves_a_cut_object_with_a_bad_line_unmarked_and_the_reader_shows_its_records_after_the_line(
        aws_in_env: LocalAWS, tmp_path: Path) -> None:
    """Data cut short took its bad line 101 for the cut: the 199 complete records after it were dropped, replay put
    the first 100 and marked the object, so the others never reached CloudWatch nor the reader."""
    path, messages = plant_cut(tmp_path)
    said: dict[str, str] = {}
    shown = [event.message for event in read_stream(
        GROUP, "cut", spill_to=tmp_path, include_cloudwatch=False,
        on_spill_error=lambda where, error: said.update({where: said.get(where, "") + f"[{error}]"}))]
    assert 100 < len(shown) < len(messages) and shown == messages[:len(shown)]  # only the cut last line is lost
    assert list(said) == [str(path)]
    assert re.fullmatch(rf"\[its gzip data ends early \(truncated\); salvaged its first {len(shown)} records "
                        r"\(complete\), lost the line after them \(\d+ bytes, incomplete\) and whatever followed "
                        r"it\]\[line 101 is not a spill record: timestamp is not a number: None; its other "
                        rf"{len(shown)} records are read\]", said[str(path)]), said

    transport = BotocoreTransport(make_logs_client(endpoint_url=aws_in_env.url))
    summary = Replayer(transport, ProcessBudget(BudgetConfig(rate=1000))).run(LocalSource(tmp_path))
    assert (summary.objects_failed, summary.objects_replayed, summary.events_read) == (1, 0, 0)
    assert summary.errors == [f"read {path}: line 101 is not a spill record: timestamp is not a number: None; none "
                              f"of its {len(shown)} other records is put, and it stays unmarked"]
    assert path.exists() and not path.with_name(path.name + REPLAYED_SUFFIX).exists()
    with contextlib.suppress(ResourceNotFound):  # (never created: nothing was put)
        assert aws_in_env.messages(GROUP, "cut") == []
