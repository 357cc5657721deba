"""Shared pieces of the benchmarks: sizes per mode, log lines, the endpoint process, handlers, timing.

The endpoint runs in its own process (``python -m mwaa_logging.testing.cli``) so that its CPU and GIL
never count against the handler being measured, as with the real CloudWatch. Run as a script, this
module is also the worker process of the throttle benchmark (``python _workloads.py worker ...``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``short`` (CI, default) or ``full``; chosen with ``MWAA_LOGGING_BENCH``.
MODE = os.environ.get("MWAA_LOGGING_BENCH", "short").strip().lower() or "short"
if MODE not in ("short", "full"):
    raise SystemExit(f"MWAA_LOGGING_BENCH must be 'short' or 'full', got {MODE!r}")
FULL = MODE == "full"

#: PutLogEvents limits (kept here so a worker process needs no package import to size its calls).
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26

#: Fake credentials and no config files: nothing here may reach a real account.
FAKE_AWS_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_AWS_VARIABLES_TO_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                          "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def clean_aws_environ(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without real-AWS variables or endpoint overrides, plus the fake credentials."""
    env = {k: v for k, v in base.items()
           if k not in _AWS_VARIABLES_TO_DROP and not k.startswith(("AWS_ENDPOINT_URL", "MWAA_LOGGING_"))}
    env.update(FAKE_AWS_ENV)
    return env


# -- log lines ------------------------------------------------------------------------------------

#: A ~200-byte Airflow task log line (the calling-thread benchmark logs it as is, no %-arguments).
LINE_200B = (
    "[2026-11-24T08:15:42.123+0000] {taskinstance.py:1234} INFO - Executing query batch 4821 on "
    "connection pg_main: inserted 18342 rows into staging.orders in 0.412s (request id 9f3c2a7b1e4d5c60)"
)
assert 190 <= len(LINE_200B) <= 210, len(LINE_200B)


_MODULES = ("taskinstance.py", "base.py", "s3.py", "sql.py", "logging_mixin.py", "standard_task_runner.py")
_TEMPLATES = (
    "[2026-11-24T08:{m:02d}:{s:02d}.{ms:03d}+0000] {{{mod}:{line}}} INFO - Executing query batch {n} on "
    "connection pg_{c}: inserted {rows} rows in {el:.3f}s (request {rid})",
    "[2026-11-24T08:{m:02d}:{s:02d}.{ms:03d}+0000] {{{mod}:{line}}} WARNING - Retrying upload of "
    "s3://bucket-{c}/data/part-{n:05d}.parquet after {el:.2f}s: SlowDown (request {rid})",
    "[2026-11-24T08:{m:02d}:{s:02d}.{ms:03d}+0000] {{{mod}:{line}}} INFO - Marking task as SUCCESS. "
    "dag_id=etl_{c}, task_id=load_{n}, rows={rows}, took {el:.1f}s (request {rid})",
)


def numbered_lines(first: int, count: int) -> list[str]:
    """Varied ~200-byte task log lines, each ending in its sequence number (``first`` onwards), so the
    endpoint's copy proves what arrived; numbers and ids vary as in real logs (a realistic gzip ratio)."""
    rnd = random.Random(first)
    lines = []
    for seq in range(first, first + count):
        text = rnd.choice(_TEMPLATES).format(
            m=rnd.randrange(60), s=rnd.randrange(60), ms=rnd.randrange(1000), mod=rnd.choice(_MODULES),
            line=rnd.randrange(100, 3000), n=rnd.randrange(100_000), c=rnd.randrange(10),
            rows=rnd.randrange(1_000_000), el=rnd.random() * 100, rid=f"{rnd.getrandbits(64):016x}",
        )
        lines.append(f"{text} host=worker-{seq % 7} seq={seq:010d}")
    return lines


def seq_of(message: str) -> int | None:
    _, sep, tail = message.rpartition(" seq=")
    return int(tail) if sep and tail.isdigit() else None


def spilled_seqs(directory: Path) -> list[int]:
    """Sequence numbers of the numbered lines our handler spilled into ``directory`` (a local spill target)."""
    from mwaa_logging.spill.local import LocalSpillSink
    from mwaa_logging.spillformat import decode_records

    found = []
    for path in LocalSpillSink(directory).iter_files():
        for record in decode_records(path.read_bytes()):
            seq = seq_of(record.message)
            if seq is not None:
                found.append(seq)
    return found


def minimum_calls(message_sizes: Sequence[int], max_count: int = MAX_BATCH_EVENTS) -> int:
    """Fewest PutLogEvents calls that can carry one stream's events (10k events / 1 MiB per call)."""
    calls, count, size = 0, 0, 0
    for message_size in message_sizes:
        event = message_size + EVENT_OVERHEAD
        if count and (count == max_count or size + event > MAX_BATCH_BYTES):
            calls, count, size = calls + 1, 0, 0
        count, size = count + 1, size + event
    return calls + (1 if count else 0)


# -- the endpoint ---------------------------------------------------------------------------------

class Endpoint:
    """The local CloudWatch Logs endpoint in a child process, controlled through its admin API."""

    def __init__(self, put_quota: float | None = None, start_timeout: float = 60.0) -> None:
        from mwaa_logging.testing.admin import RemoteLocalAWS

        command = [sys.executable, "-m", "mwaa_logging.testing.cli"]
        if put_quota is not None:
            command += ["--put-quota", str(put_quota)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env=clean_aws_environ(os.environ))
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            self.url = lines.get(timeout=start_timeout).strip()
        except queue.Empty:
            self.stop()
            raise RuntimeError("the local endpoint did not start") from None
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"unexpected first line from the local endpoint: {self.url!r}")
        self.admin = RemoteLocalAWS(self.url, timeout=60.0)
        self.admin.health()

    def env(self) -> dict[str, str]:
        """Environment of a process that should log to this endpoint."""
        env = clean_aws_environ(os.environ)
        env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = self.url
        return env

    def seqs(self, group: str, stream: str) -> list[int]:
        """Sequence numbers of the events stored in one stream (unnumbered lines are skipped)."""
        found = (seq_of(message) for _, message in self.admin.events(group, stream))
        return [seq for seq in found if seq is not None]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Loss:
    """What one stream should hold against what the endpoint stored."""

    expected: int
    stored: int
    distinct: int

    @property
    def lost(self) -> int:
        return self.expected - self.distinct

    @property
    def duplicates(self) -> int:
        return self.stored - self.distinct


def loss_of(seqs: Sequence[int], expected: range) -> Loss:
    wanted = set(expected)
    distinct = {seq for seq in seqs if seq in wanted}
    return Loss(expected=len(wanted), stored=len(seqs), distinct=len(distinct))


# -- handlers -------------------------------------------------------------------------------------

def watchtower_handler(url: str, group: str, stream: str, **kwargs: Any) -> logging.Handler:
    """watchtower 3.4 with its defaults, on a boto3 client for ``url`` (it calls the endpoint in __init__)."""
    import boto3
    import watchtower

    client = boto3.client("logs", endpoint_url=url, region_name=FAKE_AWS_ENV["AWS_DEFAULT_REGION"],
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    handler: logging.Handler = watchtower.CloudWatchLogHandler(
        log_group_name=group, log_stream_name=stream, boto3_client=client, **kwargs)
    return handler


def ours_handler(url: str, group: str, stream: str, **kwargs: Any) -> logging.Handler:
    """mwaa-logging's handler with default settings except the endpoint (and ``kwargs``)."""
    from mwaa_logging import CloudWatchLogHandler

    return CloudWatchLogHandler(log_group_name=group, log_stream_name=stream, endpoint_url=url, **kwargs)


def flush_handler(handler: logging.Handler, timeout: float = 120.0) -> None:
    """Deliver what ``handler`` holds, as a user would: ``flush()`` (watchtower's takes no timeout)."""
    from mwaa_logging import CloudWatchLogHandler

    if isinstance(handler, CloudWatchLogHandler):
        if not handler.flush(timeout):
            raise TimeoutError(f"flush did not finish in {timeout} s")
    else:
        handler.flush()


def isolated_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger with exactly ``handler``, level INFO, not propagating (no other handler runs)."""
    logger = logging.getLogger(name)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def keep_only(logger: logging.Logger, handler: logging.Handler) -> None:
    """Detach every other handler (pytest's log capture attaches itself to non-propagating loggers)."""
    for other in [h for h in logger.handlers if h is not handler]:
        logger.removeHandler(other)


# -- measuring ------------------------------------------------------------------------------------

def interleaved(blocks: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every block once per round, in a rotating order; each block returns its own measurement.

    Rotation spreads slow moments of a shared machine (and the order's cache effects) over all blocks.
    """
    names = list(blocks)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(blocks[name]())
    return samples


def median_ratio(samples: Mapping[str, Sequence[float]], name: str, baseline: str) -> float:
    """Median over rounds of ``name / baseline`` measured in the same round (pairs share conditions)."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[baseline], strict=True))


#: Room CI gives a timing target on a noisy, shared 2-core machine (a real regression is larger); the
#: table compares each measured value with the target itself.
NOISE_MARGIN = 0.10


def at_most(measured: float, target: float) -> bool:
    """``measured <= target``, give or take the noise margin."""
    return measured <= target * (1 + NOISE_MARGIN)


def at_least(measured: float, target: float) -> bool:
    """``measured >= target``, give or take the noise margin."""
    return measured * (1 + NOISE_MARGIN) >= target


# -- the throttle benchmark's worker processes --------------------------------------------------------

@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process logs; sent to it as JSON on its command line."""

    kind: str                     # "ours" or "watchtower"
    url: str
    group: str
    stream: str
    first_seq: int
    events: int
    seconds: float                # emit the events evenly over this long
    settings: Mapping[str, Any]   # extra keywords for our handler


def run_worker(plan: WorkerPlan, wait_for_start: Callable[[], None]) -> dict[str, Any]:
    """Build the handler, wait for the start signal, emit the lines at an even pace, flush, report."""
    if plan.kind == "ours":
        handler = ours_handler(plan.url, plan.group, plan.stream, **plan.settings)
    else:
        handler = watchtower_handler(plan.url, plan.group, plan.stream)
    logger = isolated_logger("bench.worker", handler)
    lines = numbered_lines(plan.first_seq, plan.events)
    wait_for_start()
    started = time.time()
    interval = plan.seconds / max(1, plan.events)
    step = max(1, plan.events // 200)  # pace in small bursts of ``step`` lines
    for index, line in enumerate(lines):
        if index % step == 0:
            ahead = started + index * interval - time.time()
            if ahead > 0:
                time.sleep(ahead)
        logger.info(line)
    emitted_until = time.time()
    flush_handler(handler, timeout=600.0)
    report: dict[str, Any] = {"started": started, "emitted_until": emitted_until, "flushed_at": time.time()}
    stats = getattr(handler, "stats", None)
    if callable(stats):
        report["stats"] = stats().as_dict()
    handler.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``worker PLAN_JSON``: print ``ready``, wait for a line on stdin, run, print the report as JSON."""
    parser = argparse.ArgumentParser(description="worker process of the throttle benchmark")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("plan", help="the WorkerPlan as JSON")
    args = parser.parse_args(argv)
    plan = WorkerPlan(**json.loads(args.plan))

    def wait_for_start() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    report = run_worker(plan, wait_for_start)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
