"""Test DAG: logs numbered lines as fast as it can, then SIGKILLs its own process (as the OOM killer would)."""

from __future__ import annotations

import logging
import os
import signal
from datetime import datetime

try:  # Airflow 3 (the DAG folder is shared; only the Airflow 2 test runs this DAG)
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

LINES = int(os.environ.get("MWAA_LOGGING_TEST_LINES", "2000"))


@task
def log_and_die() -> None:
    log = logging.getLogger("airflow.task")
    for i in range(LINES):
        log.info("killed-line %06d", i)
    log.warning("last-line-before-kill")
    os.kill(os.getpid(), signal.SIGKILL)


with DAG(dag_id="mwaa_logging_killed", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    log_and_die()
