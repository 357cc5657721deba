"""Build ``LOGGING_CONFIG``, ``REMOTE_TASK_LOG`` and ``DEFAULT_REMOTE_CONN_ID`` from Airflow's configuration.

Imported (through :mod:`mwaa_logging.airflow`) only inside Airflow, when it resolves
``[logging] logging_config_class = mwaa_logging.airflow.LOGGING_CONFIG``. Airflow's default logging
config is taken unchanged; when ``[logging] remote_logging`` is on and ``remote_base_log_folder`` is
``cloudwatch://...``, task logs go through mwaa-logging: on Airflow 3 via ``REMOTE_TASK_LOG``, on
Airflow 2 via the ``task`` handler. Any other remote base keeps Airflow's stock remote logging.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
from typing import Any

from mwaa_logging.airflow.naming import configured_log_group, is_cloudwatch_remote_base
from mwaa_logging.airflow.options import split_handler_kwargs

#: Airflow's default AWS connection id (what the provider's ``AwsLogsHook`` uses).
AWS_DEFAULT_CONN_ID = "aws_default"
TASK_HANDLER_CLASS = "mwaa_logging.airflow.task_handler.CloudwatchTaskHandler"


def airflow_version() -> tuple[int, int]:
    import airflow

    major, minor = str(airflow.__version__).split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


#: Airflow 3 releases whose supervisor fails every task when the remote logging connection does not exist
#: ("generator didn't yield" in ``_remote_logging_conn``; seen on 3.0.6 and 3.1.8).
_MISSING_CONN_FAILS_TASKS = frozenset({(3, 0), (3, 1)})


def provider_default_conn_id(version: tuple[int, int]) -> str | None:
    """``DEFAULT_REMOTE_CONN_ID``: the provider's ``aws_default``, except on Airflow 3.0 and 3.1.

    There, a default connection that does not exist fails every task; without a default the IO uses
    the AWS credential chain, and ``[logging] remote_log_conn_id`` still selects a connection explicitly.
    """
    return None if version[:2] in _MISSING_CONN_FAILS_TASKS else AWS_DEFAULT_CONN_ID


def build() -> tuple[dict[str, Any], Any, str | None]:
    """``(LOGGING_CONFIG, REMOTE_TASK_LOG, DEFAULT_REMOTE_CONN_ID)`` for the running Airflow."""
    from airflow.configuration import conf

    remote_base = conf.get("logging", "remote_base_log_folder", fallback="")
    ours = conf.getboolean("logging", "remote_logging", fallback=False) and is_cloudwatch_remote_base(remote_base)
    stock = _stock_settings(remote_logging=not ours)
    logging_config: dict[str, Any] = copy.deepcopy(stock.DEFAULT_LOGGING_CONFIG)
    if not ours:
        return logging_config, getattr(stock, "REMOTE_TASK_LOG", None), getattr(stock, "DEFAULT_REMOTE_CONN_ID", None)

    from airflow.utils.log.file_task_handler import FileTaskHandler

    handler_kwargs = conf.getjson("logging", "remote_task_handler_kwargs", fallback={}) or {}
    if not isinstance(handler_kwargs, dict):
        raise ValueError("[logging] remote_task_handler_kwargs must be a JSON object")
    file_params = frozenset(inspect.signature(FileTaskHandler.__init__).parameters) - {"self", "base_log_folder"}
    io_kwargs, settings = split_handler_kwargs(handler_kwargs, file_params)
    file_kwargs = {k: v for k, v in handler_kwargs.items() if k in file_params}
    target = configured_log_group(io_kwargs.pop("log_group_arn", None), remote_base)
    conn_id = io_kwargs.pop("conn_id", None) or conf.get("logging", "remote_log_conn_id", fallback="") or None
    base_log_folder = conf.get("logging", "base_log_folder")  # as Airflow names the files ('~' too)
    task = logging_config["handlers"]["task"]
    task.update(file_kwargs)  # what Airflow's own remote logging branch passes to the task handler

    version = airflow_version()
    if version[0] < 3:
        task.pop("filename_template", None)
        task.update({"class": TASK_HANDLER_CLASS, "log_group_arn": target.arn, "conn_id": conn_id, **settings})
        return logging_config, None, AWS_DEFAULT_CONN_ID

    from mwaa_logging.airflow.remote_io import CloudWatchRemoteLogIO

    json_default = conf.getimport("aws", "cloudwatch_task_handler_json_serializer", fallback=None)
    io = CloudWatchRemoteLogIO(
        base_log_folder=base_log_folder,
        log_group_arn=target.arn,
        remote_base=remote_base,
        delete_local_copy=io_kwargs.get("delete_local_copy", conf.getboolean("logging", "delete_local_logs")),
        conn_id=conn_id or provider_default_conn_id(version),
        settings=settings,
        json_default=json_default,
    )
    return logging_config, io, provider_default_conn_id(version)


def _stock_settings(*, remote_logging: bool) -> Any:
    """Airflow's ``airflow_local_settings`` module; imported with remote logging off when we own it.

    With remote logging on, that module builds the provider's CloudWatch handler/IO from
    ``remote_task_handler_kwargs`` and fails on our settings in there (``spill_to``, ...). Its default
    logging config is otherwise the same.
    """
    name = "airflow.config_templates.airflow_local_settings"
    if remote_logging or name in sys.modules:
        return importlib.import_module(name)
    key = "AIRFLOW__LOGGING__REMOTE_LOGGING"  # environment variables win over airflow.cfg
    previous = os.environ.get(key)
    os.environ[key] = "False"
    try:
        return importlib.import_module(name)
    finally:
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous


LOGGING_CONFIG, REMOTE_TASK_LOG, DEFAULT_REMOTE_CONN_ID = build()
