"""Where the CPU of ``bench_cpu.py``'s workload goes, and what moves it: a diagnostic script, not a CI benchmark.

One process runs NullHandler and our handler in interleaved blocks (as ``test_cpu_per_event``), and switches the
sender's wake-up and GIL-yield intervals between blocks, so variants are compared in the same conditions::

    .venv/bin/python benchmarks/cpu_breakdown.py                  # default: now=63:1023 late=off
    .venv/bin/python benchmarks/cpu_breakdown.py --rounds 21 now=63:1023 yield256=255:1023 wake8k=63:8191

A variant is ``NAME=CHECK:WAKE``: application threads look at the sender every ``CHECK+1`` records (and yield the
GIL then while it works) and wake it every ``WAKE+1`` (``engine/channel.py``); ``off`` for either means never (the
sender then sends at ``flush()``, or once ``send_interval`` passes: a block takes well under that). Per event it
prints the process CPU, the application thread's CPU while logging, the sender thread's CPU
(``time.pthread_getcpuclockid``), the wait in ``flush()`` and the median same-round ratio to NullHandler; and,
for the whole process, the user and kernel (sys) CPU per event and the voluntary context switches per block
(``getrusage``): a GIL handoff between the application and the sender costs both threads a switch. Last, the wall
time per event from the block's first record to ``flush()`` returned: what ``bench_delivery.py`` measures.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial

from _workloads import (
    Endpoint,
    clean_aws_environ,
    flush_handler,
    interleaved,
    isolated_logger,
    median_ratio,
    numbered_lines,
    ours_handler,
)

EVENTS_PER_BLOCK = 50_000
NEVER = (1 << 62) - 1


@dataclass
class Sample:
    """Per-event figures of one block (µs: CPU, and wall time from the first record to flushed), and the flush wait
    (ms)."""

    app_us: list[float] = field(default_factory=list)
    sender_us: list[float] = field(default_factory=list)
    flush_ms: list[float] = field(default_factory=list)
    user_us: list[float] = field(default_factory=list)
    sys_us: list[float] = field(default_factory=list)
    switches: list[int] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)


def sender_cpu() -> float:
    for thread in threading.enumerate():
        if thread.name == "mwaa-logging-sender" and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return 0.0


def parse_variant(spec: str) -> tuple[str, tuple[int, int]]:
    name, _, masks = spec.partition("=")
    check, _, wake = masks.partition(":")
    if not name or not check or not wake:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECK:WAKE, got {spec!r}")
    def mask(text: str) -> int:
        return NEVER if text == "off" else int(text)

    return name, (mask(check), mask(wake))


def block(logger: logging.Logger, handler: logging.Handler, lines: Sequence[str], sample: Sample,
          before: Callable[[], None]) -> float:
    before()
    info = logger.info
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started, app, sender, wall = time.process_time(), time.thread_time(), sender_cpu(), time.perf_counter()
    for line in lines:
        info(line)
    sample.app_us.append((time.thread_time() - app) / len(lines) * 1e6)
    waited = time.perf_counter()
    flush_handler(handler)
    flushed = time.perf_counter()
    sample.flush_ms.append((flushed - waited) * 1000)
    sample.wall_us.append((flushed - wall) / len(lines) * 1e6)
    sample.sender_us.append((sender_cpu() - sender) / len(lines) * 1e6)
    cpu = time.process_time() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    sample.user_us.append((after.ru_utime - usage.ru_utime) / len(lines) * 1e6)
    sample.sys_us.append((after.ru_stime - usage.ru_stime) / len(lines) * 1e6)
    sample.switches.append(after.ru_nvcsw - usage.ru_nvcsw)
    return cpu / len(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", type=parse_variant, help="NAME=CHECK:WAKE (default: now, late)")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    variants = dict(args.variants or [("now", (63, 1023)), ("late", (NEVER, NEVER))])
    os.environ.update(clean_aws_environ(os.environ))
    import mwaa_logging.engine.channel as channel
    import mwaa_logging.handler as handler_module

    def use(masks: tuple[int, int]) -> Callable[[], None]:
        def apply() -> None:
            channel.CHECK_SENDER_MASK = handler_module.CHECK_SENDER_MASK = masks[0]
            channel.WAKE_EVERY_MASK = masks[1]
        return apply

    lines = numbered_lines(0, EVENTS_PER_BLOCK)
    samples = {name: Sample() for name in ["null", *variants]}
    with Endpoint() as endpoint:
        null = logging.NullHandler()
        ours = ours_handler(endpoint.url, "cpu-breakdown", "stream")
        try:
            loggers = {"null": isolated_logger("breakdown.null", null), "ours": isolated_logger("breakdown.ours", ours)}
            blocks: dict[str, Callable[[], float]] = {
                "null": partial(block, loggers["null"], null, lines, samples["null"], lambda: None)}
            for name, masks in variants.items():
                blocks[name] = partial(block, loggers["ours"], ours, lines, samples[name], use(masks))
            interleaved(blocks, 1)  # warm-up: the stream exists, the connection is open
            for sample in samples.values():  # the warm-up's figures do not count
                for figures in fields(sample):
                    getattr(sample, figures.name).clear()
            totals = interleaved(blocks, args.rounds)
        finally:
            ours.close()
    print(f"{EVENTS_PER_BLOCK:,} lines a block, {args.rounds} rounds; medians, µs an event (flush: ms)")
    for name, sample in samples.items():
        print(f"{name:>10}: process {statistics.median(totals[name]) * 1e6:6.2f}  app thread "
              f"{statistics.median(sample.app_us):6.2f}  sender {statistics.median(sample.sender_us):5.2f}  "
              f"flush {statistics.median(sample.flush_ms):6.1f}  "
              f"/ NullHandler {median_ratio(totals, name, 'null'):.3f}")
        print(f"{'':>10}  user {statistics.median(sample.user_us):6.2f}  sys {statistics.median(sample.sys_us):5.2f}  "
              f"voluntary switches a block {statistics.median(sample.switches):5.0f}  "
              f"wall (first record to flushed) {statistics.median(sample.wall_us):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
