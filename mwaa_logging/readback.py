"""``mwaa-logging read``: print one stream as one log, CloudWatch and spilled lines merged (:func:`read_stream`).

For operators without a Python prompt: what the Airflow UI shows for a task, from a shell, also for streams Airflow
does not know (a DAG processor's, a custom handler's).
"""

from __future__ import annotations

import argparse
import io
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import orjson

from mwaa_logging.argtypes import endpoint_url, spill_location

if TYPE_CHECKING:
    from mwaa_logging.reader import ReadEvent

__all__ = ["add_arguments", "format_event", "parse_time", "run"]


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ISO 8601 (``2026-12-07T04:00:00Z``, UTC unless an offset is given) or
    from a number of milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither ISO 8601 nor milliseconds since the epoch") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def format_event(event: ReadEvent, as_json: bool) -> str:
    """One line of output: ``<UTC time> <message>``, or a JSON object with the source and spill reason."""
    if as_json:
        fields = {"timestamp": event.timestamp, "message": event.message, "source": event.source}
        if event.reason is not None:
            fields["reason"] = event.reason
        return orjson.dumps(fields).decode()
    when = datetime.fromtimestamp(event.timestamp / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    return f"{when.replace('+00:00', 'Z')} {event.message}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("group", metavar="GROUP", help="log group name")
    parser.add_argument("stream", metavar="STREAM", help="log stream name")
    parser.add_argument("--spill-to", action="append", default=[], metavar="LOCATION", type=spill_location,
                        help="where the handler spilled (its spill_to: s3://bucket/prefix or a directory; "
                             "repeatable; default: MWAA_LOGGING_SPILL_TO when set); the default local spill "
                             "directory is always searched too")
    parser.add_argument("--start", type=parse_time, metavar="TIME", help="first time, ISO 8601 or ms (inclusive)")
    parser.add_argument("--end", type=parse_time, metavar="TIME", help="last time, ISO 8601 or ms (exclusive)")
    parser.add_argument("--json", action="store_true", help="one JSON object a line, with source and spill reason")
    parser.add_argument("--dedupe", choices=("exact", "across_sources", "off"), default="exact",
                        help="duplicates of at-least-once delivery: exact drops whole deliveries stored again "
                             "(a line logged twice in one millisecond and sent in one call stays twice), "
                             "across_sources only spilled copies of lines CloudWatch holds, off none "
                             "(default %(default)s)")
    parser.add_argument("--spilled-only", action="store_true", help="do not read CloudWatch")
    parser.add_argument("--endpoint-url", type=endpoint_url,
                        help="CloudWatch Logs endpoint (default: AWS configuration)")
    parser.add_argument("--s3-endpoint-url", type=endpoint_url, help="S3 endpoint (default: AWS configuration)")
    parser.add_argument("--region", help="AWS region (default: AWS configuration)")
    parser.add_argument("--profile", help="AWS profile (default: AWS configuration)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of ``mwaa-logging read``: 0 all read (none found is said on stderr), 1 some spill location
    could not be read or a ``--spill-to`` directory does not exist (the rest is printed), 2 CloudWatch could not be
    read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from mwaa_logging.aws.clients import make_logs_client, make_s3_client
    from mwaa_logging.engine.diagnostics import redact_urls
    from mwaa_logging.reader import configured_spill_to, read_stream
    from mwaa_logging.settings import env_var
    from mwaa_logging.spill.factory import is_s3_url, local_directory_of
    from mwaa_logging.spill.local import default_spill_directories
    from mwaa_logging.spillformat import DamagedSpill

    if out is None:
        out = sys.stdout
        if isinstance(out, io.TextIOWrapper):  # a terminal or pipe not in UTF-8: a line it cannot show is escaped
            out.reconfigure(errors="backslashreplace")
    err = sys.stderr if err is None else err
    unreadable: list[str] = []

    def spill_error(location: str, error: Exception) -> None:
        unreadable.append(location)
        trouble = "damaged spill object" if isinstance(error, DamagedSpill) else "cannot read spilled lines at"
        print(redact_urls(f"mwaa-logging read: {trouble} {location}: {error}"), file=err)

    for location in args.spill_to:  # a mistyped one read as "nothing spilled there"
        if not is_s3_url(location) and not (root := Path(local_directory_of(location))).is_dir():
            spill_error(location, NotADirectoryError(f"{root} is not a directory") if root.exists()
                        else FileNotFoundError(f"no such directory {root}"))
    if not args.spill_to:  # where this environment's handlers spill when not told otherwise (made at the first spill)
        try:
            args.spill_to = [location] if (location := configured_spill_to()) else []
        except ValueError as error:
            print(f"mwaa-logging read: {env_var('spill_to')}: {error}", file=err)
            return 2
    try:
        logs = None if args.spilled_only else make_logs_client(
            None, args.profile, region_name=args.region, endpoint_url=args.endpoint_url)
        s3 = None
        if any(str(location).startswith("s3://") for location in args.spill_to):
            s3 = make_s3_client(None, args.profile, region_name=args.region, endpoint_url=args.s3_endpoint_url)
        spill_to = args.spill_to or [str(path) for path in default_spill_directories() if path.is_dir()] or None
        events = read_stream(args.group, args.stream, logs_client=logs, spill_to=spill_to,
                             start_time=args.start, end_time=args.end, dedupe=args.dedupe,
                             include_cloudwatch=not args.spilled_only, s3_client=s3, on_spill_error=spill_error)
        printed = 0
        for event in events:
            print(format_event(event, args.json), file=out)
            printed += 1
        if not printed:  # a typo'd group or stream name reads as empty: say what was searched
            searched = dict.fromkeys([*([] if args.spilled_only else ["CloudWatch"]), *map(str, spill_to or []),
                                      *(str(path) for path in default_spill_directories() if path.is_dir())])
            searched = {location: None for location in searched if location not in unreadable}
            print(redact_urls(f"mwaa-logging read: no lines in {args.group}/{args.stream} "
                              f"(searched: {', '.join(searched) or 'nothing'})"), file=err)
    except (BotoCoreError, ClientError) as error:
        print(redact_urls(f"mwaa-logging read: cannot read {args.group}/{args.stream} from CloudWatch: {error}"),
              file=err)
        return 2
    except BrokenPipeError:  # `| head`: the reader stopped listening
        return 0
    return 1 if unreadable else 0
