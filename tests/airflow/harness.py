"""Drive a real Airflow installation (its own virtualenv) from tests: api-server, DAG runs, REST reads.

Every step is bounded by a timeout and every process started here is stopped here, by pid
(Airflow's task processes run in their own process groups, so killing a group is not enough).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).resolve().parent / "dags"
LOG_GROUP = "airflow-mwaa-logging-test-Task"
LOG_GROUP_ARN = f"arn:aws:logs:us-east-1:123456789012:log-group:{LOG_GROUP}"
#: What the supervisor logs after its upload returned: "Workload finished" (3.3), "Task finished" (3.0-3.2).
WORKLOAD_FINISHED = r"\b(Workload|Task) finished\b"
RUN_ID = re.compile(r"run_id=(manual__[^,\s\]']+)")
#: A run id wherever ``dags test`` first prints it (3.0 logs ``<TaskInstance: D.T manual__... [running]>``).
ANY_RUN_ID = re.compile(r"\b(manual__\d{4}-\d\d-\d\dT[0-9:.+_-]+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_venv(version: str = "3.3.*", venv: str = ".venv-airflow") -> Path:
    """Create (or reuse) the cached Airflow virtualenv ``REPO/venv`` and return its path.

    An already prepared venv can stand in for one of them: ``MWAA_LOGGING_AIRFLOW_VENV`` (set by
    ``scripts/test.sh``) for ``.venv-airflow`` (the newest Airflow 3), ``MWAA_LOGGING_AIRFLOW2_VENV`` for
    ``.venv-airflow2`` (Airflow 2), to run the tests on another Airflow version.
    """
    override = {".venv-airflow": "MWAA_LOGGING_AIRFLOW_VENV", ".venv-airflow2": "MWAA_LOGGING_AIRFLOW2_VENV"}
    prepared = os.environ.get(override.get(venv, ""))
    if prepared and (Path(prepared) / "bin" / "airflow").exists():
        return Path(prepared)
    env = {**os.environ, "AIRFLOW_VERSION": version, "AIRFLOW_VENV": str(REPO / venv)}
    out = subprocess.run(
        [str(REPO / "scripts" / "airflow-venv.sh")], env=env, check=True, capture_output=True, text=True, timeout=900
    )
    return Path(out.stdout.strip().splitlines()[-1])


def children_of(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def stop_tree(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop ``proc`` and every descendant by pid: TERM, wait up to ``grace`` s, then KILL."""
    pids = [*children_of(proc.pid), proc.pid]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
            time.sleep(0.05)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@dataclass
class DagRun:
    """Outcome of one DAG run (``airflow dags test --use-executor``, or triggered and scheduled)."""

    dag_id: str
    run_id: str
    output: str
    seconds: float
    finished: bool  # "Workload finished" was logged, i.e. the supervisor's upload returned

    @classmethod
    def from_log(cls, dag_id: str, log_path: Path, started: float, done_marker: str,
                 run_id: str | None = None) -> DagRun:
        """The run as its log shows it (``run_id`` found there unless given)."""
        text = log_path.read_text(errors="replace")
        if run_id is None:
            found = RUN_ID.search(text)
            run_id = found.group(1) if found else ""
        return cls(dag_id=dag_id, run_id=run_id, output=text, seconds=time.monotonic() - started,
                   finished=re.search(done_marker, text) is not None)


def wait_for_marker(log_path: Path, done_marker: str, deadline: float,
                    running: Callable[[], bool] = lambda: True) -> None:
    """Poll ``log_path`` until ``done_marker`` (a regex) is in it, ``running()`` turns False, or ``deadline``."""
    while time.monotonic() < deadline and running():
        if re.search(done_marker, log_path.read_text(errors="replace")):
            return
        time.sleep(0.2)


@dataclass
class AirflowEnv:
    """One AIRFLOW_HOME with a migrated database, sharing an api-server across DAG runs."""

    venv: Path
    home: Path
    endpoint_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    api_server: subprocess.Popen[bytes] | None = None

    def env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MWAA_LOGGING", "AWS_"))}
        base.pop("PYTEST_CURRENT_TEST", None)  # Airflow re-raises handler errors when it sees pytest
        env = {
            **base,
            "PATH": f"{self.venv / 'bin'}:{base.get('PATH', '')}",
            "HOME": str(self.home),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": "mwaa-logging-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__API__SECRET_KEY": "mwaa-logging-test-secret-key",
            "AIRFLOW__API_AUTH__JWT_ISSUER": "mwaa-logging-test",  # 3.0 + PyJWT 2.10 need a string issuer
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"cloudwatch://{LOG_GROUP_ARN}",
            "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.endpoint_url,
            "NO_PROXY": "127.0.0.1,localhost",
            **self.extra_env,
        }
        env.update(overrides or {})
        return env

    @cached_property
    def version(self) -> tuple[int, int]:
        """This Airflow's major and minor version."""
        out = subprocess.run([str(self.venv / "bin" / "python"), "-c", "import airflow; print(airflow.__version__)"],
                             capture_output=True, text=True, check=True, timeout=120)
        major, minor = out.stdout.strip().split(".")[:2]
        return int(major), int(minor)

    def airflow(self, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
        out = self._run([str(self.venv / "bin" / "airflow"), *args], f"airflow {' '.join(args)}", timeout, env)
        return out.stdout + out.stderr

    def python(
        self, code: str, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> str:
        """Run ``code`` (``sys.argv[1:]`` = ``args``) with the Airflow venv's interpreter here; return stdout."""
        return self._run([str(self.venv / "bin" / "python"), "-c", code, *args], "python", timeout, env).stdout

    def _run(self, argv: list[str], what: str, timeout: float,
             env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(argv, env=self.env(env), cwd=self.home, capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{what} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
        return out

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate", timeout=180)

    def start_api_server(self, timeout: float = 90) -> None:
        log = (self.home / "api-server.log").open("wb")
        self.api_server = subprocess.Popen(
            [str(self.venv / "bin" / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api_server.poll() is not None:
                break
            with suppress(OSError), urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.3)
        self.stop()
        log_tail = (self.home / "api-server.log").read_text()[-4000:]
        raise RuntimeError(f"api-server not healthy in {timeout}s:\n{log_tail}")

    def stop(self) -> None:
        if self.api_server is not None:
            stop_tree(self.api_server)
            self.api_server = None

    def triggerer(self) -> AbstractContextManager[Path]:
        """A running ``airflow triggerer`` (it runs the triggers of deferred tasks); yields its log file."""
        return self._component("triggerer")

    def scheduler(self, env: Mapping[str, str] | None = None) -> AbstractContextManager[Path]:
        """A running ``airflow scheduler`` (LocalExecutor: its task processes get ``env`` too); yields its log."""
        return self._component("scheduler", env)

    @contextmanager
    def _component(self, name: str, env: Mapping[str, str] | None = None) -> Iterator[Path]:
        log_path = self.home / f"{name}-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # --skip-serve-logs: no log server listening on every interface
                [str(self.venv / "bin" / "airflow"), name, "--skip-serve-logs"],
                env=self.env(env),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield log_path
        finally:
            stop_tree(proc)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run_dag(
        self,
        dag_id: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        done_marker: str = WORKLOAD_FINISHED,
    ) -> DagRun:
        """Run ``dag_id`` through the configured executor; return once ``done_marker`` (a regex) is logged.

        Airflow 3 logs "Workload finished" after the supervisor's upload returned (the task state
        turns successful before that). ``dags test`` sometimes hangs at "Shutting down
        LocalExecutor" after everything is done, so the run is judged by its output and the process
        tree is stopped as soon as it is complete.
        """
        if self.version < (2, 10):  # no ``dags test --use-executor``: the scheduler runs it, as in a deployment
            return self.run_dag_scheduled(dag_id, env=env, timeout=timeout + 60, done_marker=done_marker)
        started = time.monotonic()
        proc, log_path = self._dags_test(dag_id, env)
        try:
            wait_for_marker(log_path, done_marker, started + timeout, running=lambda: proc.poll() is None)
        finally:
            # Give a clean exit a moment, then stop whatever is left (the LocalExecutor hang).
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            stop_tree(proc)
        return DagRun.from_log(dag_id, log_path, started, done_marker)

    @contextmanager
    def dag_started(self, dag_id: str, *, env: Mapping[str, str] | None = None,
                    timeout: float = 120) -> Iterator[tuple[str, Path]]:
        """Start ``dag_id`` (``dags test --use-executor``) and yield ``(run_id, output log)`` while it runs;
        the process tree is stopped on leaving."""
        proc, log_path = self._dags_test(dag_id, env)
        try:
            deadline = time.monotonic() + timeout
            found = None
            while found is None and time.monotonic() < deadline and proc.poll() is None:
                found = ANY_RUN_ID.search(log_path.read_text(errors="replace"))
                time.sleep(0.2)
            if found is None:
                raise RuntimeError(f"no run id in {timeout}s:\n{log_path.read_text(errors='replace')[-3000:]}")
            yield found.group(1), log_path
        finally:
            stop_tree(proc)

    def _dags_test(self, dag_id: str, env: Mapping[str, str] | None) -> tuple[subprocess.Popen[bytes], Path]:
        """``airflow dags test dag_id --use-executor`` started, and the file its output goes to."""
        log_path = self.home / f"dags-test-{time.monotonic_ns()}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(self.venv / "bin" / "airflow"), "dags", "test", dag_id, "--use-executor"],
                env=self.env(env),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return proc, log_path

    def run_dag_scheduled(
        self,
        dag_id: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 180,
        done_marker: str = WORKLOAD_FINISHED,
    ) -> DagRun:
        """Run ``dag_id`` as a deployment does: parsed into the database, triggered, then scheduled and run by
        ``airflow scheduler`` (LocalExecutor); return once ``done_marker`` (a regex) is in the scheduler's log.

        Slower than :meth:`run_dag`, but Airflow 3.0's ``dags test`` cannot resume a deferred task (the
        executor's report finds no serialized DAG, and the run fails).
        """
        started = time.monotonic()
        self.airflow("dags", "reserialize", timeout=180, env=env)
        run_id = f"manual__{datetime.now(timezone.utc).isoformat()}"
        with self.scheduler(env) as log_path:
            self.airflow("dags", "trigger", dag_id, "--run-id", run_id, env=env)
            wait_for_marker(log_path, done_marker, started + timeout)
        return DagRun.from_log(dag_id, log_path, started, done_marker, run_id=run_id)

    def token(self) -> str:
        with urllib.request.urlopen(f"{self.base_url}/auth/token", timeout=10) as resp:
            return str(json.load(resp)["access_token"])

    def rest(self, path: str, timeout: float = 60) -> dict[str, object]:
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            headers={"Authorization": f"Bearer {self.token()}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data: dict[str, object] = json.load(resp)
                return data
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"GET {path}: {err.code} {err.read()[:2000]!r}") from err

    def task_log(self, run: DagRun, task_id: str, try_number: int = 1) -> list[dict[str, object]]:
        """The task's log as Airflow's REST API returns it (structured lines)."""
        data = self.rest(
            f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}/logs/{try_number}"
            "?full_content=true"
        )
        content = data["content"]
        assert isinstance(content, list)
        return content


@contextmanager
def running_airflow(venv: Path, home: Path, endpoint_url: str, **extra_env: str) -> Iterator[AirflowEnv]:
    env = AirflowEnv(venv=venv, home=home, endpoint_url=endpoint_url, extra_env=dict(extra_env))
    env.migrate()
    env.start_api_server()
    try:
        yield env
    finally:
        env.stop()
