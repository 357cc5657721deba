"""Real Airflow 2.10: the lines of a raw task process killed with SIGKILL (the OOM killer) are not lost.

The ``--raw`` process ships its own lines; what it had queued when it was killed is in its write-ahead file, and the
``--local`` supervisor, which outlives it, ships that when it closes (``mwaa_logging.airflow.wal``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mwaa_logging.airflow.wal import WAL_DIRECTORY
from mwaa_logging.testing.local_aws import LocalAWS
from tests.airflow.harness import LOG_GROUP, AirflowEnv
from tests.airflow.test_airflow3 import complete_messages

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(300)]

DAG_ID = "mwaa_logging_killed"
TASK_ID = "log_and_die"
KILLED = "Task exited with return code -9"


def run_task_local(env: AirflowEnv, run_id: str, extra_env: dict[str, str], timeout: float = 120) -> str:
    """``airflow tasks run D T RUN --local``, as an executor runs it: the supervisor forks the raw task. Its exit
    status is not judged (the task was killed); its output is returned."""
    out = subprocess.run(
        [str(env.venv / "bin" / "airflow"), "tasks", "run", DAG_ID, TASK_ID, run_id, "--local", "--force",
         "--ignore-all-dependencies"],
        env=env.env(extra_env), cwd=env.home, capture_output=True, text=True, timeout=timeout,
    )
    return out.stdout + out.stderr


def kill_run(env: AirflowEnv, extra_env: dict[str, str],
             before_task: Callable[[], object] = lambda: None) -> tuple[str, str]:
    """Trigger a run of the killing DAG and run its task (``before_task()`` just before); return the task's stream
    and the command's output."""
    run_id = f"manual__{datetime.now(timezone.utc).isoformat()}"
    env.airflow("dags", "reserialize", timeout=180, env=extra_env)
    env.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, env=extra_env)
    before_task()
    output = run_task_local(env, run_id, extra_env)
    # run outside a scheduler, the try is numbered 0 (1 before Airflow 2.10, which counts tries when they start)
    attempt = 0 if env.version >= (2, 10) else 1
    stream = f"dag_id={DAG_ID}/run_id={run_id}/task_id={TASK_ID}/attempt={attempt}.log".replace(":", "_")
    return stream, output


def assert_every_line(messages: list[str], lines: int, output: str) -> None:
    """Every numbered line once, the last one, and the supervisor's exit line."""
    killed = [m for m in messages if m.startswith("killed-line ")]
    missing = sorted({f"killed-line {i:06d}" for i in range(lines)} - set(killed))
    assert not missing, f"{len(missing)} of {lines} lines lost, first {missing[:3]}\n{output[-3000:]}"
    assert len(killed) == lines  # the reader drops the copies that were both sent and recovered
    assert "last-line-before-kill" in messages
    assert any(m.startswith(KILLED) for m in messages), output[-3000:]


def wal_files(env: AirflowEnv) -> list[Path]:
    """Write-ahead files left under ``base_log_folder`` (none once the supervisor shipped them)."""
    directory = env.home / "logs" / WAL_DIRECTORY
    return sorted(directory.iterdir()) if directory.is_dir() else []


@pytest.mark.parametrize("lines", [3000, 60000])
def test_lines_of_a_sigkilled_raw_task_reach_cloudwatch(
    airflow2: AirflowEnv, airflow_aws: LocalAWS, lines: int
) -> None:
    """3,000 lines: killed before its first send (without the fix all were lost); 60,000: killed mid-burst, after
    it sent most of them (without the fix ~1,100 were lost). The supervisor ships them, to CloudWatch itself."""
    stream, output = kill_run(airflow2, {"MWAA_LOGGING_TEST_LINES": str(lines)})
    assert_every_line(complete_messages(airflow_aws, stream, airflow2.home / "spill"), lines, output)
    in_cloudwatch = {m for m in airflow_aws.messages(LOG_GROUP, stream) if m.startswith("killed-line ")}
    assert len(in_cloudwatch) == lines  # none had to be spilled
    assert not wal_files(airflow2)


def test_lines_of_a_sigkilled_raw_task_reach_cloudwatch_under_throttling(
    airflow2: AirflowEnv, airflow_aws: LocalAWS
) -> None:
    """Every PutLogEvents is throttled while the task logs and dies: the raw task had sent nothing."""
    lines = 3000
    try:
        stream, output = kill_run(airflow2, {"MWAA_LOGGING_TEST_LINES": str(lines)},
                                  before_task=lambda: airflow_aws.faults.throttle_for(6))
    finally:
        airflow_aws.faults.clear()
    assert_every_line(complete_messages(airflow_aws, stream, airflow2.home / "spill"), lines, output)
    assert not wal_files(airflow2)
