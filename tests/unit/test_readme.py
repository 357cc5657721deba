"""README stays true: the configuration table is the one generated from the settings, the commands exist."""

from __future__ import annotations

import argparse
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


def _section(start: str, end: str) -> str:
    found = re.search(re.escape(start) + r"(.*?)" + re.escape(end), README, re.S)
    assert found is not None, f"README section {start!r}..{end!r} not found"
    return found.group(1)


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", text)


def test_stats_fields_listed_are_the_stats_fields_in_order() -> None:
    from dataclasses import fields

    from mwaa_logging import Stats

    listed = _backticked(_section("return `Stats`:", "`.as_dict()`"))
    assert listed == [f.name for f in fields(Stats)]


def test_budget_stats_fields_listed_are_the_budget_stats_fields() -> None:
    from dataclasses import fields

    from mwaa_logging.budgets.stats import BudgetStats

    listed = _backticked(_section('`handler.budget_stats()["put"]` gives', "and the scope in use"))
    assert set(listed) | {"scope"} == {f.name for f in fields(BudgetStats)}


def test_spill_reasons_table_lists_every_reason() -> None:
    from mwaa_logging.spillformat import SpillReason

    table = _section("| reason | when |", "Delivery is at-least-once")
    listed = {name for row in table.splitlines() if row.startswith("| `") for name in _backticked(row.split("|")[1])}
    assert listed == {reason.value for reason in SpillReason}


#: Options the README names that belong to other tools (pip, pytest, Airflow's task runner, mypy).
_FOREIGN_OPTIONS = {"--dist", "--durations", "--find-links", "--local", "--no-index", "--strict"}


def test_every_cli_option_the_readme_names_exists() -> None:
    from mwaa_logging.cli import SUBCOMMANDS, build_parser

    known: set[str] = set()
    for command in SUBCOMMANDS:
        commands = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
        known.update(option for action in commands.choices[command]._actions for option in action.option_strings)
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", README)) - _FOREIGN_OPTIONS
    assert named <= known, f"README names options no command has: {sorted(named - known)}"


def test_demo_option_defaults_in_the_readme_are_the_parser_defaults() -> None:
    from mwaa_logging.cli import build_parser

    defaults = vars(build_parser("demo").parse_args(["demo"]))
    pairs = re.findall(r"`--([a-z-]+)` \((\d[\d.]*)", _section("Options: ", "Option values"))
    assert len(pairs) >= 9
    for option, value in pairs:
        assert defaults[option.replace("-", "_")] == float(value), option


def test_every_mwaa_logging_variable_the_readme_names_is_read() -> None:
    from mwaa_logging.settings import ENV_PREFIX, OTHER_VARIABLES, SPECS, env_var

    named = set(re.findall(r"MWAA_LOGGING_[A-Z0-9_]+", README)) - {ENV_PREFIX}
    assert named <= {env_var(name) for name in SPECS} | OTHER_VARIABLES


def test_python_examples_compile() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        compile(block, "README.md", "exec")


def test_numbers_the_readme_states_are_the_code_constants() -> None:
    from mwaa_logging import limits
    from mwaa_logging.aws.s3spill import DEFAULT_MAX_OBJECT_BYTES, MAX_READ_BYTES
    from mwaa_logging.budget import BudgetConfig
    from mwaa_logging.engine.delivery import SPILL_RETRY_DELAY
    from mwaa_logging.replay import DEFAULT_RATE
    from mwaa_logging.spill.fallback import DEFAULT_COOLDOWN

    config = BudgetConfig()
    text = " ".join(README.split())  # line breaks as spaces
    assert "before CreateLogStream (50/s) and CreateLogGroup (10/s)" in text
    assert (limits.CREATE_LOG_STREAM_TPS, limits.CREATE_LOG_GROUP_TPS) == (50, 10)
    assert "drops to 0.7 \u00d7 what was in use" in text and config.beta == 0.7
    assert "settles at 0.85 \u00d7 the rate in use" in text and (1 + config.beta) / 2 == 0.85
    assert "10 s or more after its last throttle" in text and config.converge_window == 10
    assert "or 60 s after its last throttle" in text and config.forget_after == 60
    assert "S3 is tried again after 30 s" in text and DEFAULT_COOLDOWN == 30
    assert "spilling is tried again every 5 s" in text and SPILL_RETRY_DELAY == 5
    assert "at most 8 MiB uncompressed" in text and DEFAULT_MAX_OBJECT_BYTES == 8 << 20
    assert "to at most 64 MiB" in text and MAX_READ_BYTES == 64 << 20
    assert "(10 calls/s by default;" in text and DEFAULT_RATE == 10


def test_name_shortening_and_split_sizes_are_as_the_readme_says() -> None:
    from mwaa_logging.engine.channel import CHECK_SENDER_MASK
    from mwaa_logging.limits import MAX_EVENT_MESSAGE_BYTES
    from mwaa_logging.retry import Backoff
    from mwaa_logging.spill.layout import quote_name
    from mwaa_logging.streamnames import sanitize

    text = " ".join(README.split())
    assert "a name over CloudWatch's 512 characters keeps 495 and ends in `~` and a 16-digit hash" in text
    long = sanitize("a:b*" + "x" * 600)
    assert (len(long), long[:4], long[495], len(long[496:])) == (512, "a_b_", "~", 16)
    assert "a quoted name over 200 bytes keeps its first 183 and ends in `~` and 16 hex digits" in text
    quoted = quote_name("é" * 100)  # 600 bytes quoted
    assert (len(quoted), quoted[183], len(quoted[184:])) == (200, "~", 16)
    assert quote_name(".") == "%2E" and quote_name("..") == "%2E%2E"
    assert "A message over 1,048,550 UTF-8 bytes" in text and MAX_EVENT_MESSAGE_BYTES == 1_048_550
    assert "every 64th record" in text and CHECK_SENDER_MASK + 1 == 64
    assert "(up to 20 s after repeated throttles)" in text and Backoff().cap == 20


def test_the_empty_message_difference_is_listed_with_the_text_sent() -> None:
    """watchtower drops a record whose message is empty; we send a placeholder: a difference README must list."""
    from mwaa_logging.engine.channel import EMPTY_MESSAGE

    differences = _section("- Differences that only remove loss:", "- `handler.cwl_client`")
    assert "watchtower drops" in differences and f"`{EMPTY_MESSAGE}`" in differences
