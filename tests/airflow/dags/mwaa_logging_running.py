"""Test DAG: a task that logs, then keeps running until a file appears (a log read while a task runs)."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

LINES = int(os.environ.get("MWAA_LOGGING_TEST_LINES", "200"))
RELEASE = os.environ.get("MWAA_LOGGING_TEST_RELEASE", "")


@task
def hold() -> None:
    """Log ``running-line`` lines, wait (at most 120 s) for the release file, then log the last line."""
    log = logging.getLogger("airflow.task")
    for i in range(LINES):
        log.info("running-line %06d", i)
    deadline = time.monotonic() + 120
    while RELEASE and not Path(RELEASE).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    log.warning("released-last-line")


with DAG(dag_id="mwaa_logging_running", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    hold()
