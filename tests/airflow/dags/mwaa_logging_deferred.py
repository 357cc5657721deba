"""Test DAG: a task that logs, defers to the triggerer, and logs again when it resumes (Airflow 3)."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator

LINES = int(os.environ.get("MWAA_LOGGING_TEST_LINES", "200"))


class LogDeferLog(BaseOperator):
    """Logs ``before-defer`` lines, waits a second in the triggerer, then logs ``after-resume`` lines."""

    def execute(self, context: Any) -> None:
        log = logging.getLogger("airflow.task")
        for i in range(LINES):
            log.info("before-defer %06d", i)
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=1)), method_name="resume")

    def resume(self, context: Any, event: Any = None) -> None:
        log = logging.getLogger("airflow.task")
        for i in range(LINES):
            log.info("after-resume %06d", i)
        log.warning("resumed-last-line")


with DAG(dag_id="mwaa_logging_deferred", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    LogDeferLog(task_id="wait")
