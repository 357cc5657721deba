"""argparse value types shared by the ``mwaa-logging`` subcommands: a bad value is a usage error (exit 2)."""

from __future__ import annotations

import argparse

__all__ = ["account_id", "endpoint_url", "port", "positive_float", "positive_int", "rate_limit_scope", "spill_location"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def endpoint_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (botocore refuses anything else, with a traceback)."""
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def spill_location(text: str) -> str:
    """A spill location as the handler's ``spill_to`` setting takes it: ``s3://bucket[/prefix]``, a ``file://`` URL
    of this machine (no host but ``localhost``, no ?query or #fragment) or a directory path; no other scheme."""
    from mwaa_logging.aws.s3spill import parse_s3_url
    from mwaa_logging.settings import check_spill_to
    from mwaa_logging.spill.factory import is_s3_url

    try:
        if is_s3_url(text):
            parse_s3_url(text)  # its message names the form: "expected s3://bucket[/prefix]"
        return check_spill_to(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def rate_limit_scope(text: str) -> str:
    """``process`` or ``host`` (any case, as the setting), or a usable Redis URL."""
    from mwaa_logging.budgets.factory import LOCAL_SCOPES, validate_scope

    scope = text.strip().lower() if text.strip().lower() in LOCAL_SCOPES else text.strip()
    try:
        return validate_scope(scope)
    except ValueError as error:  # its text does not repeat a password
        raise argparse.ArgumentTypeError(str(error)) from None


def account_id(text: str) -> str:
    """An AWS account id, 12 digits (``1234-5678-9012`` as the console shows it, too)."""
    from mwaa_logging.settings import account_id as parse

    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(f"expected an AWS account id (12 digits), got {text!r}")
    return value
