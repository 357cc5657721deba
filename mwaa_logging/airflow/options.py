"""Route ``[logging] remote_task_handler_kwargs`` to the remote IO, the engine settings, or an error."""

from __future__ import annotations

from typing import Any

from mwaa_logging.settings import SPECS

#: Keywords that configure the remote IO itself (not the engine).
IO_KEYS = frozenset({"delete_local_copy", "log_group_arn", "conn_id"})


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
        if key == "delete_local_copy":
            io_kwargs[key] = _flag(key, value)
        elif key in ("log_group_arn", "conn_id") and value is not None and not isinstance(value, str):
            raise ValueError(f"[logging] remote_task_handler_kwargs: {key}={value!r} is not a string")
        elif key in IO_KEYS:
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


def _flag(key: str, value: Any) -> bool:
    """A true/false keyword: JSON's booleans, or the words Airflow's own config accepts."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "t", "1"):
        return True
    if word in ("false", "f", "0"):
        return False
    raise ValueError(f"[logging] remote_task_handler_kwargs: {key}={value!r} is not true or false")
