"""README stays true: the configuration table is the one generated from the settings, the commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from mwaa_logging.settings_doc import settings_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_configuration_table_matches_the_settings() -> None:
    section = re.search(r"<!-- settings-table:start.*?-->\n(.*?)\n<!-- settings-table:end -->", README, re.S)
    assert section is not None
    assert section.group(1).strip() == settings_table().strip(), "run: python -m mwaa_logging.settings_doc"


def test_the_two_commands_exist_and_ci_runs_the_test_command() -> None:
    assert "scripts/demo.sh" in README and "scripts/test.sh" in README
    for script in ("scripts/demo.sh", "scripts/test.sh", ".ci/run"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()
