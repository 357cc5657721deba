"""The operator commands from a shell, as CI runs them (no terminal): bad values are usage errors (exit 2, no
traceback), names and messages are printed as they are, the endpoint's printed environment is enough."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mwaa_logging.spill.local import LocalSpillSink
from mwaa_logging.spillformat import SpillRecord
from mwaa_logging.testing.local_aws import LocalAWS


def mwaa_logging(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mwaa_logging.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "CI": "true", **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "said"), [
    (["read", "g", "s", "--spill-to", "s3://"], "argument --spill-to: expected s3://bucket[/prefix], got 's3://'"),
    (["read", "g", "s", "--endpoint-url", "localhost:4566"], "argument --endpoint-url: expected an http://"),
    (["read", "g", "s", "--s3-endpoint-url", "ftp://x"], "argument --s3-endpoint-url: expected an http://"),
    (["replay", "s3:///prefix"], "argument SOURCE: expected s3://bucket[/prefix], got 's3:///prefix'"),
    # as the handler's spill_to takes them (the host, the query, the scheme were dropped: another directory was read)
    (["replay", "file://tmp/rb/sp1"], "argument SOURCE: a file:// URL names a directory of this machine: "
                                      "file:///absolute/path, got 'file://tmp/rb/sp1'"),
    (["replay", "file:///tmp/rb/sp1?x=1"], "argument SOURCE: a file:// spill URL takes no ?query or #fragment"),
    (["replay", "file:///tmp/rb/sp1#x"], "argument SOURCE: a file:// spill URL takes no ?query or #fragment"),
    (["replay", "http://x/y"], "argument SOURCE: expected a directory path, a file:// URL or s3://bucket/prefix, "
                               "got 'http://x/y'"),
    (["replay", "s3://b"], "argument SOURCE: 'b' is no S3 bucket name"),
    (["read", "g", "s", "--spill-to", "file://tmp/rb/sp1"], "argument --spill-to: a file:// URL names a directory"),
    (["read", "g", "s", "--spill-to", "s3://bucket/p?x=1"], "argument --spill-to: an s3:// spill URL takes no ?query"),
    (["replay", "/no/spill", "--max-objects-per-unit", "0"], "--max-objects-per-unit: expected an integer >= 1"),
    (["replay", "/no/spill", "--rate", "nan"], "argument --rate: expected a number > 0, got 'nan'"),
    (["replay", "/no/spill", "--endpoint-url", "notaurl"], "argument --endpoint-url: expected an http://"),
    (["replay", "/no/spill", "--expected-bucket-owner", "12-34"], "expected an AWS account id (12 digits)"),
    (["replay", "/no/spill", "--rate-limit-scope", "fleet"], "argument --rate-limit-scope: rate_limit_scope must be"),
    (["replay", "/no/spill", "--rate-limit-scope", "redis://h:1/x"], "'redis://h:1/x' is not a usable Redis URL"),
    (["local-aws", "--put-quota", "0"], "argument --put-quota: expected a number > 0, got '0'"),
    (["local-aws", "--port", "70000"], "argument --port: expected a port from 0 to 65535, got '70000'"),
])
def test_a_bad_value_is_a_usage_error_not_a_traceback(args: list[str], said: str) -> None:
    done = mwaa_logging(*args)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "usage: mwaa-logging" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_replay_of_a_file_says_it_is_not_a_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "spill"
    a_file.write_text("")
    for source in (str(a_file), f"file://{a_file}", f"file://localhost{a_file}"):
        done = mwaa_logging("replay", source, "--dry-run", "--no-progress")
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr.strip() == f"replay: spill directory {a_file} is not a directory"
    done = mwaa_logging("replay", str(tmp_path / "none"), "--dry-run", "--no-progress")
    assert done.stderr.strip() == f"replay: spill directory {tmp_path / 'none'} does not exist"


def test_read_says_a_spill_to_that_is_no_directory_and_exits_1_with_cloudwatchs_lines(
    aws_in_env: LocalAWS, tmp_path: Path
) -> None:
    """A mistyped --spill-to directory read as "nothing spilled there" (exit 0, not a word), while a mistyped
    bucket was an error."""
    logs = aws_in_env.client("logs")
    logs.create_log_group(logGroupName="g")
    logs.create_log_stream(logGroupName="g", logStreamName="s")
    logs.put_log_events(logGroupName="g", logStreamName="s",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "in cloudwatch"}])
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    spill = tmp_path / "spill"
    spill.mkdir()
    env = {**aws_in_env.env(), "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    for location, said in ((str(tmp_path / "typo-dir"), f"no such directory {tmp_path / 'typo-dir'}"),
                           (f"file://{tmp_path}/typo-dir", f"no such directory {tmp_path / 'typo-dir'}"),
                           (str(a_file), f"{a_file} is not a directory")):
        done = mwaa_logging("read", "g", "s", "--spill-to", location, "--spill-to", str(spill), env=env)
        assert done.returncode == 1, done.stderr
        assert done.stdout.endswith(" in cloudwatch\n")
        assert done.stderr.strip() == f"mwaa-logging read: cannot read spilled lines at {location}: {said}"
    done = mwaa_logging("read", "g", "s", "--spill-to", str(spill), env=env)
    assert (done.returncode, done.stderr) == (0, "")


def test_replay_with_a_profile_that_does_not_exist_says_so(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "none")
    done = mwaa_logging("replay", str(tmp_path), "--profile", "no-such-profile",
                        env={"AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == "replay: The config profile (no-such-profile) could not be found"


def test_replay_prints_names_and_errors_as_they_are(aws_in_env: LocalAWS, tmp_path: Path) -> None:
    """Stream names and error messages may hold '[...]': rich took them for markup, dropped '[bold]' and crashed
    on '[/x]' after the replay had run (no summary, no errors, a traceback). Errors are not wrapped either."""
    now = int(time.time() * 1000) - 60_000
    spill = tmp_path / "spill"
    sink = LocalSpillSink(spill)
    for stream in ("task[/x]", "[bold]shown"):
        sink.write([SpillRecord("g", stream, now + i, f"{stream} {i}", "max_latency") for i in range(3)])
    corrupt = spill / "g" / ("y" * 150) / "20261207T000000-host-1-00000001.jsonl.gz"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x1f\x8b[/not gzip]")

    done = mwaa_logging("replay", str(spill), "--endpoint-url", aws_in_env.url, "--no-progress")
    assert done.returncode == 1, done.stderr  # one object failed
    assert "Traceback" not in done.stderr
    assert "task[/x]" in done.stdout and "[bold]shown" in done.stdout
    error = next(line for line in done.stderr.splitlines() if line.startswith("read "))
    assert error.startswith(f"read {corrupt}: ")  # whole on one line, whatever the width
    assert aws_in_env.messages("g", "task[/x]") == [f"task[/x] {i}" for i in range(3)]
    assert corrupt.exists()  # kept for the next run


def test_local_aws_prints_an_environment_a_bare_shell_can_use(tmp_path: Path) -> None:
    """The printed ``export`` line is all a shell without AWS configuration needs to reach the endpoint."""
    server = subprocess.Popen([sys.executable, "-m", "mwaa_logging.cli", "local-aws"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stderr is not None
        url = server.stdout.readline().strip()
        export = server.stderr.readline().strip()
        assert export.startswith("export ")
        printed = dict(item.split("=", 1) for item in export.removeprefix("export ").split())
        bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **printed}
        assert printed["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] == url
        done = subprocess.run([sys.executable, "-m", "mwaa_logging.cli", "read", "no-group", "no-stream"],
                              capture_output=True, text=True, timeout=60, env=bare)
        assert (done.returncode, done.stdout) == (0, "")  # reached the endpoint: no error, an empty log
        assert done.stderr.startswith("mwaa-logging read: no lines in no-group/no-stream (searched: CloudWatch")
    finally:
        server.terminate()
        assert server.wait(10) == 0
