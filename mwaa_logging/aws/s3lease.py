"""A lease on one S3 key, taken with conditional writes: one replay at a time per stream prefix.

``PutObject`` with ``If-None-Match: *`` creates the lease object only if it does not exist. Its body names the
holder with a random token, so a write whose reply was lost is recognised as ours. A lease whose holder stopped
renewing it (a killed run) is taken over with ``If-Match: <its ETag>`` once it has expired by S3's own clock
(``Last-Modified`` and the response's ``Date``: hosts' clocks may differ). The holder renews it from a background
thread, knows when it has lost it, and deletes it (``If-Match``) when done. Where it may not delete (a role without
``s3:DeleteObject``, a common guard on log buckets), it overwrites it (``If-Match``) with a body saying it was released,
which the next run takes over at once: left as it was, every run skipped the stream for 10 minutes.

Only a store or a role that refuses leases outright (no conditional writes: 501; access denied; a botocore too old
to send them) means going on without one (``unavailable`` says why). Other failures are retried, then the stream
is left for the next run: a blip must not let two runs put the same lines.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

log = logging.getLogger(__name__)

__all__ = ["LEASE_SECONDS", "S3Lease"]

#: How long a lease lasts without renewal; the holder renews it every quarter of that.
LEASE_SECONDS = 600.0
#: Answers meaning another writer holds the key (or raced us to it).
_TAKEN = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING = frozenset({"NoSuchKey", "404"})
#: Answers meaning this store or role will never grant a lease.
_REFUSED = frozenset({"NotImplemented", "AccessDenied", "MethodNotAllowed"})


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _refuses_leases(error: Exception) -> bool:
    if isinstance(error, ParamValidationError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _code(error) in _REFUSED or status in (403, 501)
    return False


def _missing_conditional_writes(client: Any) -> str | None:
    """Why this client cannot send conditional writes (a botocore older than Nov. 2024), else None."""
    try:
        model = client.meta.service_model
        put = model.operation_model("PutObject").input_shape.members
        delete = model.operation_model("DeleteObject").input_shape.members
    except AttributeError:  # not a botocore client
        return None
    if "IfNoneMatch" in put and "IfMatch" in put and "IfMatch" in delete:
        return None
    import botocore

    return f"botocore {botocore.__version__} cannot send S3 conditional writes (If-Match, If-None-Match)"


class _Unreadable(Exception):
    """The lease object exists (a conditional write failed on it) but could not be read."""


@dataclass(frozen=True)
class _Current:
    """The lease object as read: its holder's token, its ETag, and whether it has expired (or was released) by S3's
    clock; ``age`` (seconds since its last write, by S3's clock), ``lease_seconds`` and ``holder`` say more."""

    token: str | None
    etag: str
    expired: bool
    age: float = 0.0
    lease_seconds: float = LEASE_SECONDS
    holder: str | None = None

    def describe(self, url: str) -> str:
        """Who holds the lease and until when, for a run that skipped its stream."""
        holder = f"replay {self.holder}" if self.holder else "another replay"
        left = max(0.0, self.lease_seconds - self.age)
        return (f"{url} is held by {holder}, last renewed {_duration(self.age)} ago by S3's clock; it expires in "
                f"{_duration(left)} unless renewed (a live replay renews it every {_duration(self.lease_seconds / 4)}"
                "; a killed one's lease is taken over once it expires)")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


class S3Lease:
    """The lease on ``s3://bucket/key``: ``acquire()``, then ``lost()`` while working, then ``release()``."""

    def __init__(self, client: Any, bucket: str, key: str, *, expected_bucket_owner: str | None = None,
                 lease_seconds: float = LEASE_SECONDS, attempts: int = 3,
                 sleep: Callable[[float], None] = time.sleep, encryption: Mapping[str, str] | None = None) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        #: PutObject's encryption arguments: those of the spill objects next to it (a bucket policy that requires
        #: SSE-KMS refuses an AES256 write, and the run would go on without a lease), else SSE-S3.
        self.encryption = dict(encryption or {"ServerSideEncryption": "AES256"})
        self.url = f"s3://{bucket}/{key}"
        self.lease_seconds, self.attempts, self._sleep = lease_seconds, attempts, sleep
        self._owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
        self.token = uuid.uuid4().hex
        self._etag: str | None = None
        self._renewed = 0.0  # time.monotonic() of the last write known to have reached S3
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        #: True while this run holds the lease object.
        self.locked = False
        #: Why this run goes on without a lease (the store or the role refuses them), else None.
        self.unavailable: str | None = None
        #: Why the lease could not be taken although nobody may hold it (S3 kept failing), else None.
        self.failed: str | None = None
        #: Who holds the lease this run could not take, and until when (see :meth:`_Current.describe`), else None.
        self.held_by: str | None = None

    def acquire(self) -> bool:
        """True if this run may replay under the key: it holds the lease, or leases cannot be had here."""
        self.held_by = None
        self.unavailable = _missing_conditional_writes(self.client)
        if self.unavailable is not None:
            return True
        for attempt in range(self.attempts):
            try:
                self._etag = self._take()
            except (ClientError, BotoCoreError, _Unreadable) as error:
                if _refuses_leases(error):
                    self.unavailable = str(error)
                    return True
                if (current := self._read_quietly()) is not None and current.token == self.token:
                    self._etag = current.etag  # our write went through; its answer did not come back
                else:
                    self.failed = f"could not take the lease {self.url}: {error}"
                    self._sleep(0.2 * 2**attempt)
                    continue
            self.failed = None
            if self._etag is None:
                return False  # another run holds it
            self.locked = True
            self._renewed = time.monotonic()
            self._renewer = threading.Thread(target=self._renew, name=f"mwaa-logging-lease {self.key}", daemon=True)
            self._renewer.start()
            return True
        return False

    def lost(self) -> str | None:
        """Why this run no longer holds the lease it took (another may now), else None."""
        if self._lost is None and self.locked and time.monotonic() - self._renewed > 0.9 * self.lease_seconds:
            self._lost = f"the lease {self.url} was not renewed for {self.lease_seconds:g} s"
        return self._lost

    def release(self) -> None:
        """Stop renewing and delete the lease object if it is still this run's; where the DELETE is refused, mark it
        released (:meth:`_mark_released`) so that the next run need not wait for it to expire."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if not self.locked:
            return
        self.locked = False
        for _ in range(2):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag, **self._owner)
                return
            except ClientError as error:
                if _code(error) in _MISSING:
                    return
                if _code(error) in _TAKEN and (current := self._read_quietly()) is not None:
                    if current.token != self.token:
                        return  # another run's now
                    self._etag = current.etag  # a renewal went through unanswered: delete that version
                    continue
                self._mark_released(error)
                return
            except BotoCoreError as error:
                self._mark_released(error)
                return

    def _mark_released(self, refused: Exception) -> None:
        """The DELETE of our lease was refused: overwrite it (``If-Match``: only while still ours) with a body that
        says it was released, which the next run takes over at once."""
        problem: Exception = refused
        for _ in range(2):
            try:
                self._put(IfMatch=str(self._etag), released=True)
                return
            except ClientError as error:
                problem = error
                if _code(error) in _TAKEN or _code(error) in _MISSING:
                    current = self._read_quietly()
                    if current is None or current.token != self.token:
                        return  # gone, or another run's now
                    self._etag = current.etag  # a renewal went through unanswered: overwrite that version
                    continue
            except BotoCoreError as error:
                problem = error
            break
        log.warning("mwaa-logging: could not remove the replay lease %s (%s) nor mark it released (%s): other runs "
                    "skip its stream until it expires, %s after its last renewal", self.url, refused, problem,
                    _duration(self.lease_seconds))

    def _put(self, *, released: bool = False, **condition: str) -> str:
        """Write the lease object; ``released``: one that expired at once (``lease_seconds`` 0 too, for runs of
        versions that do not read ``released``)."""
        content: dict[str, Any] = {"holder": f"{socket.gethostname()}:{os.getpid()}", "token": self.token,
                                   "lease_seconds": 0 if released else self.lease_seconds}
        if released:
            content["released"] = True
        body = orjson.dumps(content)
        answer = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json",
                                        **self.encryption, **condition, **self._owner)
        return str(answer["ETag"])

    def _read(self) -> _Current | None:
        """The lease object, or None if there is none."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key, **self._owner)
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise
        try:
            content = orjson.loads(answer["Body"].read(4096))
            token, seconds = content.get("token"), float(content.get("lease_seconds", LEASE_SECONDS))
            holder, released = content.get("holder"), content.get("released") is True
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            token, seconds = None, LEASE_SECONDS  # not written by this code: expires as ours do
            holder, released = None, False
        finally:
            answer["Body"].close()
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date) if date else datetime.now(timezone.utc)
        age = (now - answer["LastModified"]).total_seconds()
        return _Current(token if isinstance(token, str) else None, str(answer["ETag"]), released or age > seconds,
                        age, seconds, holder if isinstance(holder, str) else None)

    def _read_quietly(self) -> _Current | None:
        try:
            return self._read()
        except (ClientError, BotoCoreError):
            return None

    def _take(self) -> str | None:
        """The ETag of the lease this run now holds, or None while another run holds it."""
        for _ in range(3):  # the holder may let go between our requests
            try:
                return self._put(IfNoneMatch="*")
            except ClientError as error:
                if _code(error) not in _TAKEN:
                    raise
            try:
                current = self._read()
            except (ClientError, BotoCoreError) as error:  # held by someone: never a reason to go on without
                raise _Unreadable(f"cannot read the lease {self.url} another run holds: {error}") from error
            if current is None:
                continue
            if current.token == self.token:
                return current.etag  # our own earlier write, whose answer was lost
            if not current.expired:
                self.held_by = current.describe(self.url)
                return None
            try:
                return self._put(IfMatch=current.etag)  # expired: its holder is gone
            except ClientError as error:
                if _code(error) in _TAKEN or _code(error) in _MISSING:
                    return None  # another run took it first
                raise
        return None

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self._etag = self._put(IfMatch=str(self._etag))
                self._renewed = time.monotonic()
                continue
            except ClientError as error:
                problem: Exception = error
                if _code(error) in _TAKEN or _code(error) in _MISSING:
                    current = self._read_quietly()
                    if current is not None and current.token == self.token:
                        self._etag = current.etag  # the previous renewal went through unanswered
                        continue
                    if current is not None or _code(error) in _MISSING:
                        self._lost = f"another run took the lease {self.url} over"
                        log.warning("mwaa-logging: %s", self._lost)
                        return
            except BotoCoreError as error:
                problem = error
            log.warning("mwaa-logging: could not renew the replay lease %s: %s", self.url, problem)
