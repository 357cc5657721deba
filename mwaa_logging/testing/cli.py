"""``mwaa-logging local-aws``: serve the local CloudWatch Logs + S3 endpoint in the foreground."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from mwaa_logging.argtypes import port, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=0, help="port (default: a free one)")
    parser.add_argument("--put-quota", type=positive_float, default=None, metavar="TPS",
                        help="account-wide PutLogEvents quota in calls/s (default: unlimited)")
    parser.add_argument("--create-quotas", action="store_true",
                        help="apply AWS's CreateLogStream (50/s) and CreateLogGroup (10/s) quotas")


def exposure_warning(host: str) -> str | None:
    """What to tell the user when ``host`` is not a loopback address: the endpoint has no authentication."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name other than localhost: it may resolve to anything
    return (f"warning: listening on {host}: anyone who can reach it can read and write its logs and objects and "
            "change its quota and faults through the admin API (it has no authentication); 127.0.0.1 keeps it local")


def run(args: argparse.Namespace) -> int:
    from mwaa_logging.testing.local_aws import LocalAWS

    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalAWS(host=args.host, port=args.port, put_quota_tps=args.put_quota,
                      create_quotas=args.create_quotas) as aws:
            print(aws.url, flush=True)
            # everything a client needs: without a region and some credentials, boto3 refuses to call at all
            exports = " ".join(f"{name}={value}" for name, value in aws.env().items())
            print(f"export {exports}", file=sys.stderr, flush=True)
            print(f"admin API: {aws.url}/_local_aws/stats (Ctrl-C to stop)", file=sys.stderr, flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mwaa_logging.testing.cli", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
