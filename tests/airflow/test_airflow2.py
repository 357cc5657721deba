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


@pytest.mark.parametrize(("env", "error"), [
    ({"AIRFLOW__LOGGING__REMOTE_TASK_HANDLER_KWARGS": '{"close_timeout": "ten"}'}, "close_timeout='ten'"),
    # refused when each task built its stream (set_context): Airflow started, and every task failed before it ran
    ({"MWAA_LOGGING_SPILL_TO": "/dev/null"}, "spill_to='/dev/null'"),
])
def test_airflow2_task_handler_with_a_bad_setting_says_only_what_is_wrong(airflow2: AirflowEnv, env: dict[str, str],
                                                                          error: str) -> None:
    """A bad ``remote_task_handler_kwargs`` value fails Airflow's logging config with our SettingsError, and only
    that: FileTaskHandler.__init__ had registered the handler before the setting was resolved, and logging.shutdown()
    then closed the half-built handler ("Exception ignored in atexit callback ... no attribute 'closed'")."""
    out = subprocess.run(
        [str(airflow2.venv / "bin" / "python"), "-c", "import airflow"], cwd=airflow2.home, capture_output=True,
        text=True, timeout=120, env=airflow2.env(env),
    )
    output = out.stdout + out.stderr
    assert out.returncode != 0, output[-3000:]
    assert f"SettingsError: invalid setting {error}" in output, output[-3000:]
    assert "Exception ignored" not in output and "AttributeError" not in output, output[-3000:]


INTERLEAVE_READ_LINES = """
from airflow.utils.log.file_task_handler import _interleave_logs
from mwaa_logging.airflow.task_handler import _zulu
assert _zulu(1700000000005) == "2023-11-14T22:13:20.005Z", _zulu(1700000000005)
lines = [f"[{_zulu(ms)}] same-line" for ms in (1700000000001, 1700000000002, 1700000000002, 1700000000999)]
print(len(list(_interleave_logs("\\n".join(lines)))))
"""


def test_airflow2_ui_keeps_a_line_logged_again_within_the_second(airflow2: AirflowEnv) -> None:
    """Airflow 2 sorts the lines the UI shows by their time and drops a line equal to the one before: rendered to
    the second, a line logged five times within one second showed once (only a repeat within one millisecond
    does now, as Airflow's own timestamps in the line would make it too)."""
    out = subprocess.run([str(airflow2.venv / "bin" / "python"), "-c", INTERLEAVE_READ_LINES], cwd=airflow2.home,
                         capture_output=True, text=True, timeout=120, env=airflow2.env({}))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "3"


AFTER_CLOSE_WITHOUT_WARNING = """
import logging, sys, warnings
import airflow  # configures logging with our task handler first, as in Airflow's processes
from mwaa_logging.airflow.task_handler import _StreamHandler
handler = _StreamHandler(log_group_name="after-close", log_stream_name=sys.argv[1])
handler.close()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    handler.handle(logging.makeLogRecord({"msg": "after close", "levelno": 20, "levelname": "INFO"}))
assert not caught, [str(w.message) for w in caught]
assert handler.stats().emitted_after_close == 1
print(handler.flush(20))
"""


def test_airflow2_a_record_after_the_inner_handler_closed_is_delivered_without_a_warning(
        airflow2: AirflowEnv, airflow_aws: LocalAWS) -> None:
    """Airflow's metrics thread logs after the supervisor closed the handler: the WatchtowerWarning about it landed
    in the task's log (Airflow captures warnings there) during an outage."""
    stream = airflow2.venv.name  # one per Airflow version: the endpoint is the session's
    out = subprocess.run([str(airflow2.venv / "bin" / "python"), "-c", AFTER_CLOSE_WITHOUT_WARNING, stream],
                         cwd=airflow2.home, capture_output=True, text=True, timeout=120, env=airflow2.env({}))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "True"  # (Airflow logs botocore's lines to stdout before it)
    assert airflow_aws.messages("after-close", stream) == ["after close"]
