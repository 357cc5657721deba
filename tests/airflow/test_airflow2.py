"""Real Airflow 2 (2.10.5; others through MWAA_LOGGING_AIRFLOW2_VENV): our task handler and the watchtower shim."""

from __future__ import annotations

import subprocess

import pytest

from mwaa_logging.testing.local_aws import LocalAWS
from tests.airflow.harness import LOG_GROUP, AirflowEnv
from tests.airflow.test_airflow2_killed import wal_files
from tests.airflow.test_airflow3 import (
    BIG_EVENT,
    DAG_ID,
    TASK_ID,
    assert_exactly_once,
    complete_messages,
    expected_events,
    stock_stream_name,
)

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(240)]

DAG_RUN_FINISHED = "DagRun Finished"
READ_SCRIPT = """
import sys
from airflow.models import TaskInstance
from airflow.utils.log.log_reader import TaskLogReader
from airflow.utils.session import create_session

import mwaa_logging.airflow.task_handler as task_handler

made = []  # read clients made (each poll of the log view made one, with a connection lookup)
make = task_handler.read_client_settled
task_handler.read_client_settled = lambda *args: made.append(args) or make(*args)
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=sys.argv[1], task_id=sys.argv[2], run_id=sys.argv[3]).one()
    reader = TaskLogReader()
    print(reader.log_handler.__class__.__module__)
    chunks, _ = reader.read_log_chunks(ti, 1, {"download_logs": True})
    for host, text in chunks[0]:
        print(text)
    again, _ = reader.read_log_chunks(ti, 1, {"download_logs": True})
    assert again == chunks
print(f"read clients made: {len(made)}")
"""

#: What the webserver gets from the worker's log server (``airflow serve-logs``, its Flask app here) for a task try
#: while the task runs: the local file our handler's set_context created (empty: the lines are in CloudWatch).
SERVED_SCRIPT = """
import sys
from airflow.configuration import conf
from airflow.models import TaskInstance
from airflow.utils.jwt_signer import JWTSigner
from airflow.utils.log.log_reader import TaskLogReader
from airflow.utils.serve_logs import create_app
from airflow.utils.session import create_session

with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=sys.argv[1], task_id=sys.argv[2], run_id=sys.argv[3]).one()
    path = TaskLogReader().log_handler._render_filename(ti, 1)
signer = JWTSigner(secret_key=conf.get("webserver", "secret_key"), expiration_time_in_seconds=30,
                   audience="task-instance-logs")
served = create_app().test_client().get(
    "/log/" + path, headers={"Authorization": signer.generate_signed_token({"filename": path})})
print(served.status_code, len(served.data))
"""


def test_airflow2_task_handler_ships_supervisor_and_raw_task_lines(
    airflow2: AirflowEnv, airflow_aws: LocalAWS
) -> None:
    lines = 200
    # A send interval longer than the task: only what the handlers' close() flushes arrives.
    env = {"MWAA_LOGGING_TEST_LINES": str(lines), "MWAA_LOGGING_SEND_INTERVAL": "60"}
    run = airflow2.run_dag(DAG_ID, env=env, done_marker=DAG_RUN_FINISHED)
    assert run.finished and run.run_id, run.output[-3000:]
    stream = stock_stream_name(run)
    messages = airflow_aws.messages(LOG_GROUP, stream)
    # the raw task process logged these; the --local supervisor process logged the exit line
    assert any(m.startswith("Task exited with return code 0") for m in messages)
    # The forked raw task logs these before its own set_context, into the handler it inherited from the
    # supervisor: set_context replaced that handler unclosed, and a task shorter than the send interval lost them.
    assert any(m.startswith("Running: ['airflow', 'tasks', 'run'") for m in messages), messages[:5]
    assert any(f": Subtask {TASK_ID}" in m for m in messages), messages[:5]
    assert max(len(m.encode()) + 26 for m in messages) <= 1_048_576

    out = airflow2.python(READ_SCRIPT, DAG_ID, TASK_ID, run.run_id)
    handler_module, _, text = out.partition("\n")
    assert handler_module.endswith("mwaa_logging.airflow.task_handler")
    assert text.splitlines()[-1] == "read clients made: 1"  # the second read (a later poll) reused the client
    assert "mwaa-logging: reading CloudWatch" in text
    # Airflow 2 renders "[time] message" lines; the big line comes back whole (reassembled)
    found = [line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("[") and "] " in line]
    assert_exactly_once(found, expected_events(lines))
    assert BIG_EVENT in found
    # While a task runs, Airflow 2's log view also asks the worker's log server for the local file: it was never
    # created, and every poll showed "Could not read served logs: 404" (and logged a traceback on the webserver).
    assert airflow2.python(SERVED_SCRIPT, DAG_ID, TASK_ID, run.run_id).splitlines()[-1].split() == ["200", "0"]


def test_airflow2_watchtower_shim_puts_the_stock_provider_handler_on_our_engine(
    airflow2: AirflowEnv, airflow_aws: LocalAWS
) -> None:
    """Stock logging config + MWAA_LOGGING_PATCH_WATCHTOWER=1, as on MWAA 2.x (whose task handler subclasses the
    provider's): the watchtower handler the provider builds per task is ours. Every line arrives once, and the
    1.2 MB line whole: watchtower would have cut it at 256 KB."""
    stock = {"AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "", "MWAA_LOGGING_PATCH_WATCHTOWER": "1"}
    lines = 100
    run = airflow2.run_dag(DAG_ID, env={**stock, "MWAA_LOGGING_TEST_LINES": str(lines)}, done_marker=DAG_RUN_FINISHED)
    assert run.finished and run.run_id, run.output[-3000:]
    stream = stock_stream_name(run)
    # plain messages: the provider sets no formatter on the handler it builds
    assert_exactly_once(complete_messages(airflow_aws, stream, airflow2.home / "spill"), expected_events(lines))
    assert not wal_files(airflow2)  # the raw task removed its write-ahead file (mwaa_logging.airflow.shim_wal)


def test_airflow2_task_handler_with_a_bad_setting_says_only_what_is_wrong(airflow2: AirflowEnv) -> None:
    """A bad ``remote_task_handler_kwargs`` value fails Airflow's logging config with our SettingsError, and only
    that: FileTaskHandler.__init__ had registered the handler before the setting was resolved, and logging.shutdown()
    then closed the half-built handler ("Exception ignored in atexit callback ... no attribute 'closed'")."""
    out = subprocess.run(
        [str(airflow2.venv / "bin" / "python"), "-c", "import airflow"], cwd=airflow2.home, capture_output=True,
        text=True, timeout=120,
        env=airflow2.env({"AIRFLOW__LOGGING__REMOTE_TASK_HANDLER_KWARGS": '{"close_timeout": "ten"}'}),
    )
    output = out.stdout + out.stderr
    assert out.returncode != 0, output[-3000:]
    assert "SettingsError: invalid setting close_timeout='ten'" in output, output[-3000:]
    assert "Exception ignored" not in output and "AttributeError" not in output, output[-3000:]
