"""Test DAG: logs numbered lines through every path a task has (logger, print, a line over 1 MB)."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

LINES = int(os.environ.get("MWAA_LOGGING_TEST_LINES", "200"))
BIG_LINE_BYTES = 1_200_000


@task
def emit() -> None:
    log = logging.getLogger("airflow.task")
    for i in range(LINES):
        log.info("logger-line %06d", i)
    for i in range(LINES):
        print(f"print-line {i:06d}")
    sys.stdout.flush()
    big = "B" * BIG_LINE_BYTES
    log.info("big-line-start %s big-line-end", big)
    log.warning("last-line")


with DAG(dag_id="mwaa_logging_demo", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    emit()
