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
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mwaa_logging.demo.endpoint import Target
    from mwaa_logging.demo.runner import DemoConfig

__all__ = ["add_arguments", "run"]

DEFAULT_CHART = Path("artifacts") / "demo-compare.html"
#: The chart is written as HTML (with inline SVG) only: a PNG would need a plotting library the package lacks.
CHART_SUFFIXES = (".html", ".htm")


#: Upper bounds of the numeric options (a usage error beyond them): enough for any demo on one machine, and
#: no fork bomb (``--tasks``), no value orjson cannot pass to the task processes (``--lines``, ``--seed``).
MAX_TASKS = 64
MAX_LINES = 1_000_000
MAX_BIG_EVENTS = 100
MAX_SEED = 2**63 - 1
MAX_TPS = 1000.0  # --neighbour-tps (a thread of the demo making the calls)
MAX_QUOTA_TPS = 10_000.0  # --quota, --rate-limit (CloudWatch's own PutLogEvents quota is 5,000 calls/s)
#: Lower bound of --quota and --rate-limit: a call a minute and a bit (1e-300 made the replay's time limit overflow).
MIN_QUOTA_TPS = 0.01


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _bounded_int(low: int, high: int, what: str = "") -> Any:
    """A converter of whole numbers in ``low..high`` (the message names the limits)."""
    def convert(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}{what}")
        return value

    return convert


def _non_negative(text: str) -> float:
    value = _float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _non_negative_at_most(high: float, what: str) -> Any:
    """A converter of numbers in ``0..high`` (the message names the limit, and ``what`` it is)."""
    def convert(text: str) -> float:
        value = _non_negative(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}{what}")
        return value

    return convert


_neighbour_tps = _non_negative_at_most(MAX_TPS, " calls/s")


def _max_latency(text: str) -> float:
    return _float(text)  # checked against send_interval by check_options (Settings.resolve)


#: Upper bound of ``--duration`` and ``--storm`` (a day; 1e300 s would overflow the task processes' sleeps).
MAX_SECONDS = 86_400.0


_seconds = _non_negative_at_most(MAX_SECONDS, " (a day)")


def _spill_to(text: str) -> str:
    """A local path made absolute, ``~`` expanded (the handler expands it, the read-back and the replay, run
    from another directory, must see the same directory); URLs as given. A blank value is refused: the handler
    would read it as unset and spill to its default directory instead."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be blank (a directory, a file:// URL or s3://bucket/prefix)")
    if "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def _optional_tps(text: str) -> float | None:
    if text.lower() in ("none", "off"):
        return None
    value = _float(text)
    if not math.isfinite(value) or value < MIN_QUOTA_TPS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_QUOTA_TPS:g} calls/s (or 'none')")
    if value > MAX_QUOTA_TPS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_QUOTA_TPS:g} calls/s (or 'none')")
    return value


#: The namespace attribute listing the options given on the command line (see :class:`_Given`).
GIVEN = "_given"


class _Given(argparse.Action):
    """Stores the value as ``store`` does, and notes that the option was given on the command line (a value equal
    to the default, too): :func:`conditions_given` must not compare with the defaults."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, GIVEN, {*getattr(namespace, GIVEN, ()), self.dest})


def _endpoint_url(text: str) -> str:
    from mwaa_logging.demo.endpoint import url_problem

    problem = url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mwaa_logging.demo.runner import DemoConfig
    from mwaa_logging.demo.workload import FRAME_LINES

    defaults = DemoConfig()
    parser.set_defaults(_parser=parser)  # for run()'s checks that need every option (usage errors)
    workload = parser.add_argument_group("workload (a simulated Airflow worker)")
    workload.add_argument("--tasks", type=_bounded_int(1, MAX_TASKS), default=defaults.tasks,
                          help=f"task processes (default %(default)s; at most {MAX_TASKS})")
    workload.add_argument("--lines", type=_bounded_int(1, MAX_LINES, " per task"), default=defaults.lines,
                          help=f"log lines per task (default %(default)s; at most {MAX_LINES:,})")
    workload.add_argument("--big-events", type=_bounded_int(0, MAX_BIG_EVENTS), default=defaults.big_events,
                          metavar="N", help="of those lines, events over 1 MB (default %(default)s; at most "
                                            f"{MAX_BIG_EVENTS}, and at most --lines minus {FRAME_LINES})")
    workload.add_argument("--duration", type=_seconds, default=defaults.duration, metavar="SECONDS",
                          help="time each task spends logging, in bursts (default %(default)s; at most "
                               f"{MAX_SECONDS:g})")
    workload.add_argument("--seed", type=_bounded_int(0, MAX_SEED, " (2**63-1)"), default=defaults.seed,
                          help="workload seed, 0 to 2**63-1 (default %(default)s)")
    cloud = parser.add_argument_group("CloudWatch conditions (embedded endpoint, or a `mwaa-logging local-aws` one)")
    cloud.add_argument("--quota", type=_optional_tps, action=_Given, default=defaults.quota, metavar="TPS",
                       help="account-wide PutLogEvents quota of the endpoint, calls/s (default %(default)s; "
                            f"{MIN_QUOTA_TPS:g} to {MAX_QUOTA_TPS:g}; 'none'); an endpoint given with --endpoint-url "
                            "gets its own back at the end, unless another client changed it meanwhile")
    cloud.add_argument("--neighbour-tps", type=_neighbour_tps, action=_Given, default=defaults.neighbour_tps,
                       metavar="TPS",
                       help="PutLogEvents calls/s of another workload sharing the quota (default %(default)s; at "
                            f"most {MAX_TPS:g})")
    cloud.add_argument("--storm", type=_seconds, action=_Given, default=defaults.storm, metavar="SECONDS",
                       help="throttle every PutLogEvents call for this long, starting 30%% of --duration "
                            "after the first line is logged (default %(default)s; 0: none; at most "
                            f"{MAX_SECONDS:g})")
    ours = parser.add_argument_group("mwaa-logging settings")
    ours.add_argument("--rate-limit", type=_optional_tps, default=defaults.rate_limit, metavar="TPS",
                      help="put_rate_limit for the whole host (rate_limit_scope=host) (default %(default)s; "
                           f"{MIN_QUOTA_TPS:g} to {MAX_QUOTA_TPS:g}; 'none')")
    ours.add_argument("--max-latency", type=_max_latency, default=defaults.max_latency, metavar="SECONDS",
                      help="max_latency: older undelivered events are spilled (default %(default)s; more than "
                           "the handler's send_interval)")
    ours.add_argument("--spill-to", type=_spill_to, default=None, metavar="URL",
                      help="spill target (default s3://mwaa-logging-demo/<log group>/ on the endpoint)")
    ours.add_argument("--no-replay", dest="replay", action="store_false",
                      help="skip re-ingesting spilled lines with `mwaa-logging replay` after the read-back (it "
                           "replays only this run's log group's prefix of the spill location)")
    where = parser.add_argument_group("where")
    where.add_argument("--endpoint-url", type=_endpoint_url, default=None, metavar="URL",
                       help="use this CloudWatch Logs (+ S3) endpoint instead of the embedded one")
    where.add_argument("--s3-endpoint-url", type=_endpoint_url, default=None, metavar="URL",
                       help="S3 endpoint (default: --endpoint-url; needs --endpoint-url)")
    where.add_argument("--real-aws", action="store_true",
                       help="use the real AWS account of the default credential chain (needs --spill-to; not with "
                            "--endpoint-url). Leaves its log groups airflow-demo-*-Task, with a 1-day retention")
    output = parser.add_argument_group("output")
    output.add_argument("--compare", choices=["watchtower"], default=None,
                        help="also run the same workload through watchtower and compare")
    output.add_argument("--chart", type=Path, default=None, metavar="PATH",
                        help=f"chart file for --compare: an HTML page with inline SVG, PATH ending in .html or .htm "
                             f"(default {DEFAULT_CHART}; needs --compare)")
    output.add_argument("--quiet", action="store_true", help="no live progress")


#: Options that set a handler setting (checked by resolving the settings the task processes will use).
SETTING_OPTIONS = {"spill_to": "--spill-to", "put_rate_limit": "--rate-limit", "max_latency": "--max-latency"}
#: Settings the demo always sets itself (``put_rate_limit`` unless ``--rate-limit none``; ``endpoint_url``, see
#: ``Target.task_env``).
OVERRIDDEN_SETTINGS = ("spill_to", "max_latency", "rate_limit_scope", "rate_limit_namespace", "put_rate_limit")


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """The run's configuration from the options (the endpoint may still turn the neighbour and the storm off)."""
    from mwaa_logging.demo.endpoint import DEMO_BUCKET
    from mwaa_logging.demo.runner import DemoConfig
    from mwaa_logging.demo.worker import MWAA_LOGGING

    now = time.gmtime()
    stamp = time.strftime("%Y%m%dT%H%M%S", now)
    config = DemoConfig(
        tasks=args.tasks, lines=args.lines, big_events=args.big_events, duration=args.duration, seed=args.seed,
        quota=args.quota, rate_limit=args.rate_limit, neighbour_tps=args.neighbour_tps, storm=args.storm,
        max_latency=args.max_latency, quiet=args.quiet,
        run_id="manual__" + time.strftime("%Y-%m-%dT%H_%M_%S+00_00", now), stamp=f"{stamp}-{os.getpid()}",
        spill_to=args.spill_to, replay=args.replay,
    )
    if config.spill_to is None:
        config = dataclasses.replace(config, spill_to=f"s3://{DEMO_BUCKET}/{config.group(MWAA_LOGGING)}")
    return config


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace, config: DemoConfig) -> None:
    """Usage errors no single option's type can see: exits 2 through ``parser.error``, before anything starts.

    The handler settings are checked by building them as the task processes will (``Settings.resolve``, which
    also reads ``MWAA_LOGGING_*`` variables): one option at a time, so that the error names the option, then
    all together."""
    from mwaa_logging.demo.runner import handler_settings
    from mwaa_logging.settings import Settings, SettingsError

    if args.real_aws and not args.spill_to:
        parser.error("--real-aws needs --spill-to (an s3://bucket/prefix you own, or a directory)")
    if args.real_aws and args.endpoint_url:
        parser.error("argument --endpoint-url: not allowed with --real-aws (one or the other)")
    if args.real_aws:
        for option in conditions_given(args):
            parser.error(f"argument {option}: not allowed with --real-aws (the account's own quota applies; no "
                         "storm or neighbour is simulated there)")
    if args.s3_endpoint_url and not args.endpoint_url:
        parser.error("argument --s3-endpoint-url: needs --endpoint-url (the embedded endpoint has its own S3)")
    if args.chart is not None:
        if args.compare is None:
            parser.error("argument --chart: needs --compare (a single run writes no chart)")
        problem = chart_problem(args.chart)
        if problem:
            parser.error(f"argument --chart: {args.chart}: {problem}")
    settings = handler_settings(config)
    for name, option in SETTING_OPTIONS.items():
        try:
            Settings.resolve({name: settings[name]})
        except SettingsError as error:
            if f"invalid setting {name}=" in str(error):  # else a MWAA_LOGGING_* variable's fault: below
                parser.error(f"argument {option}: {error}")  # it names a MWAA_LOGGING_* variable it comes from
    try:
        Settings.resolve(settings)
    except SettingsError as error:
        parser.error(str(error))


#: Options of the simulated CloudWatch conditions, which need the admin API of our own endpoint.
CONDITION_OPTIONS = {"quota": "--quota", "storm": "--storm", "neighbour_tps": "--neighbour-tps"}


def conditions_given(args: argparse.Namespace) -> list[str]:
    """The condition options given on the command line, whatever their value, their default too (``--storm 0``
    and ``--neighbour-tps 0``, which ask for nothing, are not counted)."""
    named: set[str] = getattr(args, GIVEN, set())
    given = []
    for name, option in CONDITION_OPTIONS.items():
        if name in named and not (name != "quota" and getattr(args, name) == 0):
            given.append(option)
    return given


def chart_problem(path: Path) -> str | None:
    """Why the chart could not be written at ``path`` (None: it can, as far as can be told up front)."""
    if path.is_dir():
        return "is a directory"
    if path.suffix.lower() not in CHART_SUFFIXES:
        return "must end in .html or .htm (the chart is an HTML page with inline SVG, no image format)"
    if path.exists() and not os.access(path, os.W_OK):
        return "not writable"
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
        return f"cannot create files in {parent}"
    return None


def spill_bucket(spill_to: str | None) -> str | None:
    """The bucket of an ``s3://bucket/prefix`` spill target (None: not one)."""
    if not spill_to or not spill_to.startswith("s3://"):
        return None
    return spill_to[len("s3://"):].split("/", 1)[0] or None


def environment_note(config: DemoConfig, environ: Mapping[str, str] | None = None) -> str:
    """One line on the inherited ``MWAA_LOGGING_*`` variables: which the demo overrides, which the task
    processes honour ("" when none is set)."""
    from mwaa_logging.settings import ENV_PREFIX, SPECS

    environ = os.environ if environ is None else environ
    overridden_names = set(OVERRIDDEN_SETTINGS) | {"endpoint_url"}
    if config.rate_limit is None:  # --rate-limit none: the variable (if any) decides
        overridden_names.discard("put_rate_limit")
    names = sorted(n for n in environ if n.startswith(ENV_PREFIX) and n[len(ENV_PREFIX):].lower() in SPECS)
    if not names:
        return ""
    overridden = [n for n in names if n[len(ENV_PREFIX):].lower() in overridden_names]
    honoured = [n for n in names if n not in overridden]
    parts = []
    if overridden:
        parts.append(f"{', '.join(overridden)} overridden by the demo")
    if honoured:
        parts.append(f"{', '.join(honoured)} honoured by the task processes")
    return "environment: " + "; ".join(parts)


def make_target(args: argparse.Namespace) -> Target:
    """Where the run sends its logs; raises ``EndpointError`` when a given endpoint does not answer."""
    from mwaa_logging.demo.endpoint import Target

    if args.real_aws:
        return Target.real_aws()
    if args.endpoint_url:
        return Target.remote(args.endpoint_url, args.s3_endpoint_url, args.quota)
    return Target.embedded(args.quota)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the run cleans up as after Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup the first one starts is not cut short by more
    raise Terminated


def run(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args)
    except Terminated:  # before or after the run proper (during it, _run says what was stopped)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mwaa_logging.demo.endpoint import EndpointError
    from mwaa_logging.demo.runner import ReadBackError, RunResult, run_handlers
    from mwaa_logging.demo.worker import MWAA_LOGGING, WATCHTOWER

    parser = getattr(args, "_parser", None) or argparse.ArgumentParser(prog="mwaa-logging demo")
    config = demo_config(args)
    check_options(parser, args, config)
    console = Console(width=None if _is_tty() else max(150, shutil.get_terminal_size((150, 40)).columns))
    target: Target | None = None
    try:
        target = make_target(args)
        target.probe(config.group(MWAA_LOGGING))
        if not target.observable:  # no admin API: no storm, no neighbour to count
            config = dataclasses.replace(config, neighbour_tps=0.0, storm=0.0)
            ignored = conditions_given(args)
            if ignored and target.url is not None:  # (with --real-aws they are usage errors)
                print(f"mwaa-logging demo: {', '.join(ignored)} ignored: {target.url} has no mwaa-logging admin "
                      "API (its own quota applies; no storm or neighbour is simulated)", file=sys.stderr)
        bucket = spill_bucket(config.spill_to)
        if bucket is not None and (args.spill_to is None or target.owned):
            # the demo's bucket anywhere; any bucket on our own endpoint (an empty S3 of this run): without it
            # every spill would fall back to the default local directory
            target.ensure_bucket(bucket)
        console.print(_intro(config, target.description), markup=False, highlight=False, soft_wrap=True)
        note = environment_note(config)
        if note:
            console.print("  " + note, markup=False, highlight=False, soft_wrap=True)
        handlers = [MWAA_LOGGING] + ([WATCHTOWER] if args.compare == "watchtower" else [])
        description = target.description

        def show(result: RunResult) -> None:
            from mwaa_logging.demo.report import print_summary, verdict

            print_summary(console, result, config, description)
            console.print(verdict(result), highlight=False)

        results = run_handlers(config, target, handlers, console, on_result=show)
    except EndpointError as error:
        print(f"mwaa-logging demo: {error}", file=sys.stderr)
        return 2
    except ReadBackError as error:
        print(f"mwaa-logging demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        what = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        stopped = getattr(interrupt, "demo_stopped", None) or "task processes stopped, nothing verified"
        console.print(f"{what}: {stopped}", markup=False, highlight=False, soft_wrap=True)
        return 143 if isinstance(interrupt, Terminated) else 130
    finally:  # also on failure, Ctrl-C and SIGTERM: stop our endpoint, put back what we changed on another one
        if target is not None:
            target.close()
    if len(results) > 1:
        from mwaa_logging.demo.chart import write_chart
        from mwaa_logging.demo.report import compare_table

        console.print(compare_table(results))
        path = args.chart or DEFAULT_CHART
        try:
            chart = write_chart(path, results, "mwaa-logging demo: mwaa-logging vs watchtower")
        except OSError as error:
            print(f"mwaa-logging demo: cannot write the chart {path}: {error}", file=sys.stderr)
        else:
            console.print(f"chart: {chart.resolve()}", highlight=False, soft_wrap=True)
    return 0 if results[0].ok else 1


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _intro(config: DemoConfig, endpoint: str) -> str:
    storm = "no storm"
    if config.storm:
        storm = (f"every PutLogEvents call throttled for {config.storm:g} s, "
                 f"{config.storm_at * config.duration:g} s after the first line is logged")
    big = f"{config.big_events_generated} > 1 MB each"
    if config.big_events_generated < config.big_events:
        from mwaa_logging.demo.workload import FRAME_LINES

        big += f"; --big-events {config.big_events} needs --lines >= {config.big_events + FRAME_LINES}"
    return (f"mwaa-logging demo: {config.tasks} Airflow task processes x {config.lines:,} lines "
            f"({big}) over {config.duration:g} s\n"
            f"  endpoint: {endpoint}; neighbour workload {config.neighbour_tps:g} calls/s; {storm}\n"
            f"  mwaa-logging: rate_limit_scope=host, put_rate_limit={config.rate_limit}, "
            f"max_latency={config.max_latency:g} s, spill_to={config.spill_to}")
