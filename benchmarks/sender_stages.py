"""The sender's CPU per event, stage by stage: a diagnostic script, not a CI benchmark.

Logs ``bench_cpu.py``'s workload (blocks of 50,000 varied ~230-byte lines) into the local endpoint with the sender
held until ``flush()``, so no stage is slowed by the application thread running beside it, and charges the sender
thread's CPU (``time.thread_time``) to each stage of one PutLogEvents call::

    .venv/bin/python benchmarks/sender_stages.py [--blocks 5]

A stage's figure includes the stages it calls (``send one batch`` holds all the per-call ones).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from _workloads import Endpoint, clean_aws_environ, flush_handler, isolated_logger, numbered_lines, ours_handler
from cpu_breakdown import EVENTS_PER_BLOCK, NEVER


def timed(owner: Any, name: str, label: str, spent: Counter[str]) -> None:
    """Replace ``owner.name`` by a wrapper that adds its thread CPU to ``spent[label]``."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - started

    setattr(owner, name, wrapper)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.update(clean_aws_environ(os.environ))
    import mwaa_logging.aws.transport as transport
    import mwaa_logging.engine.channel as channel
    import mwaa_logging.engine.delivery as delivery
    import mwaa_logging.handler as handler_module

    spent: Counter[str] = Counter()
    for owner, name, label in (
        (delivery, "_send_one", "send one batch"),
        (transport.BotocoreTransport, "_put", "  botocore call (sign, HTTP, parse)"),
        (transport, "gzip_if_smaller", "  gzip"),
        (transport, "encode_put_log_events", "  JSON body (event dicts + orjson)"),
        (delivery, "batch_end", "  cut the batch (batch_end)"),
        (delivery, "_remove_ready_head", "  take it out of the buffer"),
        (delivery, "_settle_put", "  settle the answer"),
        (channel.Channel, "drain_inbox", "drain the queue into buffers"),
        (delivery, "_take_pending", "sort into ready"),
    ):
        timed(owner, name, label, spent)
    # the sender works only in flush(): no application thread runs beside it
    channel.CHECK_SENDER_MASK = handler_module.CHECK_SENDER_MASK = channel.WAKE_EVERY_MASK = NEVER

    lines = numbered_lines(0, EVENTS_PER_BLOCK)
    with Endpoint() as endpoint:
        handler = ours_handler(endpoint.url, "sender-stages", "stream")
        logger = isolated_logger("sender.stages", handler)
        try:
            for block in range(args.blocks + 1):
                if block == 1:
                    spent.clear()  # the first block is the warm-up: stream created, connection open
                for line in lines:
                    logger.info(line)
                flush_handler(handler)
        finally:
            handler.close()
    events = args.blocks * EVENTS_PER_BLOCK
    print(f"sender CPU, µs an event ({args.blocks} blocks of {EVENTS_PER_BLOCK:,} lines, sent at flush())")
    for label, seconds in spent.most_common():
        print(f"{label:<40} {seconds / events * 1e6:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
