"""``mwaa-logging demo`` end to end (as a subprocess, as a user runs it), and its verdict logic."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from mwaa_logging.cli import main
from mwaa_logging.demo.verify import TaskCheck, compare, minimum_put_calls
from mwaa_logging.demo.workload import LOG_FORMAT, expected_messages, plan_task
from mwaa_logging.formatter import CloudWatchLogFormatter
from mwaa_logging.reader import CLOUDWATCH, ReadEvent
from mwaa_logging.testing import RemoteLocalAWS

TINY = ["--tasks", "2", "--lines", "200", "--big-events", "1", "--duration", "3", "--quiet"]


def demo(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "mwaa_logging.cli", "demo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=90)


def test_demo_through_a_throttle_storm_verifies_every_line_with_spilled_ones_read_back(tmp_path: Path) -> None:
    # The storm (all PutLogEvents throttled for 5 s) outlasts max_latency (3 s): lines must spill to S3
    # and still be found by the read-back, exactly once and in order.
    done = demo(*TINY, "--storm", "5", "--max-latency", "3", cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "RESULT (mwaa-logging): all 400 lines verified, 0 lost" in out
    assert "400 / 400 (in order)" in out
    spilled = re.search(r"(\d[\d,]*) spilled and replayed\)", out)
    assert spilled is not None and int(spilled.group(1).replace(",", "")) > 0, out
    assert "max_latency" in out and "s3://mwaa-logging-demo/" in out
    # Then `mwaa-logging replay` puts the spilled lines into CloudWatch (said before it starts): all there, once.
    assert re.search(r"mwaa-logging: replaying \d+ spill objects with `mwaa-logging replay` \(at most \d+ s\)", out)
    assert re.search(r"after `mwaa-logging replay` \(CloudWatch alone\)\s*│\s*400 / 400 lines, 0 missing, "
                     r"0 duplicates", out), out
    throttled = re.search(r"throttled calls\s*│\s*(\d+)", out)
    assert throttled is not None and int(throttled.group(1)) > 0, out


def test_compare_watchtower_prints_both_columns_and_writes_the_chart(tmp_path: Path) -> None:
    chart = tmp_path / "out" / "chart.html"
    # No quota, no storm: watchtower's only loss is then deterministic (its truncation of >256 KiB events).
    done = demo(*TINY, "--storm", "0", "--quota", "none", "--neighbour-tps", "0", "--compare", "watchtower",
                "--chart", str(chart), cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr  # the exit code judges mwaa-logging only
    assert "RESULT (mwaa-logging): all 400 lines verified, 0 lost" in out
    # watchtower cuts events at 256 KiB: the >1 MB line of each task arrives truncated.
    assert "RESULT (watchtower): FAILED: 2 lost" in out
    header = next(line for line in out.splitlines() if "mwaa-logging" in line and "watchtower" in line)
    assert header.index("mwaa-logging") < header.index("watchtower")
    lost_row = next(line for line in out.splitlines() if line.strip("│ ").startswith("lines lost"))
    assert re.findall(r"\d+", lost_row) == ["0", "2"]
    page = chart.read_text()
    assert f"chart: {chart.resolve()}" in out.replace("\n", "")
    assert page.count("<svg") == 3 and "watchtower" in page
    # the summary's time is the tasks' start to their exit, not a delivery time
    assert "delivered in" not in page and "tasks start -> all exited" in page
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|url\(", page)  # self-contained: nothing to fetch


def test_demo_with_endpoint_url_runs_against_a_separately_started_local_aws(
    tmp_path: Path, local_aws_server: str
) -> None:
    # The demo reaches that endpoint only through --endpoint-url: its quota, the storm (through the admin API),
    # the spill bucket and the read-back.
    url = local_aws_server
    RemoteLocalAWS(url).set_quota(put_tps=7, create_stream_tps=50)
    done = demo(*TINY, "--storm", "5", "--max-latency", "3", "--quota", "3", "--endpoint-url", url, cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert f"mwaa-logging local endpoint at {url} (PutLogEvents quota 3 calls/s" in out.replace("\n", "")
    # the endpoint's quotas are as the demo found them
    assert endpoint_quotas(url) == {"PutLogEvents": 7.0, "CreateLogStream": 50.0}
    assert "RESULT (mwaa-logging): all 400 lines verified, 0 lost" in out
    spilled = re.search(r"(\d[\d,]*) spilled and replayed\)", out)
    assert spilled is not None and int(spilled.group(1).replace(",", "")) > 0, out
    stats = RemoteLocalAWS(url).stats()
    assert stats.calls.get("PutLogEvents", 0) > 0 and stats.throttled > 0, stats
    # the demo's own lines plus the replayed ones (at least 400) landed on this endpoint, not an embedded one
    assert stats.events_accepted >= 400, stats


def endpoint_quotas(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/_local_aws/quota", timeout=5) as response:
        quotas: dict[str, float] = orjson.loads(response.read())["quotas"]
    return quotas


@pytest.mark.parametrize("outcome", ["interrupted", "crashed"])
def test_the_quota_of_an_external_endpoint_is_put_back_when_the_run_is_interrupted_or_fails(
    local_aws_server: str, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    from mwaa_logging.demo import runner

    url = local_aws_server
    assert endpoint_quotas(url) == {}  # started without --put-quota: unlimited
    during: list[dict[str, float]] = []

    def interrupted_run(*args: Any, **kwargs: Any) -> list[runner.RunResult]:
        during.append(endpoint_quotas(url))
        raise KeyboardInterrupt if outcome == "interrupted" else RuntimeError("task processes crashed")

    monkeypatch.setattr(runner, "run_handlers", interrupted_run)
    argv = ["demo", "--quiet", "--quota", "3", "--endpoint-url", url]
    if outcome == "interrupted":
        assert main(argv) == 130
    else:
        with pytest.raises(RuntimeError):
            main(argv)
    assert during == [{"PutLogEvents": 3.0}]
    assert endpoint_quotas(url) == {}


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_endpoint_that_does_not_answer_is_a_one_line_error_at_once(
    local_aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{_unused_port()}"
    for options, named in ((["--endpoint-url", dead], "--endpoint-url"),
                           (["--endpoint-url", local_aws.url, "--s3-endpoint-url", dead], "--s3-endpoint-url")):
        started = time.monotonic()
        assert main(["demo", "--quiet", *options]) == 2
        assert time.monotonic() - started < 10
        captured = capsys.readouterr()
        assert captured.err.strip().count("\n") == 0 and "Traceback" not in captured.err + captured.out
        assert f"cannot reach {named} {dead}" in captured.err, captured.err
    assert local_aws.quotas.limits() == {}  # the reachable endpoint was not touched


@pytest.mark.parametrize(("options", "named", "accepted"), [
    (["--max-latency", "1"], "--max-latency", "greater than send_interval (2.0, its default)"),
    (["--max-latency", "2"], "--max-latency", "greater than send_interval (2.0, its default)"),
    (["--max-latency", "0"], "--max-latency", "> send_interval"),
    (["--max-latency", "-2"], "--max-latency", "> send_interval"),
    (["--spill-to", "foo://bar"], "--spill-to", "a directory path, a file:// URL or s3://bucket/prefix"),
    (["--big-events", "-1"], "--big-events", "must be >= 0"),
    (["--quota", "0"], "--quota", "must be at least 0.01 calls/s (or 'none')"),
    (["--quota", "-3"], "--quota", "must be at least 0.01 calls/s (or 'none')"),
    (["--rate-limit", "0"], "--rate-limit", "must be at least 0.01 calls/s (or 'none')"),
    (["--endpoint-url", "notaurl"], "--endpoint-url", "an http:// or https:// URL"),
    (["--s3-endpoint-url", "ftp://host"], "--s3-endpoint-url", "an http:// or https:// URL"),
    (["--duration", "1e300"], "--duration", "at most 86400"),
    (["--storm", "1e300"], "--storm", "at most 86400"),
    (["--compare", "watchtower", "--chart", "."], "--chart", "is a directory"),
    (["--compare", "watchtower", "--chart", "README.md/chart.html"], "--chart", "is not a directory"),
    (["--chart", "x.html"], "--chart", "needs --compare"),
    (["--s3-endpoint-url", "http://127.0.0.1:9"], "--s3-endpoint-url", "needs --endpoint-url"),
    (["--real-aws", "--spill-to", "/tmp/x", "--endpoint-url", "http://127.0.0.1:9"], "--endpoint-url",
     "not allowed with --real-aws"),
])
def test_bad_options_are_usage_errors_before_anything_starts(
    options: list[str], named: str, accepted: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    from mwaa_logging.demo import runner
    from mwaa_logging.demo.endpoint import Target

    def must_not_start(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("started before the options were checked")

    for name in ("embedded", "remote", "real_aws"):
        monkeypatch.setattr(Target, name, must_not_start)
    monkeypatch.setattr(runner, "run_handlers", must_not_start)
    monkeypatch.chdir(Path(__file__).parents[2])  # README.md and "." for the --chart cases
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--quiet", *options])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}: " in err and accepted in err, err


def test_max_latency_is_checked_against_the_send_interval_the_task_processes_will_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the handlers in the task processes read MWAA_LOGGING_* too: the check resolves the same settings
    monkeypatch.setenv("MWAA_LOGGING_SEND_INTERVAL", "20")
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--quiet", "--max-latency", "10"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    # the variable that made it wrong is named
    assert "argument --max-latency: " in err and "send_interval (20.0, from MWAA_LOGGING_SEND_INTERVAL)" in err, err


@pytest.mark.parametrize(("lines", "asked", "generated"), [(200, 2, 2), (10, 500, 2), (5, 2, 0), (9, 0, 0), (12, 3, 3)])
def test_the_header_shows_the_big_events_each_task_really_logs(lines: int, asked: int, generated: int) -> None:
    from mwaa_logging.demo import _intro
    from mwaa_logging.demo.runner import DemoConfig

    config = DemoConfig(lines=lines, big_events=asked, tasks=2)
    assert all(sum(line.kind == "big" for line in plan.lines) == generated for plan in config.plans())
    assert config.big_events_generated == generated
    header = _intro(config, "endpoint")
    assert f"x {lines:,} lines ({generated} > 1 MB each" in header, header
    assert (f"--big-events {asked} needs --lines >= {asked + 8}" in header) == (generated < asked), header


def test_real_aws_mode_takes_credentials_and_endpoints_from_the_environment(
    tmp_path: Path, local_aws_server: str
) -> None:
    # --real-aws builds every client from the default chain, like any boto3 program: here the environment's
    # fake credentials and endpoint variables point it at a local endpoint (never at AWS). It needs --spill-to
    # (the demo's bucket exists only on our endpoint); here a directory.
    url = local_aws_server
    endpoints = {"AWS_ENDPOINT_URL": url, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": url, "AWS_ENDPOINT_URL_S3": url}
    assert demo(*TINY, "--real-aws", cwd=tmp_path, env=endpoints).returncode == 2  # no --spill-to
    done = demo(*TINY, "--real-aws", "--spill-to", str(tmp_path / "spill"), cwd=tmp_path, env=endpoints)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "real AWS account (default credential chain)" in out.replace("\n", "")
    assert "RESULT (mwaa-logging): all 400 lines verified, 0 lost" in out
    assert RemoteLocalAWS(url).stats().events_accepted >= 400
    # the log group it leaves in the account expires its events
    import boto3

    logs = boto3.client("logs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")
    groups = logs.describe_log_groups(logGroupNamePrefix="airflow-demo-")["logGroups"]
    assert [group.get("retentionInDays") for group in groups] == [1], groups


def _events(messages: list[str], spilled_at: int = -1) -> list[ReadEvent]:
    return [ReadEvent(i, m, "s3://b/p/x.jsonl.gz" if i == spilled_at else CLOUDWATCH,
                      reason="max_latency" if i == spilled_at else None) for i, m in enumerate(messages)]


def test_compare_counts_spilled_lost_truncated_and_unexpected_lines() -> None:
    expected = ["a", "b" * 50, "c", "d"]
    check = TaskCheck("t", "s", len(expected))
    compare(check, expected, _events(["a", "b" * 20, "c", "zzz", "a"], spilled_at=2))
    assert (check.arrived, check.in_cloudwatch, dict(check.spilled)) == (2, 1, {"max_latency": 1})
    assert (check.lost, check.truncated, check.unexpected, check.duplicates) == (2, 1, 1, 1)
    assert check.spill_objects == {"s3://b/p/x.jsonl.gz"} and check.in_order and not check.ok

    reordered = TaskCheck("t", "s", 3)
    compare(reordered, ["a", "b", "c"], _events(["b", "a", "c"]))
    assert reordered.ok and not reordered.in_order


def test_the_workload_is_deterministic_and_its_minimum_calls_count_split_events() -> None:
    plan = plan_task(7, 1, 300, 1, "manual__r")
    again = plan_task(7, 1, 300, 1, "manual__r")
    formatter = CloudWatchLogFormatter(LOG_FORMAT)
    messages = expected_messages(plan, formatter)
    assert messages == expected_messages(again, formatter) and len(messages) == 300 == len(set(messages))
    assert sum(1 for m in messages if len(m.encode()) > 1_048_550) == 1
    assert any("Traceback (most recent call last)" in m for m in messages)
    assert any(m.startswith('{"event":"batch_processed"') for m in messages)
    assert plan.stream == "dag_id=demo_etl/run_id=manual__r/task_id=extract_customers/attempt=1.log"
    assert minimum_put_calls(messages) == 3  # the >1 MB line needs 2 events, and they fill 2 calls


def test_the_exit_code_says_a_line_was_lost(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mwaa_logging.demo import runner

    def lossy_run(config: runner.DemoConfig, target: object, handlers: list[str], console: object,
                  on_result: Callable[[runner.RunResult], None] | None = None) -> list[runner.RunResult]:
        check = TaskCheck("t", "s", 2)
        compare(check, ["a", "b"], _events(["a"]))
        result = runner.RunResult(handlers[0], "g", None, [check], {}, [], None, 1.0, 0.1)
        if on_result is not None:
            on_result(result)
        return [result]

    monkeypatch.setattr(runner, "run_handlers", lossy_run)
    assert main(["demo", "--quiet", "--storm", "0", "--tasks", "1"]) == 1
    assert "RESULT (mwaa-logging): FAILED: 1 lost" in capsys.readouterr().out


def test_an_http_server_that_is_not_cloudwatch_is_a_one_line_error_before_any_task_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `python -m http.server`: it answers (the preflight passes) but not as CloudWatch Logs. The run ended in a
    # botocore traceback from the read-back, after the tasks had spilled everything to the default directory.
    import functools
    import http.server
    import threading

    from mwaa_logging.demo import runner
    from mwaa_logging.spill.local import default_spill_directory

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = []
    monkeypatch.setattr(runner.Run, "_spawn", lambda *args: started.append(args) or None)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["demo", "--quiet", "--tasks", "1", "--lines", "200", "--duration", "2",
                     "--endpoint-url", url]) == 2
    finally:
        server.shutdown()
        server.server_close()
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "Traceback" not in captured.err + captured.out, captured
    assert f"mwaa-logging demo: {url} does not answer as CloudWatch Logs (GetLogEvents): " in captured.err
    assert started == []  # no task process
    assert not default_spill_directory().exists() or not any(default_spill_directory().rglob("airflow-demo-*"))


def test_a_read_back_that_fails_is_a_one_line_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botocore.exceptions import ClientError

    from mwaa_logging.demo import runner

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no\nway"}}, "GetLogEvents")

    monkeypatch.setattr(runner, "check_stream", refused)
    run = runner.Run(runner.DemoConfig(tasks=1, lines=20), target=_NoAWS(), handler="mwaa-logging",  # type: ignore[arg-type]
                     console=None, workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(runner.ReadBackError) as raised:
        run._read_back(with_spill=True)
    message = str(raised.value)
    assert "\n" not in message and "cannot read back the streams of airflow-demo-" in message, message
    assert "AccessDeniedException" in message

    def failing_run(*args: Any, **kwargs: Any) -> Any:
        raise runner.ReadBackError("cannot read back the streams of g: denied")

    monkeypatch.setattr(runner, "run_handlers", failing_run)
    assert main(["demo", "--quiet", "--tasks", "1", "--lines", "200", "--duration", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "mwaa-logging demo: cannot read back the streams of g: denied\n", captured


class _NoAWS:
    """A target whose clients are never called (check_stream is replaced)."""

    env: dict[str, str] = {}

    def logs_client(self) -> None:
        return None

    def s3_client(self) -> None:
        return None


def test_on_the_embedded_endpoint_the_bucket_of_any_s3_spill_target_is_made(tmp_path: Path) -> None:
    # s3://no-such-bucket/x fell back to the default local directory without a word (and left its files there).
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    done = demo("--tasks", "1", "--lines", "200", "--big-events", "0", "--duration", "2", "--storm", "4",
                "--max-latency", "3", "--quiet", "--spill-to", "s3://no-such-bucket/x", cwd=tmp_path,
                env={"XDG_CACHE_HOME": str(xdg)})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"spilled where\s*│\s*\d+ objects under s3://no-such-bucket/x\b", out), out
    assert "cannot read spill location" not in out
    assert not list(xdg.rglob("*")), list(xdg.rglob("*"))
