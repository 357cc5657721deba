"""mwaa-logging: ship Airflow logs to CloudWatch Logs without losing a line. Commands: the demo, reading a
stream back (CloudWatch and spilled lines as one log), replaying spilled lines, a local CloudWatch + S3 endpoint."""

# Each subcommand lives in its feature module (``add_arguments``, ``run``) and is imported only when used.

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("mwaa_logging.demo", "Run the end-to-end demo on the embedded local AWS endpoint."),
    "read": ("mwaa_logging.readback", "Print one log stream: CloudWatch and spilled lines merged, split lines whole."),
    "replay": ("mwaa_logging.replay", "Re-ingest spilled events into CloudWatch Logs."),
    "local-aws": ("mwaa_logging.testing.cli", "Serve the local CloudWatch Logs + S3 endpoint."),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (a subcommand never slows or breaks another)."""
    parser = argparse.ArgumentParser(prog="mwaa-logging", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(args._module)
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
