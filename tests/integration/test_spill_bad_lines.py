"""A spill file holding a line that is not a spill record (intact gzip data): the reader shows its other lines and
names the bad one; replay puts none of it, leaves it unmarked, and says which line (README: "a line that is not a
spill record, is reported with its name (the rest is read), and replay counts it as failed")."""

from __future__ import annotations

import contextlib
import gzip
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
