"""Build ``LOGGING_CONFIG``, ``REMOTE_TASK_LOG`` and ``DEFAULT_REMOTE_CONN_ID`` from Airflow's configuration.

Imported (through :mod:`mwaa_logging.airflow`) only inside Airflow, when it resolves
``[logging] logging_config_class = mwaa_logging.airflow.LOGGING_CONFIG``. Airflow's default logging
config is taken unchanged; when ``[logging] remote_logging`` is on and ``remote_base_log_folder`` is
``cloudwatch://...``, task logs go through mwaa-logging: on Airflow 3 via ``REMOTE_TASK_LOG``, on
Airflow 2 via the ``task`` handler. Any other remote base keeps Airflow's stock remote logging.
"""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

from mwaa_logging.airflow.naming import LogGroupTarget, is_cloudwatch_remote_base
from mwaa_logging.airflow.options import split_handler_kwargs

#: Airflow's default AWS connection id (what the provider's ``AwsLogsHook`` uses).
AWS_DEFAULT_CONN_ID = "aws_default"
TASK_HANDLER_CLASS = "mwaa_logging.airflow.task_handler.CloudwatchTaskHandler"


def airflow_version() -> tuple[int, int]:
    import airflow

    major, minor = str(airflow.__version__).split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def provider_default_conn_id(version: tuple[int, int]) -> str | None:
    """``DEFAULT_REMOTE_CONN_ID``: the provider's ``aws_default``, except on Airflow 3.0.

    Airflow 3.0's supervisor fails every task when the remote logging connection does not exist
    ("generator didn't yield" in ``_remote_logging_conn``); without a default it uses the AWS
    credential chain, and ``[logging] remote_log_conn_id`` still selects a connection explicitly.
    """
    return None if version[:2] == (3, 0) else AWS_DEFAULT_CONN_ID


def build() -> tuple[dict[str, Any], Any, str | None]:
    """``(LOGGING_CONFIG, REMOTE_TASK_LOG, DEFAULT_REMOTE_CONN_ID)`` for the running Airflow."""
    from airflow.config_templates import airflow_local_settings as stock
    from airflow.configuration import conf

    logging_config: dict[str, Any] = copy.deepcopy(stock.DEFAULT_LOGGING_CONFIG)
    remote_task_log = getattr(stock, "REMOTE_TASK_LOG", None)
    default_conn_id = getattr(stock, "DEFAULT_REMOTE_CONN_ID", None)

    remote_base = conf.get("logging", "remote_base_log_folder", fallback="")
    if not (conf.getboolean("logging", "remote_logging", fallback=False) and is_cloudwatch_remote_base(remote_base)):
        return logging_config, remote_task_log, default_conn_id

    from airflow.utils.log.file_task_handler import FileTaskHandler

    handler_kwargs = conf.getjson("logging", "remote_task_handler_kwargs", fallback={}) or {}
    if not isinstance(handler_kwargs, dict):
        raise ValueError("[logging] remote_task_handler_kwargs must be a JSON object")
    file_params = frozenset(inspect.signature(FileTaskHandler.__init__).parameters) - {"self", "base_log_folder"}
    io_kwargs, settings = split_handler_kwargs(handler_kwargs, file_params)
    target = LogGroupTarget.from_arn(io_kwargs.pop("log_group_arn", None) or _arn_of(remote_base))
    conn_id = io_kwargs.pop("conn_id", None) or conf.get("logging", "remote_log_conn_id", fallback="") or None
    base_log_folder = os.path.expanduser(conf.get("logging", "base_log_folder"))

    version = airflow_version()
    if version[0] < 3:
        task = logging_config["handlers"]["task"]
        for key in (*io_kwargs, *settings):
            task.pop(key, None)
        task["class"] = TASK_HANDLER_CLASS
        task["log_group_arn"] = target.arn
        task["conn_id"] = conn_id
        task.pop("filename_template", None)
        task.update(settings)
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


def _arn_of(remote_base: str) -> str:
    return LogGroupTarget.from_remote_base(remote_base).arn


LOGGING_CONFIG, REMOTE_TASK_LOG, DEFAULT_REMOTE_CONN_ID = build()
