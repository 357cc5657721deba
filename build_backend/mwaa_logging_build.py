"""In-tree PEP 517 backend: setuptools, plus one ``.pth`` file at the root of every wheel (editable too).

The ``.pth`` line makes ``MWAA_LOGGING_PATCH_WATCHTOWER=1`` patch watchtower at interpreter start
(:func:`mwaa_logging.compat.install_from_environment`). When the variable is unset it costs one
dictionary lookup; errors are swallowed so interpreter start never breaks.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every other PEP 517/660 hook unchanged)

PTH_NAME = "mwaa_logging_watchtower.pth"
PTH_LINE = (
    "import os; os.environ.get('MWAA_LOGGING_PATCH_WATCHTOWER') and "
    "exec('try:\\n import mwaa_logging.compat as c; c.install_from_environment()\\nexcept Exception:\\n pass')\n"
)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    _add_pth(Path(wheel_directory) / name)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    _add_pth(Path(wheel_directory) / name)
    return name


def _add_pth(wheel: Path) -> None:
    """Append the ``.pth`` file to ``wheel`` and its RECORD (sha256, size)."""
    data = PTH_LINE.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    rebuilt = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        for item in src.infolist():
            if item.filename == PTH_NAME:
                continue
            content = src.read(item.filename)
            if item.filename == record_name:
                lines = [ln for ln in content.decode().splitlines() if not ln.startswith(PTH_NAME + ",")]
                lines.insert(len(lines) - 1 if lines and lines[-1].startswith(record_name) else len(lines),
                             f"{PTH_NAME},sha256={digest},{len(data)}")
                content = ("\n".join(lines) + "\n").encode()
            dst.writestr(item, content)
        info = zipfile.ZipInfo(PTH_NAME, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        dst.writestr(info, data)
    os.replace(rebuilt, wheel)
