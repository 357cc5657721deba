"""Real Airflow 2: a CloudWatch endpoint that accepts connections and never answers delays a task's exit by about one
``close_timeout`` per task process (the --local supervisor and the forked raw task), not more.

The supervisor waited about three: logging.shutdown() closed the inner handler (one wait), StandardTaskRunner's
resource-monitor thread logged meanwhile and the task handler rebuilt an inner handler for it, taking the close for
dictConfig's; FileTaskHandler.flush() then waited for it in full (the shutdown shortcut of CloudWatchLogHandler.flush
saw FileTaskHandler.flush as its caller), and close() waited once more.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from tests.airflow.harness import AirflowEnv
from tests.airflow.test_airflow3 import DAG_ID, TASK_ID

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(300)]

CLOSE_TIMEOUT = 6.0


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def task_seconds(env: AirflowEnv, run_id: str, extra_env: dict[str, str]) -> float:
    """How long ``airflow tasks run D T RUN --local`` takes (supervisor and forked raw task)."""
    started = time.monotonic()
    out = subprocess.run(
        [str(env.venv / "bin" / "airflow"), "tasks", "run", DAG_ID, TASK_ID, run_id, "--local", "--force",
         "--ignore-all-dependencies"],
        env=env.env(extra_env), cwd=env.home, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return time.monotonic() - started


def test_airflow2_task_exit_with_a_hung_endpoint_waits_one_close_timeout_per_process(
    airflow2: AirflowEnv, hung_endpoint: str
) -> None:
    base = {"MWAA_LOGGING_TEST_LINES": "1", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": hung_endpoint,
            "MWAA_LOGGING_READ_TIMEOUT": "60"}
    run_id = f"manual__{datetime.now(timezone.utc).isoformat()}"
    airflow2.airflow("dags", "reserialize", timeout=180, env=base)
    airflow2.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, env=base)
    # the same task without waiting (close_timeout 0) measures what the processes take besides the waits
    without = task_seconds(airflow2, run_id, {**base, "MWAA_LOGGING_CLOSE_TIMEOUT": "0"})
    waiting = task_seconds(airflow2, run_id, {**base, "MWAA_LOGGING_CLOSE_TIMEOUT": str(CLOSE_TIMEOUT)})
    waits = (waiting - without) / CLOSE_TIMEOUT
    # two processes, one close_timeout each (before: the supervisor waited three, about 4 in all)
    assert waits < 3.0, f"{waiting:.1f} s with close_timeout={CLOSE_TIMEOUT}, {without:.1f} s with 0"
