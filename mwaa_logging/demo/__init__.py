"""``mwaa-logging demo``: a simulated Airflow worker logging through mwaa-logging into a throttling
CloudWatch endpoint, every line read back and checked; ``--compare watchtower`` runs the same
workload through watchtower and charts both.

Modules: :mod:`.workload` (the task logs, from a seed), :mod:`.worker` (one task process),
:mod:`.endpoint` (embedded local AWS, throttle storm, a neighbour sharing the quota),
:mod:`.progress` (live counters), :mod:`.runner` (one run), :mod:`.verify` (read back and compare),
:mod:`.report` and :mod:`.chart` (the summary).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mwaa_logging.demo.runner import DemoConfig

__all__ = ["add_arguments", "run"]

DEFAULT_CHART = Path("artifacts") / "demo-compare.html"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _optional_tps(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0 (or 'none')")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mwaa_logging.demo.runner import DemoConfig

    defaults = DemoConfig()
    workload = parser.add_argument_group("workload (a simulated Airflow worker)")
    workload.add_argument("--tasks", type=_positive_int, default=defaults.tasks,
                          help="task processes (default %(default)s)")
    workload.add_argument("--lines", type=_positive_int, default=defaults.lines,
                          help="log lines per task (default %(default)s)")
    workload.add_argument("--big-events", type=int, default=defaults.big_events, metavar="N",
                          help="of those lines, events over 1 MB (default %(default)s)")
    workload.add_argument("--duration", type=_non_negative, default=defaults.duration, metavar="SECONDS",
                          help="time each task spends logging, in bursts (default %(default)s)")
    workload.add_argument("--seed", type=int, default=defaults.seed, help="workload seed (default %(default)s)")
    cloud = parser.add_argument_group("CloudWatch conditions (embedded endpoint, or a `mwaa-logging local-aws` one)")
    cloud.add_argument("--quota", type=_optional_tps, default=defaults.quota, metavar="TPS",
                       help="account-wide PutLogEvents quota of the endpoint, calls/s (default %(default)s; 'none')")
    cloud.add_argument("--neighbour-tps", type=_non_negative, default=defaults.neighbour_tps, metavar="TPS",
                       help="PutLogEvents calls/s of another workload sharing the quota (default %(default)s)")
    cloud.add_argument("--storm", type=_non_negative, default=defaults.storm, metavar="SECONDS",
                       help="throttle every PutLogEvents call for this long, 30%% into the logging "
                            "(default %(default)s; 0: none)")
    ours = parser.add_argument_group("mwaa-logging settings")
    ours.add_argument("--rate-limit", type=_optional_tps, default=defaults.rate_limit, metavar="TPS",
                      help="put_rate_limit for the whole host (rate_limit_scope=host) (default %(default)s; 'none')")
    ours.add_argument("--max-latency", type=float, default=defaults.max_latency, metavar="SECONDS",
                      help="max_latency: older undelivered events are spilled (default %(default)s)")
    ours.add_argument("--spill-to", default=None, metavar="URL",
                      help="spill target (default s3://mwaa-logging-demo/<log group>/ on the endpoint)")
    ours.add_argument("--no-replay", dest="replay", action="store_false",
                      help="skip re-ingesting spilled lines with `mwaa-logging replay` after the read-back")
    where = parser.add_argument_group("where")
    where.add_argument("--endpoint-url", default=None, metavar="URL",
                       help="use this CloudWatch Logs (+ S3) endpoint instead of the embedded one")
    where.add_argument("--s3-endpoint-url", default=None, metavar="URL", help="S3 endpoint (default: --endpoint-url)")
    where.add_argument("--real-aws", action="store_true",
                       help="use the real AWS account of the default credential chain (needs --spill-to)")
    output = parser.add_argument_group("output")
    output.add_argument("--compare", choices=["watchtower"], default=None,
                        help="also run the same workload through watchtower and compare")
    output.add_argument("--chart", type=Path, default=None, metavar="PATH",
                        help=f"chart file for --compare (default {DEFAULT_CHART})")
    output.add_argument("--quiet", action="store_true", help="no live progress")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mwaa_logging.demo.endpoint import DEMO_BUCKET, Target
    from mwaa_logging.demo.runner import DemoConfig, RunResult, run_handlers
    from mwaa_logging.demo.worker import MWAA_LOGGING, WATCHTOWER

    console = Console(width=None if _is_tty() else max(150, shutil.get_terminal_size((150, 40)).columns))
    if args.real_aws and not args.spill_to:
        console.print("--real-aws needs --spill-to (an s3://bucket/prefix you own, or a directory)")
        return 2
    if args.real_aws:
        target = Target.real_aws()
    elif args.endpoint_url:
        target = Target.remote(args.endpoint_url, args.s3_endpoint_url, args.quota)
    else:
        target = Target.embedded(args.quota)
    now = time.gmtime()
    stamp = time.strftime("%Y%m%dT%H%M%S", now)
    run_id = "manual__" + time.strftime("%Y-%m-%dT%H_%M_%S+00_00", now)
    try:
        observable = target.observable
        config = DemoConfig(
            tasks=args.tasks, lines=args.lines, big_events=args.big_events, duration=args.duration, seed=args.seed,
            quota=args.quota, rate_limit=args.rate_limit, neighbour_tps=args.neighbour_tps if observable else 0.0,
            storm=args.storm if observable else 0.0, max_latency=args.max_latency, quiet=args.quiet,
            run_id=run_id, stamp=f"{stamp}-{os.getpid()}",
            spill_to=args.spill_to, replay=args.replay,
        )
        if config.spill_to is None:
            config = dataclasses.replace(config, spill_to=f"s3://{DEMO_BUCKET}/{config.group(MWAA_LOGGING)}")
            target.ensure_bucket(DEMO_BUCKET)
        console.print(_intro(config, target.description), markup=False, highlight=False, soft_wrap=True)
        handlers = [MWAA_LOGGING] + ([WATCHTOWER] if args.compare == "watchtower" else [])

        def show(result: RunResult) -> None:
            from mwaa_logging.demo.report import print_summary, verdict

            print_summary(console, result, config, target.description)
            console.print(verdict(result), highlight=False)

        results = run_handlers(config, target, handlers, console, on_result=show)
    except KeyboardInterrupt:
        console.print("interrupted: task processes stopped, nothing verified")
        return 130
    finally:
        target.close()
    if len(results) > 1:
        from mwaa_logging.demo.chart import write_chart
        from mwaa_logging.demo.report import compare_table

        console.print(compare_table(results))
        chart = write_chart(args.chart or DEFAULT_CHART, results, "mwaa-logging demo: mwaa-logging vs watchtower",
                            storm=results[0].storm)
        console.print(f"chart: {chart.resolve()}", highlight=False, soft_wrap=True)
    return 0 if results[0].ok else 1


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _intro(config: DemoConfig, endpoint: str) -> str:
    storm = "no storm"
    if config.storm:
        storm = (f"every PutLogEvents call throttled for {config.storm:g} s, "
                 f"{config.storm_at * config.duration:g} s after the tasks start logging")
    return (f"mwaa-logging demo: {config.tasks} Airflow task processes x {config.lines:,} lines "
            f"({config.big_events} > 1 MB each) over {config.duration:g} s\n"
            f"  endpoint: {endpoint}; neighbour workload {config.neighbour_tps:g} calls/s; {storm}\n"
            f"  mwaa-logging: rate_limit_scope=host, put_rate_limit={config.rate_limit}, "
            f"max_latency={config.max_latency:g} s, spill_to={config.spill_to}")
