"""``mwaa-logging demo`` on an endpoint and a spill location it shares with others: it touches only what it
made (its spill prefix, its fault rules, its quota), counts only its own calls, and cleans up when stopped."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from mwaa_logging.budgets.host import default_directory
from mwaa_logging.demo.runner import DemoConfig
from mwaa_logging.spill.local import LocalSpillSink
from mwaa_logging.spillformat import SpillRecord
from mwaa_logging.testing import RemoteLocalAWS
from tests.integration.test_demo import TINY, _unused_port, demo, endpoint_quotas

TINIER = ["--tasks", "2", "--lines", "50", "--big-events", "0", "--duration", "3", "--quiet"]


def _other_application(url: str, quota_seen: threading.Event) -> None:
    """Another client of the endpoint: once the demo set its quota, 150 PutLogEvents calls of its own, then a
    quota of its own."""
    import boto3
    from botocore.config import Config

    admin = RemoteLocalAWS(url)
    deadline = time.monotonic() + 60
    while endpoint_quotas(url).get("PutLogEvents") != 3.0:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    quota_seen.set()
    logs = boto3.client("logs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))
    logs.create_log_group(logGroupName="other-app")
    logs.create_log_stream(logGroupName="other-app", logStreamName="s")
    for n in range(150):
        with contextlib.suppress(Exception):  # throttled by the shared quota: still a call the endpoint counts
            logs.put_log_events(logGroupName="other-app", logStreamName="s",
                                logEvents=[{"timestamp": int(time.time() * 1000), "message": f"other {n}"}])
    admin._call("POST", "quota", {"PutLogEvents": 9})


def test_on_a_shared_endpoint_and_spill_directory_the_demo_touches_and_counts_only_its_own(
    tmp_path: Path, local_aws_server: str
) -> None:
    url = local_aws_server
    admin = RemoteLocalAWS(url)
    # Another application's spill, in the directory the demo is told to spill to (relative to its cwd).
    spill = tmp_path / "spill"
    now = int(time.time() * 1000)
    LocalSpillSink(spill).write([SpillRecord("prod-group", "prod-stream", now - 1000 + i, f"prod line {i}",
                                             "max_latency", "Throttling") for i in range(5)])
    foreign = sorted(p for p in spill.rglob("*") if p.is_file())
    assert foreign
    # Another client's fault rule (harmless: a call the demo never makes gets no delay).
    admin.inject("latency", api="DeleteLogGroup", delay=0.0)
    other_ids = {rule["id"] for rule in admin.faults()}
    quota_seen = threading.Event()
    other = threading.Thread(target=_other_application, args=(url, quota_seen), daemon=True)
    other.start()
    dead = f"http://127.0.0.1:{_unused_port()}"
    inherited = {"MWAA_LOGGING_ENDPOINT_URL": dead, "AWS_ENDPOINT_URL": dead, "AWS_ENDPOINT_URL_S3": dead,
                 "MWAA_LOGGING_SEND_INTERVAL": "1"}
    done = demo(*TINY, "--storm", "5", "--max-latency", "3", "--quota", "3", "--neighbour-tps", "0",
                "--endpoint-url", url, "--spill-to", "spill", cwd=tmp_path, env=inherited)
    other.join(30)
    out = done.stdout.replace("\n", " ")
    assert done.returncode == 0, done.stdout + done.stderr
    assert quota_seen.is_set()
    assert "RESULT (mwaa-logging): all 400 lines verified, 0 lost" in out
    # (1, 3) the relative spill directory was the same for the tasks, the read-back and the replay; the replay
    # took only this run's group's prefix: the other application's spill is as it was, not put anywhere.
    assert f"spill_to={spill}" in out
    spilled = re.search(r"(\d[\d,]*) spilled and replayed\)", out)
    assert spilled is not None and int(spilled.group(1).replace(",", "")) > 0, out
    assert re.search(r"after `mwaa-logging replay` \(CloudWatch alone\)\s*│\s*400 / 400 lines", out), out
    assert sorted(p for p in spill.rglob("*") if p.is_file() and "prod-group" in str(p)) == foreign
    assert "prod-group" not in admin.streams()
    # (4c) the other client's fault rule is still there (the storm's rule is gone)
    assert {rule["id"] for rule in admin.faults()} == other_ids
    # (4a) the other client changed the quota during the run: the demo left theirs
    assert endpoint_quotas(url) == {"PutLogEvents": 9.0}
    assert "set by another client during the run: left as is" in done.stderr, done.stderr
    # (4b) the other client's 150 calls are not in the demo's totals
    calls = re.search(r"PutLogEvents calls \(minimum\)\s*│\s*([\d,]+)", out)
    assert calls is not None and int(calls.group(1).replace(",", "")) < 150, out
    # (4d) inherited endpoint variables did not send the tasks elsewhere; the line says what was honoured
    assert ("environment: MWAA_LOGGING_ENDPOINT_URL overridden by the demo; MWAA_LOGGING_SEND_INTERVAL "
            "honoured by the task processes") in out, out


def test_a_home_relative_spill_directory_is_the_one_read_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = demo(*TINIER, "--storm", "5", "--max-latency", "3", "--spill-to", "~/spill", "--no-replay",
                cwd=tmp_path, env={"HOME": str(home)})
    out = done.stdout.replace("\n", " ")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT (mwaa-logging): all 100 lines verified, 0 lost" in out
    spilled = re.search(r"(\d[\d,]*) spilled\)", out)
    assert spilled is not None and int(spilled.group(1).replace(",", "")) > 0, out
    assert f"spill_to={home / 'spill'}" in out and any((home / "spill").rglob("*.jsonl.gz"))
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_demo_mid_storm_removes_its_throttle_rule_tasks_and_files(
    tmp_path: Path, local_aws_server: str, stop: signal.Signals
) -> None:
    url = local_aws_server
    admin = RemoteLocalAWS(url)
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "160"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mwaa_logging.cli", "demo", *TINIER, "--duration", "20", "--storm", "60",
         "--endpoint-url", url], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)  # its own group: the signal goes to the demo alone, as `kill PID` sends it
    try:
        deadline = time.monotonic() + 60
        while not admin.faults():  # the storm began
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        workdirs = list(tmp_path.glob("mwaa-logging-demo-*"))
        assert len(workdirs) == 1
        pids = [orjson.loads(p.read_bytes())["pid"] for p in workdirs[0].rglob("task-*.json")]
        assert pids
        budgets = list(default_directory().glob(f"demo-*-{process.pid}-*.budget"))
        assert len(budgets) == 3, budgets
        process.send_signal(stop)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == (143 if stop == signal.SIGTERM else 130), (out, err)
    assert b"Traceback" not in err, err
    assert admin.faults() == []
    assert not any(tmp_path.glob("mwaa-logging-demo-*"))
    assert not any(path.exists() for path in budgets)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()


def test_the_environment_line_says_what_the_demo_overrides_and_what_it_honours() -> None:
    from mwaa_logging.demo import environment_note

    environ = {"MWAA_LOGGING_PUT_RATE_LIMIT": "2", "MWAA_LOGGING_COMPRESSION": "off", "MWAA_LOGGING_BENCH": "1"}
    assert environment_note(DemoConfig(), environ) == (
        "environment: MWAA_LOGGING_PUT_RATE_LIMIT overridden by the demo; MWAA_LOGGING_COMPRESSION honoured by "
        "the task processes")
    assert "MWAA_LOGGING_PUT_RATE_LIMIT honoured" in environment_note(DemoConfig(rate_limit=None), environ)
    assert environment_note(DemoConfig(), {}) == ""


def test_a_replay_past_its_time_limit_is_a_failure_said_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from mwaa_logging.demo import runner
    from mwaa_logging.demo.verify import TaskCheck

    def too_slow(command: list[str], **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(command, float(str(kwargs["timeout"])), output="replay: 3 of 9 objects\n")

    monkeypatch.setattr(runner.subprocess, "run", too_slow)
    target = SimpleNamespace(env={}, url=None, owned=False)
    run = runner.Run(DemoConfig(quota=1.0, rate_limit=4.0), target, "mwaa-logging", Console(), tmp_path)  # type: ignore[arg-type]
    check = TaskCheck("t", "s", 1, spill_objects={f"s3://b/p/{n}" for n in range(100)})
    output, problem = run._replay("s3://b/p/g/", {}, [check])
    assert output == "replay: 3 of 9 objects"
    # the limit grows with the objects to replay at the slower of the rate limit and the quota
    assert problem == ("replay of s3://b/p/g/ did not finish in 520 s (stopped: run `mwaa-logging replay "
                       "s3://b/p/g/` again to finish)")
    # on the embedded endpoint nothing is left to replay into once the demo exits: no advice to run it again
    target.owned = True
    _, problem = run._replay("s3://b/p/g/", {}, [check])
    assert problem == ("replay of s3://b/p/g/ did not finish in 520 s (stopped; the embedded endpoint stops with "
                       "the demo: this run's log group and S3 spill are gone with it)")
