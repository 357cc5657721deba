"""A process that logs through CloudWatchLogHandler, configured only by environment variables.

usage: python log_worker.py GROUP COUNT [--no-flush] ; prints the handler's stats as JSON at the end.
"""

from __future__ import annotations

import json
import logging
import sys

import mwaa_logging


def main() -> None:
    group, count = sys.argv[1], int(sys.argv[2])
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name=group, log_stream_name="worker-{process_id}")
    logger = logging.getLogger("worker")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for i in range(count):
        logger.info("line %06d of a worker that logs a realistic ~100 byte message with some padding", i)
    if "--no-flush" in sys.argv:
        return  # interpreter exit must deliver
    handler.close()
    print(json.dumps(handler.stats().as_dict()))


if __name__ == "__main__":
    main()
