"""Build the spill target named by the ``spill_to`` setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from mwaa_logging.protocols import SpillSink
from mwaa_logging.spill.fallback import DEFAULT_COOLDOWN, FallbackSpillSink
from mwaa_logging.spill.local import LocalSpillSink, default_spill_sink

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def local_directory_of(spill_to: str) -> str:
    """The directory a ``spill_to`` value names (a path or a ``file://`` URL of this machine); ValueError for a
    ``file://`` URL naming another host or carrying a ?query or #fragment (its path alone was taken: ``file://tmp/x``
    read ``/x``)."""
    if spill_to.startswith("file://"):
        parsed = urlparse(spill_to)
        if parsed.netloc.lower() not in ("", "localhost") or parsed.query or parsed.fragment \
                or spill_to.endswith(("?", "#")):
            raise ValueError(f"a file:// spill location names a directory of this machine (file:///absolute/path, "
                             f"no ?query or #fragment), got {spill_to!r}")
        return unquote(parsed.path)
    return spill_to


def is_s3_url(spill_to: str | None) -> bool:
    return bool(spill_to) and str(spill_to).startswith("s3://")


def parse_tags(value: str | Mapping[str, str] | None) -> dict[str, str]:
    """Object tags from a mapping or from ``"k1=v1,k2=v2"`` (the environment-variable form)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    tags: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"spill_s3_tags: expected 'key=value[,key=value...]', got {value!r}")
        tags[key.strip()] = val.strip()
    return tags


def build_spill_sink(
    spill_to: str | os.PathLike[str] | None,
    *,
    s3_kms_key_id: str | None = None,
    s3_expected_bucket_owner: str | None = None,
    s3_tags: str | Mapping[str, str] | None = None,
    s3_client: S3Client | None = None,
    s3_endpoint_url: str | None = None,
    s3_profile_name: str | None = None,
    s3_region_name: str | None = None,
    local_directory: str | os.PathLike[str] | None = None,
    fallback_cooldown: float = DEFAULT_COOLDOWN,
) -> SpillSink:
    """A sink for ``spill_to``.

    - None/empty: the default local directory.
    - a path or ``file://`` URL: that directory.
    - ``s3://bucket/prefix``: S3, falling back to ``local_directory`` (default directory) when S3 fails.
    """
    if not spill_to:
        return LocalSpillSink(local_directory) if local_directory else default_spill_sink()
    spill_to = os.fspath(spill_to)
    if not is_s3_url(spill_to):
        return LocalSpillSink(local_directory_of(spill_to))
    from mwaa_logging.aws.s3spill import S3SpillSink, default_s3_client

    s3 = S3SpillSink.from_url(
        spill_to,
        client=s3_client,
        client_factory=lambda: default_s3_client(
            endpoint_url=s3_endpoint_url, profile_name=s3_profile_name, region_name=s3_region_name
        ),
        kms_key_id=s3_kms_key_id or None,
        expected_bucket_owner=s3_expected_bucket_owner or None,
        tags=parse_tags(s3_tags),
    )
    local = LocalSpillSink(local_directory) if local_directory else default_spill_sink()
    return FallbackSpillSink([s3, local], cooldown=fallback_cooldown)
