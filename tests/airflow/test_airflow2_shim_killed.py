"""Real Airflow 2.10 through the watchtower shim (stock provider handler, as on MWAA 2.x): a SIGKILLed raw task's
unsent lines are shipped by its supervisor (``mwaa_logging.airflow.shim_wal``), as with our own task handler."""

from __future__ import annotations

from contextlib import suppress

import pytest

from mwaa_logging.testing.local_aws import LocalAWS
from tests.airflow.harness import LOG_GROUP, LOG_GROUP_ARN, AirflowEnv
from tests.airflow.test_airflow2_killed import assert_every_line, kill_run, wal_files
from tests.airflow.test_airflow3 import complete_messages

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(300)]

SHIM = {"AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "", "MWAA_LOGGING_PATCH_WATCHTOWER": "1"}


@pytest.mark.parametrize("lines", [3000, 60000])
def test_lines_of_a_sigkilled_raw_task_reach_cloudwatch_through_the_shim(
    airflow2: AirflowEnv, airflow_aws: LocalAWS, lines: int
) -> None:
    """3,000 lines: killed before its first send (without the write-ahead file all were lost); 60,000: killed
    mid-burst (without it ~7,000 were lost). The supervisor's shim handler ships them, to CloudWatch itself."""
    stream, output = kill_run(airflow2, {**SHIM, "MWAA_LOGGING_TEST_LINES": str(lines)})
    assert_every_line(complete_messages(airflow_aws, stream, airflow2.home / "spill"), lines, output)
    in_cloudwatch = {m for m in airflow_aws.messages(LOG_GROUP, stream) if m.startswith("killed-line ")}
    assert len(in_cloudwatch) == lines  # none had to be spilled
    assert not wal_files(airflow2)


#: A task handler shaped like MWAA 2.x's (``mwaa/logging/cloudwatch_handlers.py`` in aws/amazon-mwaa-docker-images):
#: it subclasses the provider's, builds its own watchtower handler (with a formatter) at every ``set_context``, so the
#: forked raw task has its own beside the supervisor's it inherited, and passes an empty ``base_log_folder``.
MWAA_SHAPED_CONFIG = '''
from copy import deepcopy

import boto3
import watchtower
from airflow.config_templates.airflow_local_settings import DEFAULT_LOGGING_CONFIG
from airflow.providers.amazon.aws.log.cloudwatch_task_handler import CloudwatchTaskHandler


class TaskLogHandler(CloudwatchTaskHandler):
    def __init__(self, base_log_folder, log_group_arn):
        super().__init__(base_log_folder="", log_group_arn=log_group_arn)

    def set_context(self, ti, *, identifier=None):
        self.handler = watchtower.CloudWatchLogHandler(
            log_group_name=self.log_group, log_stream_name=self._render_filename(ti, ti.try_number),
            boto3_client=boto3.client("logs"), use_queues=True, create_log_group=False)
        if self.formatter:
            self.handler.setFormatter(self.formatter)

    def emit(self, record):
        if self.handler:
            self.handler.emit(record)

    def close(self):
        if self.handler is not None:
            self.handler.close()
            self.handler = None


LOGGING_CONFIG = deepcopy(DEFAULT_LOGGING_CONFIG)
LOGGING_CONFIG["formatters"]["message_only"] = {"format": "%(message)s"}
LOGGING_CONFIG["handlers"]["task"] = {
    "class": "mwaa_shaped_logging.TaskLogHandler", "formatter": "message_only", "filters": ["mask_secrets"],
    "base_log_folder": "unused", "log_group_arn": "LOG_GROUP_ARN",
}
'''


def test_lines_of_a_sigkilled_raw_task_reach_cloudwatch_through_an_mwaa_shaped_task_handler(
    airflow2: AirflowEnv, airflow_aws: LocalAWS
) -> None:
    """Killed mid-burst (without the write-ahead file ~7,000 of 60,000 lines were lost): what the raw task sent and
    what the supervisor shipped, formatted by the handler's formatter, make every line once."""
    lines = 60000
    logs = airflow_aws.client("logs")
    with suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=LOG_GROUP)  # MWAA creates it; its handlers do not (create_log_group=False)
    pylib = airflow2.home / "mwaa-shaped"
    pylib.mkdir(exist_ok=True)
    (pylib / "mwaa_shaped_logging.py").write_text(MWAA_SHAPED_CONFIG.replace("LOG_GROUP_ARN", LOG_GROUP_ARN))
    env = {**SHIM, "AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "mwaa_shaped_logging.LOGGING_CONFIG",
           "PYTHONPATH": str(pylib), "MWAA_LOGGING_TEST_LINES": str(lines)}
    stream, output = kill_run(airflow2, env)
    assert_every_line(complete_messages(airflow_aws, stream, airflow2.home / "spill"), lines, output)
    in_cloudwatch = {m for m in airflow_aws.messages(LOG_GROUP, stream) if m.startswith("killed-line ")}
    assert len(in_cloudwatch) == lines
    assert not wal_files(airflow2)
