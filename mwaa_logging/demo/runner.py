"""Run the simulated Airflow worker through one handler, watch it, read everything back, judge it."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from mwaa_logging.demo.endpoint import EndpointCounts, Neighbour, Storm, Target, one_line
from mwaa_logging.demo.progress import Monitor, Sample, make_display, read_statuses
from mwaa_logging.demo.verify import TaskCheck, check_stream
from mwaa_logging.demo.worker import MWAA_LOGGING, WATCHTOWER
from mwaa_logging.demo.workload import LOG_FORMAT, TaskPlan, big_event_count, expected_messages, plan_task
from mwaa_logging.spill.factory import local_directory_of
from mwaa_logging.spill.local import default_spill_directories

#: Retention set on the log groups a ``--real-aws`` run created (they are left behind for a look).
RETENTION_DAYS = 1
#: Time allowed after the logging duration for the task processes to close their handlers and exit.
EXIT_GRACE = 120.0
#: Upper bound of the time allowed to ``mwaa-logging replay`` (a day, as ``--duration``).
MAX_REPLAY_SECONDS = 86_400.0


class ReadBackError(Exception):
    """The streams could not be read back (a one-line message: the endpoint's error)."""


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo's options decide."""

    tasks: int = 8
    lines: int = 5000
    big_events: int = 2
    duration: float = 30.0
    seed: int = 2026
    quota: float | None = 5.0
    rate_limit: float | None = 4.0
    neighbour_tps: float = 1.5
    storm: float = 12.0
    storm_at: float = 0.3
    max_latency: float = 10.0
    spill_to: str | None = None
    #: After the read-back, re-ingest spilled lines with ``mwaa-logging replay`` and check CloudWatch alone.
    replay: bool = True
    quiet: bool = False
    run_id: str = "manual__2026-11-24T00_00_00+00_00"
    stamp: str = "demo"

    def group(self, handler: str) -> str:
        suffix = "" if handler == MWAA_LOGGING else f"-{handler}"
        return f"airflow-demo-{self.stamp}{suffix}-Task"

    @property
    def big_events_generated(self) -> int:
        """Events > 1 MB each task really logs (``big_events`` at most; short tasks have room for fewer)."""
        return big_event_count(self.lines, self.big_events)

    def plans(self) -> list[TaskPlan]:
        return [plan_task(self.seed, i, self.lines, self.big_events, self.run_id) for i in range(self.tasks)]


@dataclass
class RunResult:
    """One handler's run: what the tasks did, what the endpoint saw, what was read back."""

    handler: str
    group: str
    spill_to: str | None
    checks: list[TaskCheck]
    statuses: dict[int, dict[str, Any]]
    timeline: list[Sample]
    counts: EndpointCounts | None
    wall_seconds: float
    read_seconds: float
    failures: list[str] = field(default_factory=list)
    #: When every PutLogEvents call was throttled (seconds on the timeline's clock), if a storm ran.
    storm: tuple[float, float] | None = None
    #: CloudWatch alone, read after ``mwaa-logging replay`` (None: no replay ran).
    after_replay: list[TaskCheck] | None = None
    replay_seconds: float = 0.0
    replay_output: str = ""
    #: Tasks that exited with an error (or were killed): without a status they logged what was read back.
    failed_tasks: frozenset[int] = frozenset()

    @property
    def expected(self) -> int:
        return sum(c.expected for c in self.checks)

    @property
    def lost(self) -> int:
        """Expected lines not found, whether logged or not (see :meth:`never_logged`)."""
        return sum(c.lost for c in self.checks)

    def logged_by(self, index: int) -> int:
        """Lines task ``index`` really logged: all of them once it finished (or when it exited 0 leaving no
        status); else the more of its last status (written 4 times a second, the first one before its handler
        is built) and the last of its lines found: a task killed midway logged only so many."""
        check = self.checks[index]
        status = self.statuses.get(index)
        if not status and index not in self.failed_tasks:
            return check.expected
        status = status or {}
        if status.get("done"):
            return check.expected
        return min(check.expected, max(int(status.get("logged") or 0), check.found_through))

    @property
    def logged(self) -> int:
        """Lines the tasks really logged (:attr:`expected` are the planned ones)."""
        return sum(self.logged_by(index) for index in range(len(self.checks)))

    @property
    def never_logged(self) -> int:
        """Lost lines a task never logged (it died first): not the handler's loss."""
        return self.expected - self.logged

    @property
    def lost_after_logging(self) -> int:
        return self.lost - self.never_logged

    def total(self, name: str) -> int:
        return sum(int(getattr(c, name)) for c in self.checks)

    def handler_total(self, name: str) -> int | None:
        values = [s["stats"][name] for s in self.statuses.values() if s.get("stats")]
        return sum(values) if values else None

    def warnings(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for status in self.statuses.values():
            for kind, n in status.get("warnings", {}).items():
                merged[kind] = merged.get(kind, 0) + int(n)
        return merged

    @property
    def ok(self) -> bool:
        replayed_ok = self.after_replay is None or all(c.ok for c in self.after_replay)
        return not self.failures and all(c.ok for c in self.checks) and replayed_ok


def formatter_for(handler: str) -> logging.Formatter:
    if handler == WATCHTOWER:
        import watchtower

        return watchtower.CloudWatchLogFormatter(LOG_FORMAT)  # type: ignore[no-any-return]
    from mwaa_logging import CloudWatchLogFormatter

    return CloudWatchLogFormatter(LOG_FORMAT)


def budget_namespace(config: DemoConfig) -> str:
    """A host-budget namespace of this run only: other processes of the host (and earlier runs' learned
    rates) do not share the demo's budget."""
    return f"demo-{config.stamp}"


def handler_settings(config: DemoConfig) -> dict[str, Any]:
    """Our handler's settings in the task processes."""
    return {"spill_to": config.spill_to, "rate_limit_scope": "host", "put_rate_limit": config.rate_limit,
            "rate_limit_namespace": budget_namespace(config), "max_latency": config.max_latency}


def remove_budget_files(config: DemoConfig) -> None:
    """The run's host budget files (a few bytes each in /dev/shm or the temp dir)."""
    from mwaa_logging.budgets.host import default_directory

    for path in default_directory().glob(f"{budget_namespace(config)}-*.budget"):  # every name and rate
        path.unlink(missing_ok=True)


class Run:
    """One handler's run against ``target``."""

    def __init__(self, config: DemoConfig, target: Target, handler: str, console: Console,
                 workdir: Path) -> None:
        self.config = config
        self.target = target
        self.handler = handler
        self.console = console
        self.workdir = workdir / handler
        self.status_dir = self.workdir / "status"
        self.status_dir.mkdir(parents=True, exist_ok=True)
        self.group = config.group(handler)
        self.spill_to = config.spill_to if handler == MWAA_LOGGING else None
        #: How far the run got ("tasks", "read-back", "replay"), and the first read-back's checks: for Ctrl-C.
        self._stage = "tasks"
        self._checks: list[TaskCheck] | None = None
        #: Tasks that exited non-zero or were killed (:meth:`_wait`).
        self._failed_tasks: set[int] = set()
        #: The default spill directories (and their parents) that existed before the run: those it made
        #: itself are removed again when empty.
        self._existing = {path for directory in default_spill_directories()
                          for path in (directory, directory.parent) if path.exists()}

    def _worker_config(self) -> Path:
        path = self.workdir / "config.json"
        config = self.config
        path.write_bytes(orjson.dumps({
            "handler": self.handler, "group": self.group, "seed": config.seed, "lines": config.lines,
            "big_events": config.big_events, "run_id": config.run_id, "duration": config.duration,
            "status_dir": str(self.status_dir),
            "settings": self._settings() if self.handler == MWAA_LOGGING else {},
        }))
        return path

    def _settings(self) -> dict[str, Any]:
        """Our handler's settings, with the target's CloudWatch endpoint given explicitly (a keyword wins over
        any ``MWAA_LOGGING_ENDPOINT_URL`` the tasks could inherit)."""
        settings = handler_settings(self.config)
        endpoint = self.target.env.get("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
        if endpoint:
            settings["endpoint_url"] = endpoint
        return settings

    def execute(self) -> RunResult:
        """The run; a Ctrl-C (or SIGTERM) is raised on with ``demo_stopped`` set on it: what was done by then."""
        try:
            return self._execute()
        except KeyboardInterrupt as interrupt:
            setattr(interrupt, "demo_stopped", self.stopped_text())  # noqa: B010 -- an attribute of our own
            raise

    def stopped_text(self) -> str:
        """What was done when the run was stopped, in one line."""
        if self._stage == "tasks":
            return f"{self.handler}: task processes stopped, nothing verified"
        if self._stage == "read-back" or self._checks is None:
            return f"{self.handler}: the task processes had finished; read-back stopped, nothing verified"
        arrived = sum(c.arrived for c in self._checks)
        expected = sum(c.expected for c in self._checks)
        lost = sum(c.lost for c in self._checks)
        return (f"{self.handler}: read back, {arrived:,} of {expected:,} lines verified ({lost:,} lost); "
                "`mwaa-logging replay` stopped, CloudWatch alone not checked (its spilled lines may be partly "
                f"replayed{self._replay_again()})")

    def _replay_again(self, source: str = "") -> str:
        """What to do about a replay cut short: run it again, on an endpoint that outlives the demo; nothing on
        the embedded one, which stops with the demo (its CloudWatch and S3, the run's data, are gone with it)."""
        if self.target.owned:
            return "; the embedded endpoint stops with the demo: this run's log group and S3 spill are gone with it"
        command = f"`mwaa-logging replay {source}`" if source else "the replay"
        return f": run {command} again to finish"

    def _execute(self) -> RunResult:
        config, target = self.config, self.target
        neighbour = Neighbour(target, config.neighbour_tps)
        neighbour.prepare()
        # The endpoint's counters are the run's only on an endpoint it started: on a shared one they count every
        # client's calls, and the tasks' own counts are used instead.
        baseline = target.counts() if target.owned else None

        def endpoint_counts() -> EndpointCounts | None:
            counts = target.counts() if baseline is not None else None
            if counts is None or baseline is None:
                return None
            return counts.minus(baseline).minus(neighbour.counts.as_endpoint_counts())

        display = make_display(self.handler, config.tasks, self.console, config.quiet)
        monitor = Monitor(self.status_dir, endpoint_counts, display)
        storm = Storm(target, config.storm_at * config.duration, config.storm,
                      started=lambda: bool(monitor.timeline) and monitor.timeline[-1].logged > 0,
                      clock=monitor.elapsed)
        config_path = self._worker_config()
        env = target.task_env(os.environ)
        processes: list[subprocess.Popen[bytes]] = []
        neighbour.start()
        started = time.monotonic()
        monitor.start()
        try:
            processes.extend(self._spawn(config_path, i, env) for i in range(config.tasks))
            storm.start()
            failures, exited = self._wait(processes, deadline=started + config.duration + EXIT_GRACE)
            wall = time.monotonic() - started
        finally:  # also on Ctrl-C: no task process, storm or neighbour outlives the run
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
            storm.cancel()  # a storm already begun is this run's fault rule: removed below, or by Target.close
            monitor.stop()
            neighbour.stop()
        counts = endpoint_counts()
        self._stage = "read-back"
        target.remove_own_faults()  # the replay must not be throttled
        read_started = time.monotonic()
        checks = self._checks = self._read_back(with_spill=True)
        statuses = read_statuses(self.status_dir)
        for index, status in statuses.items():
            if "closed_at" in status and index in exited:
                status["exit_seconds"] = max(0.0, exited[index] - float(status["closed_at"]))
        result = RunResult(self.handler, self.group, self.spill_to, checks, statuses,
                           monitor.timeline, counts, wall, time.monotonic() - read_started, failures,
                           storm=storm.window, failed_tasks=frozenset(self._failed_tasks))
        sources = self.replay_sources(checks)
        if config.replay and sources:
            self._stage = "replay"
            timeout = self.replay_timeout(checks)
            # one line first: at a low --rate-limit or quota the replay takes minutes, with nothing else shown
            self.console.print(f"{self.handler}: replaying {sum(len(c.spill_objects) for c in checks):,} spill "
                               f"objects with `mwaa-logging replay` (at most {timeout:.0f} s) ...",
                               markup=False, highlight=False, soft_wrap=True)
            replay_started = time.monotonic()
            outputs = []
            for source in sources:
                output, problem = self._replay(source, env, checks)
                outputs.append(f"$ mwaa-logging replay {source}\n{output}".rstrip())
                if problem:
                    result.failures.append(problem)
            result.replay_output = "\n".join(outputs)
            if not any(f.startswith("replay ") for f in result.failures):
                try:
                    result.after_replay = self._read_back(with_spill=False)
                except ReadBackError as error:
                    result.failures.append(f"after the replay: {error}")
            if result.after_replay is not None and not result.failures \
                    and all(check.lost == 0 for check in result.after_replay):
                self.remove_fallback_spill()
            result.replay_seconds = time.monotonic() - replay_started
        if target.url is None:  # real AWS: the group stays; its events expire after a day
            self._set_retention()
        return result

    def _set_retention(self) -> None:
        """A retention of :data:`RETENTION_DAYS` on this run's log group (groups of real accounts otherwise keep
        their events forever); a refusal is said, not raised."""
        try:
            self.target.logs_client().put_retention_policy(logGroupName=self.group, retentionInDays=RETENTION_DAYS)
        except Exception as error:
            self.console.print(f"could not set a {RETENTION_DAYS}-day retention on {self.group}: {error}",
                               markup=False, highlight=False, soft_wrap=True)

    def spill_locations(self) -> list[str]:
        """Where this handler's spilled lines may be: ``spill_to`` (when set), and always the default local spill
        directory the handler falls back to (when ``spill_to`` fails, or is unset). None for a handler that does
        not spill."""
        if self.handler != MWAA_LOGGING:
            return []
        from mwaa_logging.spill.local import default_spill_directory

        locations = [self.spill_to] if self.spill_to else []
        default = str(default_spill_directory())
        if default not in locations:
            locations.append(default)
        return locations

    def remove_fallback_spill(self) -> None:
        """Remove this run's files (spill files, their ``.replayed`` names, replay locks) from the default local
        spill directories, once CloudWatch alone holds every line: the log group's directory there is this run's
        only (its name carries the run's time and pid). A directory the user named with ``--spill-to`` is left
        as it is; a default directory the run made is removed when empty."""
        from mwaa_logging.spill.layout import quote_name

        named = os.path.realpath(local_directory_of(self.spill_to)) \
            if self.spill_to and not self.spill_to.startswith("s3://") else None
        for directory in default_spill_directories():
            if os.path.realpath(directory) == named:  # (also when named through a symbolic link)
                continue
            shutil.rmtree(directory / quote_name(self.group), ignore_errors=True)
            made = [directory] + ([directory.parent] if directory.parent.name == "mwaa-logging" else [])
            for path in made:
                if path not in self._existing:
                    with contextlib.suppress(OSError):  # not empty (another run's files), or gone
                        path.rmdir()

    def replay_sources(self, checks: list[TaskCheck]) -> list[str]:
        """The prefixes (directories) under the spill locations that hold this run's spill objects: its log
        group's, ``<location>/<quoted group>/`` in the spill layout. Nothing else under a location is
        replayed: it may be other applications' spill."""
        from mwaa_logging.spill.layout import quote_name

        objects = {obj for check in checks for obj in check.spill_objects}
        sources = []
        for location in self.spill_locations():
            if location.startswith("s3://"):
                source = f"{location.rstrip('/')}/{quote_name(self.group)}/"
                local = None
            else:
                from mwaa_logging.spill.factory import local_directory_of

                local = os.path.join(local_directory_of(location), quote_name(self.group))
                source = local + os.sep
            if any(obj.startswith(source) or (local and obj.startswith(f"file://{source}")) for obj in objects):
                sources.append(source)
        return sources

    def replay_timeout(self, checks: list[TaskCheck]) -> float:
        """Time allowed to ``mwaa-logging replay``: :data:`EXIT_GRACE`, plus a few PutLogEvents calls per spill
        object at the slower of ``--rate-limit`` and the quota (a replay of 100 objects at 1 call/s needs minutes);
        at most :data:`MAX_REPLAY_SECONDS` (a larger timeout overflows ``subprocess.run``)."""
        objects = sum(len(check.spill_objects) for check in checks)
        rates = [r for r in (self.config.rate_limit, self.config.quota) if r]
        rate = min(rates) if rates else 4.0
        return min(MAX_REPLAY_SECONDS, EXIT_GRACE + 4.0 * objects / rate)

    def _replay(self, source: str, env: dict[str, str], checks: list[TaskCheck]) -> tuple[str, str | None]:
        """``mwaa-logging replay SOURCE`` as a user would run it: its output, and what went wrong (None: nothing)."""
        command = [sys.executable, "-m", "mwaa_logging.cli", "replay", source, "--no-progress",
                   "--rate", f"{self.config.rate_limit or 4.0:g}"]
        for option, name in (("--endpoint-url", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"),
                             ("--s3-endpoint-url", "AWS_ENDPOINT_URL_S3")):
            if self.target.env.get(name):
                command += [option, self.target.env[name]]
        timeout = self.replay_timeout(checks)
        try:
            done = subprocess.run(command, env={**env, "COLUMNS": "120"}, capture_output=True, text=True,
                                  timeout=timeout, cwd=self.workdir)
        except subprocess.TimeoutExpired as expired:
            output = _text(expired.stdout) + _text(expired.stderr)
            return output.strip(), (f"replay of {source} did not finish in {timeout:.0f} s (stopped"
                                    f"{self._replay_again(source)})")
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            return output, f"replay of {source} exited with {done.returncode}"
        return output, None

    def _spawn(self, config_path: Path, index: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        stderr = (self.workdir / f"task-{index}.stderr").open("wb")
        try:
            return subprocess.Popen([sys.executable, "-m", "mwaa_logging.demo.worker", str(config_path), str(index)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        finally:
            stderr.close()

    def _wait(self, processes: list[subprocess.Popen[bytes]], deadline: float) -> tuple[list[str], dict[int, float]]:
        """Wait for every task process (killing those past ``deadline``); failures and exit times."""
        failures: list[str] = []
        exited: dict[int, float] = {}
        running = dict(enumerate(processes))
        while running:
            for index, process in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                exited[index] = time.monotonic()
                del running[index]
                if code != 0:
                    self._failed_tasks.add(index)
                    tail = (self.workdir / f"task-{index}.stderr").read_text(errors="replace")[-2000:]
                    failures.append(f"task {index} exited with {code}: {tail}")
            if running and time.monotonic() > deadline:
                for index, process in running.items():
                    self._failed_tasks.add(index)
                    process.kill()
                    process.wait(10)
                    failures.append(f"task {index} did not finish in time (killed)")
                break
            time.sleep(0.05)
        return failures, exited

    def _read_back(self, with_spill: bool) -> list[TaskCheck]:
        """:meth:`_verify`, an AWS error (botocore's) raised as :class:`ReadBackError` (one line)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._verify(with_spill)
        except (BotoCoreError, ClientError) as error:
            raise ReadBackError(f"cannot read back the streams of {self.group}: {one_line(error)}") from None

    def _verify(self, with_spill: bool) -> list[TaskCheck]:
        """Read every stream back (CloudWatch, plus every spill location when ``with_spill``) and compare."""
        logs = self.target.logs_client()
        spill_locations = self.spill_locations() if with_spill else []
        s3 = self.target.s3_client() if any(loc.startswith("s3://") for loc in spill_locations) else None
        formatter = formatter_for(self.handler)
        checks = []
        for plan in self.config.plans():
            checks.append(check_stream(plan.task_id, self.group, plan.stream, expected_messages(plan, formatter),
                                       logs_client=logs, spill_to=spill_locations, s3_client=s3))
        return checks


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def run_handlers(config: DemoConfig, target: Target, handlers: list[str], console: Console,
                 on_result: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Run each handler in turn (same workload, fresh log group each)."""
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="mwaa-logging-demo-") as tmp:
            for handler in handlers:
                result = Run(config, target, handler, console, Path(tmp)).execute()
                results.append(result)
                if on_result is not None:
                    on_result(result)
    finally:
        remove_budget_files(config)
    return results
