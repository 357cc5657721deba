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
from mwaa_logging.settings import SPECS

#: Airflow's default AWS connection id (what the provider's ``AwsLogsHook`` uses).
AWS_DEFAULT_CONN_ID = "aws_default"
#: Keywords of ``remote_task_handler_kwargs`` that configure the remote IO itself, not the engine.
IO_KEYS = frozenset({"delete_local_copy", "log_group_arn", "conn_id"})
TASK_HANDLER_CLASS = "mwaa_logging.airflow.task_handler.CloudwatchTaskHandler"


def airflow_major() -> int:
    import airflow

    return int(str(airflow.__version__).split(".", 1)[0])


def split_handler_kwargs(
    kwargs: dict[str, Any], file_handler_params: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``remote_task_handler_kwargs`` into (remote IO keywords, engine settings).

    FileTaskHandler parameters are left out (Airflow already passes them to the ``task`` handler).
    Unknown keys raise ``ValueError`` naming them, so a typo fails at startup.
    """
    io_kwargs: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in kwargs.items():
        if key in file_handler_params:
            continue
        if key in IO_KEYS:
            io_kwargs[key] = value
        elif key in SPECS:
            settings[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"[logging] remote_task_handler_kwargs: unknown key(s) {', '.join(sorted(unknown))}; "
            f"mwaa-logging accepts {', '.join(sorted(IO_KEYS | set(SPECS)))}"
        )
    return io_kwargs, settings


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

    if airflow_major() < 3:
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
        conn_id=conn_id or AWS_DEFAULT_CONN_ID,
        settings=settings,
        json_default=json_default,
    )
    return logging_config, io, AWS_DEFAULT_CONN_ID


def _arn_of(remote_base: str) -> str:
    return LogGroupTarget.from_remote_base(remote_base).arn


LOGGING_CONFIG, REMOTE_TASK_LOG, DEFAULT_REMOTE_CONN_ID = build()
