"""Fixtures that run a real Airflow 3 (own virtualenv, LocalExecutor, api-server) against LocalAWS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mwaa_logging.testing.local_aws import LocalAWS
from tests.airflow.harness import AirflowEnv, airflow_venv, running_airflow

#: The Airflow 3 lines every Airflow 3 test runs on: the newest (or ``MWAA_LOGGING_AIRFLOW_VENV``'s), and 3.0,
#: whose supervisor, ``dags test`` and dependencies differ most from it.
AIRFLOW3_LINES = {"newest": ("3.3.*", ".venv-airflow"), "3.0": ("3.0.6", ".venv-airflow30")}


@pytest.fixture(scope="session", params=list(AIRFLOW3_LINES))
def airflow3_venv(request: pytest.FixtureRequest) -> Path:
    return airflow_venv(*AIRFLOW3_LINES[request.param])


@pytest.fixture(scope="session")
def airflow_aws() -> Iterator[LocalAWS]:
    with LocalAWS() as aws:
        yield aws


@pytest.fixture(scope="session")
def airflow3(
    airflow3_venv: Path, airflow_aws: LocalAWS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowEnv]:
    """Airflow 3 configured with ``logging_config_class = mwaa_logging.airflow.LOGGING_CONFIG``."""
    home = tmp_path_factory.mktemp("airflow3-home")
    with running_airflow(
        airflow3_venv,
        home,
        airflow_aws.url,
        AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS="mwaa_logging.airflow.LOGGING_CONFIG",
        MWAA_LOGGING_SPILL_TO=str(home / "spill"),
    ) as env:
        yield env


#: The Airflow 2 lines every Airflow 2 test runs on: 2.10, and 2.9 (the oldest the Amazon provider 9 supports; its
#: FileTaskHandler has no rotation keywords, and it runs DAGs only through the scheduler).
AIRFLOW2_LINES = {"2.10": ("2.10.5", ".venv-airflow2"), "2.9": ("2.9.3", ".venv-airflow29")}


@pytest.fixture(scope="session", params=list(AIRFLOW2_LINES))
def airflow2_venv(request: pytest.FixtureRequest) -> Path:
    return airflow_venv(*AIRFLOW2_LINES[request.param])


@pytest.fixture(scope="session")
def airflow2(airflow2_venv: Path, airflow_aws: LocalAWS, tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """Airflow 2 (SequentialExecutor: ``tasks run --local`` forks the supervisor and the raw task)."""
    home = tmp_path_factory.mktemp("airflow2-home")
    env = AirflowEnv(
        venv=airflow2_venv,
        home=home,
        endpoint_url=airflow_aws.url,
        extra_env={
            "AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "mwaa_logging.airflow.LOGGING_CONFIG",
            "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
            "MWAA_LOGGING_SPILL_TO": str(home / "spill"),
        },
    )
    env.migrate()
    return env
