"""Where Airflow task logs go in CloudWatch: log group from the remote base, stream names like the provider's.

Pure functions, no Airflow import: both the Airflow 3 remote IO and the Airflow 2 task handler use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mwaa_logging.streamnames import shorten

CLOUDWATCH_SCHEME = "cloudwatch"


@dataclass(frozen=True)
class LogGroupTarget:
    """A CloudWatch log group named by an ARN ``arn:aws:logs:REGION:ACCOUNT:log-group:NAME``."""

    arn: str
    region_name: str
    log_group_name: str

    @classmethod
    def from_arn(cls, arn: str) -> LogGroupTarget:
        """Parse the ARN the way the Amazon provider does (``split(":")``, fields 3 and 6)."""
        parts = arn.split(":")
        if len(parts) < 7 or parts[0] != "arn" or parts[5] != "log-group" or not parts[6]:
            raise ValueError(
                f"Not a CloudWatch log group ARN: {arn!r} "
                "(expected arn:aws:logs:REGION:ACCOUNT:log-group:NAME)"
            )
        return cls(arn=arn, region_name=parts[3], log_group_name=parts[6])

    @classmethod
    def from_remote_base(cls, remote_base_log_folder: str) -> LogGroupTarget:
        """Parse ``[logging] remote_base_log_folder = cloudwatch://arn:aws:logs:...:log-group:NAME``."""
        url = urlsplit(remote_base_log_folder)
        if url.scheme != CLOUDWATCH_SCHEME:
            raise ValueError(f"remote_base_log_folder must start with cloudwatch://, got {remote_base_log_folder!r}")
        return cls.from_arn(url.netloc + url.path)


def configured_log_group(log_group_arn: str | None, remote_base_log_folder: str) -> LogGroupTarget:
    """The log group of ``remote_task_handler_kwargs``' ``log_group_arn``, else of ``remote_base_log_folder``; a bad
    value raises ``ValueError`` naming the setting it came from."""
    try:
        if log_group_arn:
            return LogGroupTarget.from_arn(log_group_arn)
        return LogGroupTarget.from_remote_base(remote_base_log_folder)
    except ValueError as exc:
        setting = "remote_task_handler_kwargs: log_group_arn" if log_group_arn else "remote_base_log_folder"
        raise ValueError(f"[logging] {setting}: {exc}") from None


def is_cloudwatch_remote_base(remote_base_log_folder: str | None) -> bool:
    """Whether ``remote_base_log_folder`` names a CloudWatch log group (``cloudwatch://...``)."""
    return bool(remote_base_log_folder) and urlsplit(remote_base_log_folder or "").scheme == CLOUDWATCH_SCHEME


def stream_name_for(relative_log_path: str) -> str:
    """The provider's stream name for a task log path: the relative path with ``:`` replaced by ``_``.

    ``dag_id=D/run_id=manual__2026-11-24T07:41:15+00:00/task_id=T/attempt=1.log`` becomes
    ``dag_id=D/run_id=manual__2026-11-24T07_41_15+00_00/task_id=T/attempt=1.log``
    (``:`` is not allowed in stream names). A name over CloudWatch's 512 characters (dag and task ids near
    their 250-character limits), which the provider could not create, keeps its first 495 characters and ends
    in ``~`` and 16 hex digits of its SHA-256: writer and reader derive the same name.
    """
    return shorten(relative_log_path.replace(":", "_"))
