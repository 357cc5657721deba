"""A lease on one S3 key, taken with a conditional write: one replay at a time per stream prefix.

``PutObject`` with ``If-None-Match: *`` creates the lease object only if it does not exist; a lease whose holder
stopped renewing it (a killed run) is taken over with ``If-Match: <its ETag>`` once it has expired. The holder
renews it from a background thread and deletes it (``If-Match``) when done. A store that refuses conditional
writes, or a role that may not write the key, gets no lease: the caller is told (``held`` is True, ``locked``
False) and goes on as before leases existed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

__all__ = ["LEASE_SECONDS", "S3Lease"]

#: How long a lease lasts without renewal; the holder renews it every quarter of that.
LEASE_SECONDS = 600.0
_TAKEN = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Lease:
    """The lease on ``s3://bucket/key``. ``acquire()`` then ``release()``; ``held``, ``locked`` say the outcome."""

    def __init__(self, client: Any, bucket: str, key: str, *, expected_bucket_owner: str | None = None,
                 lease_seconds: float = LEASE_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.url = f"s3://{bucket}/{key}"
        self.lease_seconds, self.clock = lease_seconds, clock
        self._owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
        self._etag: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        #: True once acquired (or when leases cannot be had here: see ``locked``).
        self.held = False
        #: True while this run holds the lease object.
        self.locked = False
        #: Why there is no lease although ``held`` (the store or the role refused it), else None.
        self.unavailable: str | None = None

    def acquire(self) -> bool:
        """Take the lease: True if this run may go on (it holds it, or leases cannot be had here)."""
        try:
            self._etag = self._take()
        except (ClientError, BotoCoreError) as error:
            self.unavailable = str(error)
            self.held = True
            return True
        self.held = self.locked = self._etag is not None
        if self.locked:
            self._renewer = threading.Thread(target=self._renew, name=f"mwaa-logging-lease {self.key}", daemon=True)
            self._renewer.start()
        return self.held

    def release(self) -> None:
        """Stop renewing and delete the lease object (only if it is still this run's)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if not self.locked:
            return
        self.locked = False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag, **self._owner)
        except ClientError as error:
            if _code(error) not in _TAKEN:  # taken over meanwhile: that run's now
                log.warning("mwaa-logging: could not remove the replay lease %s: %s", self.url, error)
        except BotoCoreError as error:
            log.warning("mwaa-logging: could not remove the replay lease %s: %s", self.url, error)

    def _body(self) -> bytes:
        return orjson.dumps({"holder": f"{socket.gethostname()}:{os.getpid()}",
                             "expires": self.clock() + self.lease_seconds})

    def _put(self, **condition: str) -> str:
        answer = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                        ContentType="application/json", **condition, **self._owner)
        return str(answer["ETag"])

    def _take(self) -> str | None:
        """The new lease's ETag, or None while another run holds an unexpired one. Errors other than a held lease
        (no conditional writes here, access denied) propagate."""
        for _ in range(3):  # the holder may release between our two requests
            try:
                return self._put(IfNoneMatch="*")
            except ClientError as error:
                if _code(error) not in _TAKEN:
                    raise
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key, **self._owner)
                current = orjson.loads(answer["Body"].read(4096))
                etag = str(answer["ETag"])
            except ClientError as error:
                if _code(error) in ("NoSuchKey", "404"):
                    continue
                raise
            except orjson.JSONDecodeError:
                return None  # not a lease this code wrote: leave it to whoever did
            try:
                expires = float(current["expires"])
            except (TypeError, KeyError, ValueError):
                return None  # not a lease this code wrote: leave it to whoever did
            if expires > self.clock():
                return None
            try:
                return self._put(IfMatch=etag)  # expired: its holder is gone
            except ClientError as error:
                if _code(error) not in _TAKEN and _code(error) not in ("NoSuchKey", "404"):
                    raise
                return None
        return None

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self._etag = self._put(IfMatch=str(self._etag))
            except (ClientError, BotoCoreError) as error:
                log.warning("mwaa-logging: could not renew the replay lease %s: %s", self.url, error)
