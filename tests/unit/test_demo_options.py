"""``mwaa-logging demo``: its options and the pure parts of its verdict (fast: no endpoint, no task process)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from mwaa_logging.demo import add_arguments
from mwaa_logging.demo.runner import DemoConfig, Run
from mwaa_logging.demo.worker import MWAA_LOGGING, WATCHTOWER


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mwaa-logging demo")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_spill_to_is_a_usage_error_naming_the_option(blank: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The handler reads "" as unset and spills to its default directory: the demo would not read it back.
    err = usage_error(capsys, "--spill-to", blank)
    assert "argument --spill-to: must not be blank" in err, err


def _run(tmp_path: Path, handler: str, spill_to: str | None) -> Run:
    config = DemoConfig(spill_to=spill_to)
    return Run(config, target=Any, handler=handler, console=Any, workdir=tmp_path)  # type: ignore[arg-type]


def test_the_read_back_always_searches_the_default_spill_directory_the_handler_falls_back_to(tmp_path: Path) -> None:
    from mwaa_logging.spill.local import default_spill_directory

    default = str(default_spill_directory())
    assert _run(tmp_path, MWAA_LOGGING, "s3://b/p").spill_locations() == ["s3://b/p", default]
    assert _run(tmp_path, MWAA_LOGGING, None).spill_locations() == [default]
    assert _run(tmp_path, MWAA_LOGGING, default).spill_locations() == [default]
    assert _run(tmp_path, WATCHTOWER, None).spill_locations() == []  # watchtower does not spill
