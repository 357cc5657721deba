"""One simulated Airflow task process: logs its plan through a CloudWatch handler, reports progress.

``python -m mwaa_logging.demo.worker CONFIG.json INDEX``. The config (written by the runner) names
the handler (``mwaa-logging`` or ``watchtower``), the log group, the workload and the handler
settings. Progress goes to ``<status_dir>/task-<INDEX>.json`` (replaced atomically, about 4 times a
second): lines logged, the handler's counters, and at the end ``done`` with timings.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from mwaa_logging.demo.workload import LOG_FORMAT, TASK_LOGGER, TaskPlan, emit_line, plan_task

MWAA_LOGGING = "mwaa-logging"
WATCHTOWER = "watchtower"
STATUS_INTERVAL = 0.25


def status_path(status_dir: str | os.PathLike[str], index: int) -> Path:
    return Path(status_dir) / f"task-{index}.json"


def write_json_atomically(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


def build_handler(config: dict[str, Any], plan: TaskPlan) -> logging.Handler:
    """The handler under test, configured as the runner asked."""
    if config["handler"] == WATCHTOWER:
        import watchtower

        wt = watchtower.CloudWatchLogHandler(log_group_name=config["group"], log_stream_name=plan.stream)
        wt.setFormatter(watchtower.CloudWatchLogFormatter(LOG_FORMAT))
        counted: Any = wt
        counted.stats = WireCounts(counted.cwl_client).stats
        return wt
    from mwaa_logging import CloudWatchLogFormatter, CloudWatchLogHandler

    ours = CloudWatchLogHandler(log_group_name=config["group"], log_stream_name=plan.stream, **config["settings"])
    ours.setFormatter(CloudWatchLogFormatter(LOG_FORMAT))
    return ours


class WireCounts:
    """watchtower's PutLogEvents calls as this task's boto3 client makes them (every attempt, its retries too):
    calls, throttled, events accepted and request bytes, in the keys of mwaa-logging's ``stats().as_dict()``
    (so a run's totals are its tasks' own counts, also on an endpoint other clients use)."""

    def __init__(self, client: Any) -> None:
        self.counts = {"put_calls": 0, "throttled": 0, "delivered": 0, "bytes_sent": 0, "spilled_total": 0}
        client.meta.events.register("before-send.cloudwatch-logs.PutLogEvents", self._sent)
        client.meta.events.register("needs-retry.cloudwatch-logs.PutLogEvents", self._answered)

    def _sent(self, request: Any, **_: Any) -> None:
        self.counts["put_calls"] += 1
        self.counts["bytes_sent"] += len(request.body or b"")

    def _answered(self, response: Any = None, request_dict: Any = None, **_: Any) -> None:
        if response is None:  # no answer (connection error)
            return
        http, parsed = response
        if http.status_code == 200:
            events = orjson.loads(request_dict["body"]).get("logEvents", []) if request_dict else []
            rejected = parsed.get("rejectedLogEventsInfo") or {}
            self.counts["delivered"] += max(0, len(events) - _rejected(rejected, len(events)))
        elif (parsed.get("Error") or {}).get("Code") == "ThrottlingException":
            self.counts["throttled"] += 1

    def stats(self) -> Any:
        counts = dict(self.counts)

        class Snapshot:
            @staticmethod
            def as_dict() -> dict[str, int]:
                return counts

        return Snapshot()


def _rejected(info: dict[str, int], total: int) -> int:
    """Events a PutLogEvents answer's ``rejectedLogEventsInfo`` refused (indexes as CloudWatch gives them)."""
    rejected = 0
    if "tooOldLogEventEndIndex" in info:
        rejected += info["tooOldLogEventEndIndex"]
    if "expiredLogEventEndIndex" in info:
        rejected = max(rejected, info["expiredLogEventEndIndex"])
    if "tooNewLogEventStartIndex" in info:
        rejected += total - info["tooNewLogEventStartIndex"]
    return min(rejected, total)


class Reporter:
    """Writes this task's status file in the background until stopped."""

    def __init__(self, path: Path, handler: logging.Handler, index: int) -> None:
        self.path = path
        self.handler = handler
        self.index = index
        self.logged = 0
        self.warnings: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        stats_of = getattr(self.handler, "stats", None)
        stats = stats_of().as_dict() if callable(stats_of) else None
        return {"task": self.index, "pid": os.getpid(), "logged": self.logged, "stats": stats,
                "warnings": dict(self.warnings), "done": False, **extra}

    def write(self, **extra: Any) -> None:
        write_json_atomically(self.path, self.snapshot(**extra))

    def _loop(self) -> None:
        while not self._stop.wait(STATUS_INTERVAL):
            self.write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _count_warnings(reporter: Reporter) -> None:
    """Count watchtower's warnings (its only error channel) by kind, and keep printing them to stderr."""
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        text = str(message)
        if text.startswith("Failed to deliver logs: None"):
            kind = "batches dropped"  # watchtower gives up on a batch after 5 failed attempts
        elif text.startswith("Failed to deliver"):
            kind = "failed attempts"
        elif "truncated" in text:
            kind = "truncated events"
        else:
            kind = "other warnings"
        reporter.warnings[kind] += 1
        shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    warnings.simplefilter("always")


def main(argv: list[str]) -> int:
    config: dict[str, Any] = orjson.loads(Path(argv[0]).read_bytes())
    index = int(argv[1])
    plan = plan_task(config["seed"], index, config["lines"], config["big_events"], config["run_id"])
    # "nothing logged yet" before the handler is built (a second or so of imports and clients): a task that dies
    # before its first status is not counted as having logged every line (then lost by the handler)
    write_json_atomically(status_path(config["status_dir"], index),
                          {"task": index, "pid": os.getpid(), "logged": 0, "stats": None, "warnings": {},
                           "done": False})
    handler = build_handler(config, plan)
    logger = logging.getLogger(TASK_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    reporter = Reporter(status_path(config["status_dir"], index), handler, index)
    _count_warnings(reporter)
    reporter.start()
    duration = float(config["duration"])
    started = time.monotonic()
    for line in plan.lines:
        if line.pause:
            time.sleep(line.pause * duration)
        emit_line(line)
        reporter.logged += 1
    logged_at = time.monotonic()
    handler.close()
    closed_at = time.monotonic()
    logger.removeHandler(handler)
    reporter.stop()
    # CLOCK_MONOTONIC is system-wide on Linux: the runner compares closed_at with the time this process exits.
    reporter.write(done=True, log_seconds=logged_at - started, close_seconds=closed_at - logged_at,
                   closed_at=closed_at)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
