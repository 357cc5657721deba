"""Real Airflow 3.3 (LocalExecutor + api-server) shipping task logs through mwaa-logging to LocalAWS."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mwaa_logging.reader import read_stream
from mwaa_logging.testing.local_aws import LocalAWS
from tests.airflow.harness import LOG_GROUP, WORKLOAD_FINISHED, AirflowEnv, DagRun, wait_for_marker
from tests.waiting import wait_until

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(240)]

DAG_ID = "mwaa_logging_demo"
TASK_ID = "emit"
BIG_EVENT = "big-line-start " + "B" * 1_200_000 + " big-line-end"


def expected_events(lines: int) -> list[str]:
    """What the demo DAG's task logs, besides Airflow's own lines."""
    return [
        *(f"logger-line {i:06d}" for i in range(lines)),
        *(f"print-line {i:06d}" for i in range(lines)),
        BIG_EVENT,
        "last-line",
    ]


def stock_stream_name(run: DagRun, try_number: int = 1, task_id: str = TASK_ID) -> str:
    """The stream the Amazon provider's handler uses: the log path with ``:`` replaced by ``_``."""
    return f"dag_id={run.dag_id}/run_id={run.run_id}/task_id={task_id}/attempt={try_number}.log".replace(":", "_")


def events_of(messages: list[str]) -> list[str]:
    """The ``event`` field of each JSON message (the provider's message format)."""
    return [str(json.loads(message)["event"]) for message in messages]


def complete_messages(aws: LocalAWS, stream: str, spill_dir: Path) -> list[str]:
    """The stream's messages as mwaa-logging's reader returns them: CloudWatch + spill, splits joined."""
    return [e.message for e in read_stream(LOG_GROUP, stream, logs_client=aws.client("logs"), spill_to=[spill_dir])]


def complete_events(aws: LocalAWS, stream: str, spill_dir: Path) -> list[str]:
    """The ``event`` field of each of :func:`complete_messages`."""
    return events_of(complete_messages(aws, stream, spill_dir))


def assert_exactly_once(found: list[str], expected: list[str]) -> None:
    counts: dict[str, int] = {}
    for event in found:
        counts[event] = counts.get(event, 0) + 1
    missing = [e[:60] for e in expected if counts.get(e, 0) == 0]
    doubled = [e[:60] for e in expected if counts.get(e, 0) > 1]
    assert not missing, f"{len(missing)} lines missing, e.g. {missing[:5]}"
    assert not doubled, f"{len(doubled)} lines more than once, e.g. {doubled[:5]}"


def test_airflow_uses_mwaa_logging_remote_io(airflow3: AirflowEnv) -> None:
    """Both the task SDK (supervisor) and core (api-server) resolve REMOTE_TASK_LOG to ours, not the stock IO."""
    sdk = airflow3.python("from airflow.sdk.log import load_remote_log_handler as f; print(type(f()).__module__)")
    core = airflow3.python(  # get_remote_task_log() since 3.2, the module attribute before
        "import airflow.logging_config as m; f = getattr(m, 'get_remote_task_log', None)\n"
        "print(type(f() if callable(f) else m.REMOTE_TASK_LOG).__module__)"
    )
    assert sdk.strip() == core.strip() == "mwaa_logging.airflow.remote_io"


def test_every_task_line_reaches_the_stock_stream_and_reads_back_complete(
    airflow3: AirflowEnv, airflow_aws: LocalAWS
) -> None:
    lines = 300
    run = airflow3.run_dag(DAG_ID, env={"MWAA_LOGGING_TEST_LINES": str(lines)})
    assert run.finished, run.output[-3000:]
    stream = stock_stream_name(run)
    assert stream in airflow_aws.streams()[LOG_GROUP]

    raw = airflow_aws.messages(LOG_GROUP, stream)
    assert max(len(m.encode()) + 26 for m in raw) <= 1_048_576  # the >1 MB line went in as split events
    assert_exactly_once(complete_events(airflow_aws, stream, airflow3.home / "spill"), expected_events(lines))

    # The local copy is gone (delete_local_logs), so Airflow's REST API can only answer from CloudWatch.
    assert not (airflow3.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run.run_id}" / f"task_id={TASK_ID}").exists()
    content = airflow3.task_log(run, TASK_ID)
    rest_events = [str(line.get("event", "")) for line in content]
    sources = [*rest_events, *(str(s) for line in content for s in line.get("sources") or [])]  # 3.1: a field
    assert any(s.startswith("mwaa-logging: reading CloudWatch") and stream in s for s in sources)
    assert_exactly_once(rest_events, expected_events(lines))


def test_tight_account_quota_loses_nothing(airflow3: AirflowEnv, airflow_aws: LocalAWS) -> None:
    """At 2 PutLogEvents/s for the whole account, upload drains for close_timeout then spills: zero loss."""
    lines = 3000
    airflow_aws.reset_stats()
    airflow_aws.set_quota(put_tps=2)
    try:
        run = airflow3.run_dag(
            DAG_ID,
            env={
                "MWAA_LOGGING_TEST_LINES": str(lines),
                # settings both ways: Airflow's remote_task_handler_kwargs and our environment variables
                "AIRFLOW__LOGGING__REMOTE_TASK_HANDLER_KWARGS": '{"max_batch_count": 100}',  # ~60 calls needed
                "MWAA_LOGGING_CLOSE_TIMEOUT": "3",  # ~6 calls allowed within the upload's drain
            },
        )
    finally:
        airflow_aws.set_quota(put_tps=None)
    assert run.finished, run.output[-3000:]
    stats = airflow_aws.stats()
    assert stats.throttled_by_quota > 0

    stream = stock_stream_name(run)
    delivered = airflow_aws.messages(LOG_GROUP, stream)
    assert len(delivered) < 2 * lines  # the quota really kept lines out of CloudWatch
    assert_exactly_once(complete_events(airflow_aws, stream, airflow3.home / "spill"), expected_events(lines))
    rest_events = [str(line.get("event", "")) for line in airflow3.task_log(run, TASK_ID)]
    assert_exactly_once(rest_events, expected_events(lines))


def test_watchtower_shim_puts_the_stock_provider_handler_on_our_engine(
    airflow3: AirflowEnv, airflow_aws: LocalAWS
) -> None:
    """Stock logging config (as on MWAA) + MWAA_LOGGING_PATCH_WATCHTOWER=1: the provider's IO ships via us."""
    stock = {"AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "", "MWAA_LOGGING_PATCH_WATCHTOWER": "1",
             # the stock config reads remote_log_conn_id=aws_default, which a deployment defines: without it
             # Airflow 3.0-3.1's supervisor fails every task ("generator didn't yield", fixed in 3.2)
             "AIRFLOW_CONN_AWS_DEFAULT": "aws://"}
    used = airflow3.python(
        "from airflow.sdk.log import load_remote_log_handler as f\n"
        "io = f()\n"
        "print('RESULT', type(io).__module__, type(io.handler).__module__)",
        env=stock,
    )
    provider_io = "airflow.providers.amazon.aws.log.cloudwatch_task_handler"
    assert used.split("RESULT", 1)[1].split() == [provider_io, "mwaa_logging.compat"]

    lines = 100
    run = airflow3.run_dag(DAG_ID, env={**stock, "MWAA_LOGGING_TEST_LINES": str(lines)})
    assert run.finished, run.output[-3000:]
    stream = stock_stream_name(run)
    # watchtower would have truncated the big line to 256 KB; the engine split it and nothing is lost
    assert_exactly_once(complete_events(airflow_aws, stream, airflow3.home / "spill"), expected_events(lines))


def test_deferred_task_logs_both_halves_and_its_trigger_log(airflow3: AirflowEnv, airflow_aws: LocalAWS) -> None:
    """A task defers to a real triggerer and resumes: both halves land in the task's stream, each line once,
    and the trigger's own lines in the stream the provider uses for them (``<task log>.trigger.<id>.log``)."""
    lines = 200
    with airflow3.triggerer() as triggerer_log:
        # the supervisor's finish line comes twice (deferred, then success): wait for the second
        run = airflow3.run_dag_scheduled("mwaa_logging_deferred", env={"MWAA_LOGGING_TEST_LINES": str(lines)},
                                         done_marker="final_state=success")
    assert run.finished, run.output[-3000:] + triggerer_log.read_text()[-3000:]
    task_stream = stock_stream_name(run, task_id="wait")
    expected = [*(f"before-defer {i:06d}" for i in range(lines)), *(f"after-resume {i:06d}" for i in range(lines)),
                "resumed-last-line"]
    assert_exactly_once(complete_events(airflow_aws, task_stream, airflow3.home / "spill"), expected)

    trigger_streams = [s for s in airflow_aws.streams()[LOG_GROUP] if s.startswith(f"{task_stream}.trigger.")]
    assert len(trigger_streams) == 1, trigger_streams
    trigger_events = complete_events(airflow_aws, trigger_streams[0], airflow3.home / "spill")
    assert "trigger starting" in trigger_events
    assert any(e.startswith("yielding event with payload") for e in trigger_events), trigger_events

    # The task's and the trigger's local files (one folder) were uploaded, then deleted (delete_local_logs).
    assert not (airflow3.home / "logs" / f"dag_id={run.dag_id}" / f"run_id={run.run_id}" / "task_id=wait").exists()
    rest_events = [str(line.get("event", "")) for line in airflow3.task_log(run, "wait")]
    assert_exactly_once(rest_events, expected)


def test_a_running_tasks_log_shows_each_line_once(airflow3: AirflowEnv, airflow_aws: LocalAWS, tmp_path: Path) -> None:
    """While a task runs Airflow merges its local file with our CloudWatch lines and drops a line it has twice
    only if both copies are equal, timestamp included: every line must show once, then and after it ends."""
    lines = 200
    release = tmp_path / "release"
    running = [f"running-line {i:06d}" for i in range(lines)]
    env = {"MWAA_LOGGING_TEST_LINES": str(lines), "MWAA_LOGGING_TEST_RELEASE": str(release)}
    with airflow3.dag_started("mwaa_logging_running", env=env) as (run_id, output):
        run = DagRun("mwaa_logging_running", run_id, "", 0.0, finished=False)
        stream = stock_stream_name(run, task_id="hold")
        wait_until(lambda: running[-1] in events_of(airflow_aws.messages(LOG_GROUP, stream)
                                                     if stream in airflow_aws.streams().get(LOG_GROUP, []) else []),
                   timeout=90, state=lambda: output.read_text(errors="replace")[-3000:])
        content = airflow3.task_log(run, "hold")
        release.touch()
        wait_for_marker(output, WORKLOAD_FINISHED, time.monotonic() + 90)
        finished = re.search(WORKLOAD_FINISHED, output.read_text(errors="replace")) is not None
    rest_events = [str(line.get("event", "")) for line in content]
    sources = [*rest_events, *(str(s) for line in content for s in line.get("sources") or [])]
    assert any(s.startswith("mwaa-logging: reading CloudWatch") for s in sources)  # both copies were merged:
    assert any(s.endswith("task_id=hold/attempt=1.log") and s.startswith("/") for s in sources)  # + local file
    assert "released-last-line" not in rest_events  # read while the task ran
    assert_exactly_once(rest_events, running)

    assert finished
    assert_exactly_once([str(line.get("event", "")) for line in airflow3.task_log(run, "hold")],
                        [*running, "released-last-line"])


DICTCONFIG_SCRIPT = """
import logging.config, sys
from datetime import datetime, timezone
from pathlib import Path
import structlog
from airflow.configuration import conf
from airflow.sdk.log import load_remote_log_handler
from mwaa_logging.airflow import LOGGING_CONFIG

io = load_remote_log_handler()
(process,) = io.processors
relative = sys.argv[1]
path = Path(conf.get("logging", "base_log_folder")) / relative
path.parent.mkdir(parents=True, exist_ok=True)
with path.open("ab") as handle:
    logger = structlog.BytesLogger(handle)
    for i in range(200):
        if i % 50 == 25:  # what Airflow's configure_logging does mid-run: every handler closed and rebuilt
            logging.config.dictConfig(LOGGING_CONFIG)
        process(logger, "info", {"event": f"line {i:04d}", "timestamp": datetime.now(timezone.utc).isoformat()})
io.upload(relative)
"""


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="mwaa_logging.airflow"),
        pytest.param({"AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "", "MWAA_LOGGING_PATCH_WATCHTOWER": "1"}, id="shim"),
    ],
)
def test_dictconfig_rebuilding_handlers_mid_task_loses_nothing(
    airflow3: AirflowEnv, airflow_aws: LocalAWS, config: dict[str, str]
) -> None:
    run_id = f"manual__{datetime.now(timezone.utc).isoformat()}"  # a stream of its own (LocalAWS is shared)
    relative = f"dag_id=dictconfig/run_id={run_id}/task_id=t{len(config)}/attempt=1.log"
    airflow3.python(DICTCONFIG_SCRIPT, relative, env=config)
    stream = relative.replace(":", "_")
    assert events_of(airflow_aws.messages(LOG_GROUP, stream)) == [f"line {i:04d}" for i in range(200)]
