"""The watchtower shim: in-process patch, the import hook, and the .pth file shipped in the wheel."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import watchtower

import mwaa_logging
from mwaa_logging.compat import ENV_VAR, install_from_environment, is_patched, patch_watchtower, unpatch_watchtower

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def importer_module() -> Iterator[types.ModuleType]:
    """A loaded module that did ``from watchtower import CloudWatchLogHandler`` before the patch."""
    module = types.ModuleType("uses_watchtower")
    module.CloudWatchLogHandler = watchtower.CloudWatchLogHandler  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        unpatch_watchtower()
        del sys.modules[module.__name__]


def test_patch_replaces_the_class_everywhere_and_unpatch_restores_it(importer_module: types.ModuleType) -> None:
    original = watchtower.CloudWatchLogHandler
    assert patch_watchtower() is original
    assert patch_watchtower() is original  # idempotent
    assert is_patched()
    assert issubclass(watchtower.CloudWatchLogHandler, mwaa_logging.CloudWatchLogHandler)
    assert importer_module.CloudWatchLogHandler is watchtower.CloudWatchLogHandler
    handler = watchtower.CloudWatchLogHandler(log_group_name="g", log_stream_name="s", use_queues=True)
    try:
        assert isinstance(handler, mwaa_logging.CloudWatchLogHandler)
        assert handler.log_stream_name == "s" and not handler.shutting_down
    finally:
        handler.close(timeout=0)
    unpatch_watchtower()
    assert watchtower.CloudWatchLogHandler is original and importer_module.CloudWatchLogHandler is original


def test_a_bad_setting_falls_back_to_watchtower_instead_of_breaking_logging(
    importer_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = patch_watchtower()
    monkeypatch.setenv("MWAA_LOGGING_MAX_LATENCY", "-1")
    with pytest.warns(UserWarning, match="max_latency"):
        handler = watchtower.CloudWatchLogHandler(log_group_name="g", log_stream_name="s", create_log_group=False)
    assert type(handler) is original


def test_subclasses_of_the_patched_class_construct_normally(importer_module: types.ModuleType) -> None:
    patch_watchtower()

    class TaskHandler(watchtower.CloudWatchLogHandler):  # type: ignore[misc,name-defined]
        def __init__(self, group: str) -> None:
            super().__init__(log_group_name=group, log_stream_name="fixed")

    handler = TaskHandler("sub-group")
    try:
        assert handler.log_group_name == "sub-group" and handler.log_stream_name == "fixed"
    finally:
        handler.close(timeout=0)


def test_environment_switch_is_off_unless_set() -> None:
    before = list(sys.meta_path)
    assert install_from_environment({}) is False
    assert install_from_environment({ENV_VAR: "0"}) is False
    assert sys.meta_path == before and not is_patched()


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != ENV_VAR} | env
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_switch_patches_watchtower_when_it_is_imported_later() -> None:
    code = (
        "import sys, mwaa_logging.compat as c\n"
        "assert c.install_from_environment()\n"
        "assert 'watchtower' not in sys.modules\n"
        "import watchtower, mwaa_logging\n"
        "print(issubclass(watchtower.CloudWatchLogHandler, mwaa_logging.CloudWatchLogHandler))"
    )
    assert run_python(code, **{ENV_VAR: "1"}) == "True"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel .``: the artifact a normal ``pip install .`` installs. Built from a copy of the sources: setuptools
    writes ``build/`` and ``*.egg-info`` into the tree it builds, where another worker may be building too."""
    out_dir = tmp_path_factory.mktemp("wheel")
    sources = tmp_path_factory.mktemp("sources") / "mwaa-logging"
    shutil.copytree(REPO, sources, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "artifacts"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), sources],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out_dir.glob("mwaa_logging-*.whl")
    return built


def test_wheel_ships_the_pth_hook_with_a_valid_record(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        pth = archive.read("mwaa_logging_watchtower.pth")
        record = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))).decode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(pth).digest()).rstrip(b"=").decode()
    assert f"mwaa_logging_watchtower.pth,sha256={digest},{len(pth)}" in record.splitlines()


@pytest.mark.parametrize(("value", "patched"), [("1", "True"), ("", "False")])
def test_pth_line_patches_only_when_switched_on(wheel: Path, value: str, patched: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        line = archive.read("mwaa_logging_watchtower.pth").decode().strip()
    assert line.startswith("import ")  # site.py executes .pth lines that start with "import"
    check = "print(issubclass(watchtower.CloudWatchLogHandler, mwaa_logging.CloudWatchLogHandler))"
    code = f"{line}\nimport watchtower, mwaa_logging\n{check}"
    assert run_python(code, **{ENV_VAR: value}) == patched


def test_pth_line_never_breaks_interpreter_start(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        line = archive.read("mwaa_logging_watchtower.pth").decode().strip()
    # mwaa_logging not importable at all (a broken install): the line must still be harmless
    code = f"import sys; sys.modules['mwaa_logging'] = None\n{line}\nprint('started')"
    assert run_python(code, **{ENV_VAR: "1"}) == "started"
