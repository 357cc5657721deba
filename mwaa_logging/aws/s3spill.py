"""Spill to S3: gzip JSON Lines objects, one stream per object, same layout as the local spill.

Key of an object: ``<prefix>/`` + :func:`mwaa_logging.spill.layout.object_name`, i.e.
``<prefix>/<group>/<stream>/<UTC time>-<host>-<pid>-<n>.jsonl.gz``, so one stream's spilled lines are
found by listing one prefix. Replayed objects are moved under ``<prefix>/@replayed/`` (a segment no
quoted group name can produce), which a lifecycle rule can expire.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from botocore.exceptions import ClientError, ConnectTimeoutError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from mwaa_logging.gzipping import DEFAULT_LEVEL, gzip_bytes
from mwaa_logging.outcome import Outcome, classify_error
from mwaa_logging.protocols import PartialSpillError, SpillError
from mwaa_logging.spill.layout import SUFFIX, object_name, stream_prefix
from mwaa_logging.spillformat import (
    DamagedSpill,
    Decoded,
    SpillRecord,
    encode_line,
    records_by_stream,
    salvage_records,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Upper bound of the uncompressed JSON Lines in one object (so compressed objects stay below it too).
DEFAULT_MAX_OBJECT_BYTES = 8 * 1024 * 1024
#: Most bytes a spill object is read or decompressed to (``4 * max_object_bytes`` if more): objects are cut at
#: ``max_object_bytes`` of JSON Lines, or hold one line (a message of up to 1 MiB, up to 6 bytes a character once
#: JSON-escaped). Whoever may write the bucket must not make a reader or replay hold gigabytes (a gzip bomb).
MAX_READ_BYTES = 64 * 1024 * 1024
#: Segment under the spill prefix that holds objects already replayed into CloudWatch.
REPLAYED_SEGMENT = "@replayed"
CONTENT_TYPE = "application/x-ndjson"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")`` (prefix without slashes around)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"expected s3://bucket[/prefix], got {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def default_s3_client(
    *, endpoint_url: str | None = None, profile_name: str | None = None, region_name: str | None = None
) -> S3Client:
    """An S3 client from the standard AWS configuration (``AWS_ENDPOINT_URL_S3``, profiles, region).

    Short timeouts and few retries: a spill happens when something is already late.
    """
    try:
        from mwaa_logging.aws.clients import make_s3_client
    except ImportError:  # the shared client factory is optional here
        pass
    else:
        return make_s3_client(endpoint_url=endpoint_url, profile_name=profile_name, region_name=region_name)
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile_name, region_name=region_name)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
    return session.client("s3", endpoint_url=endpoint_url, config=config)


class _Progress:
    """What one write stored so far (object keys, ids of their records), how it ended, and whether to stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: list[str] = []
        self.done: set[int] = set()
        self.error: Exception | None = None
        self.finished = False
        self.stopped = False


@dataclass(frozen=True)
class S3Object:
    """One spill object found by a listing."""

    bucket: str
    key: str
    size: int

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class S3SpillSink:
    """Writes spilled records to ``s3://bucket/prefix`` (implements ``protocols.SpillSink``).

    Records of one ``write`` are grouped per stream, sorted by timestamp (stable) and cut into objects of
    at most ``max_object_bytes`` uncompressed JSON Lines. SSE-S3 (AES256) unless ``kms_key_id`` asks for
    SSE-KMS. The client is created on first use: construction does no network I/O.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        client_factory: Callable[[], S3Client] | None = None,
        kms_key_id: str | None = None,
        expected_bucket_owner: str | None = None,
        tags: Mapping[str, str] | None = None,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        compresslevel: int = DEFAULT_LEVEL,
        put_attempts: int = 3,
        retry_pause: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not bucket:
            raise ValueError("S3 spill needs a bucket name")
        if max_object_bytes <= 0:
            raise ValueError("max_object_bytes must be positive")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.kms_key_id = kms_key_id
        self.expected_bucket_owner = expected_bucket_owner
        self.tags = dict(tags or {})
        self.max_object_bytes = max_object_bytes
        self.compresslevel = compresslevel
        self.put_attempts = max(1, put_attempts)
        self.retry_pause = retry_pause
        self._sleep = sleep
        self._client = client
        #: The process ``_client`` serves: a forked child must not share the parent's pooled connections.
        self._client_pid = os.getpid()
        self._given_client = client
        self._client_factory = client_factory or default_s3_client
        self._client_lock = threading.Lock()
        self._lock_pid = os.getpid()
        #: Objects and bytes written (compressed), for stats.
        self.objects_written = 0
        self.bytes_written = 0
        #: Called with (records, object URL) when S3 confirms an object after :meth:`write_before` gave its
        #: records to the next target at the deadline: they are then stored twice (the handler counts them).
        self.on_late_store: Callable[[int, str], None] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3SpillSink:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **options)

    @property
    def client(self) -> S3Client:
        """This process's client: built on first use, and again in a forked child (a given client there forgets
        the parent's pooled connections). A child that wrote over the parent's keep-alive socket interleaved its
        PUTs with the parent's: S3 stored objects that failed their checksum, and read back some lines twice."""
        client = self._client
        if client is not None and self._client_pid == os.getpid():
            return client
        return self._client_for_this_process()

    def _client_for_this_process(self) -> S3Client:
        pid = os.getpid()
        if self._lock_pid != pid:  # a forked child: a thread of the parent may have held the lock
            self._client_lock, self._lock_pid = threading.Lock(), pid
        with self._client_lock:
            if self._client is None or self._client_pid != pid:
                if self._given_client is not None:
                    from mwaa_logging.aws.clients import forget_pooled_connections

                    forget_pooled_connections(self._given_client)
                    self._client = self._given_client
                else:
                    self._client = self._client_factory()
                self._client_pid = pid
            return self._client

    # -- writing ---------------------------------------------------------------------------------

    def key_for(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def put_options(self) -> dict[str, Any]:
        """The PutObject parameters every spill object carries (encryption, owner check, tags)."""
        options: dict[str, Any] = {"ContentType": CONTENT_TYPE, "ContentEncoding": "gzip"}
        if self.kms_key_id:
            options["ServerSideEncryption"] = "aws:kms"
            options["SSEKMSKeyId"] = self.kms_key_id
        else:
            options["ServerSideEncryption"] = "AES256"
        if self.expected_bucket_owner:
            options["ExpectedBucketOwner"] = self.expected_bucket_owner
        if self.tags:
            options["Tagging"] = urlencode(self.tags)
        return options

    def write(self, records: Sequence[SpillRecord]) -> str:
        """Store ``records``; return the object URL (or the stream prefix / sink URL for several)."""
        if not records:
            return self.description
        progress = _Progress()
        try:
            self._put_objects(records, progress)
        except Exception as exc:  # an AWS error, or any other: what was stored is said, the rest moves on
            progress.error = exc
        return self._result(records, progress)

    def write_before(self, records: Sequence[SpillRecord], deadline: float) -> str:
        """:meth:`write`, returning by ``deadline`` (``time.monotonic()``), e.g. at a close deadline.

        The PUTs run on a helper thread that starts none after the deadline; records whose object S3 has not
        confirmed by then are named in the :class:`PartialSpillError` (or :class:`SpillError`) raised, for the next
        target. A PUT still unanswered then is abandoned, not cancelled: if S3 stores it later, its records are
        stored twice (:attr:`on_late_store` is told). Where no thread can be started (Python 3.12 refuses new ones
        in atexit hooks, where a close deadline spills), the PUTs run on the calling thread, none started after the
        deadline: one may then end up to the client's timeouts after it.
        """
        if not records:
            return self.description
        progress = _Progress()
        if deadline > time.monotonic():
            worker = threading.Thread(target=self._put_objects_apart, args=(records, progress), daemon=True,
                                      name="mwaa-logging-s3-spill")
            try:
                worker.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self._put_objects_apart(records, progress, deadline)
            else:
                worker.join(max(0.0, deadline - time.monotonic()))
        return self._result(records, progress, stop=True)

    def _put_objects_apart(self, records: Sequence[SpillRecord], progress: _Progress,
                           deadline: float | None = None) -> None:
        try:
            self._put_objects(records, progress, deadline)
        except Exception as exc:  # on a helper thread: the caller reports it
            with progress.lock:
                progress.error = exc

    def _put_objects(self, records: Sequence[SpillRecord], progress: _Progress, deadline: float | None = None) -> None:
        """PUT the objects of ``records`` one by one, recording each in ``progress``, until done, stopped or (none
        started) after ``deadline``."""
        options = self.put_options()
        for (group, stream), stream_records in records_by_stream(records).items():
            for chunk, body in self._objects(stream_records):
                if progress.stopped or (deadline is not None and time.monotonic() >= deadline):
                    return
                key = self.key_for(object_name(group, stream, chunk[0].timestamp))
                self._put(key, body, options, progress, deadline)
                with progress.lock:
                    self.objects_written += 1
                    self.bytes_written += len(body)
                    late = progress.stopped  # its records went to the next target at the deadline
                    if not late:
                        progress.keys.append(key)
                        progress.done.update(id(r) for r in chunk)
                if late:
                    if self.on_late_store is not None:
                        self.on_late_store(len(chunk), f"s3://{self.bucket}/{key}")
                    return
        with progress.lock:
            progress.finished = True

    def _result(self, records: Sequence[SpillRecord], progress: _Progress, *, stop: bool = False) -> str:
        """Where ``records`` went, or the error naming the records ``progress`` did not store. ``stop``: the write
        ends now, whatever its helper thread does next (one lock: an object confirmed later is a late one)."""
        with progress.lock:
            progress.stopped = progress.stopped or stop
            keys, done, error, finished = list(progress.keys), set(progress.done), progress.error, progress.finished
        if finished and error is None:
            return self._location_of(keys)
        if error is not None:
            message = f"cannot write spill object to {self.description}: {error}"
        else:
            message = f"{self.description} did not store the spill before its deadline"
        if not keys:
            raise SpillError(message) from error
        remaining = [r for r in records if id(r) not in done]
        raise PartialSpillError(message, remaining, self._location_of(keys)) from error

    def _put(self, key: str, body: bytes, options: dict[str, Any], progress: _Progress,
             deadline: float | None = None) -> None:
        """PutObject; a throttle (503 SlowDown), a 5xx or a failed connection is retried after a short pause, a
        timeout once only (each costs the client's whole timeout, and the sender, every handler of the process,
        waits for a write with no deadline); none after the write was stopped or ``deadline`` passed.

        Retrying is safe: the same key is written again, so an ambiguous attempt (sent, no answer) leaves one
        object. Given up after one whose connection closed before the answer (the last attempt, or an earlier one:
        S3 may have stored it before answering the next ones 503), or stopped (its records gone on to the next
        target), the key is looked up: if the object is there, it counts as stored (after a stop, a late store the
        handler counts); a lookup after a timeout is not made (it would wait as long again).
        """
        slow, ambiguous, unanswered, timed_out = 0, False, False, False
        for attempt in range(1, self.put_attempts + 1):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **options)
                return
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                ambiguous = timed_out = False
                retry = classify_error(code, status) in (Outcome.THROTTLED, Outcome.TRANSIENT)
                if not retry or attempt == self.put_attempts:
                    if self._stored_after(key, ambiguous, unanswered, timed_out, progress, deadline):
                        return
                    raise
            except (HTTPClientError, BotocoreConnectionError) as error:
                ambiguous = isinstance(error, HTTPClientError)  # sent: S3 may have stored it
                unanswered = unanswered or ambiguous
                timed_out = isinstance(error, (ReadTimeoutError, ConnectTimeoutError))
                slow += timed_out
                if progress.stopped or attempt == self.put_attempts or slow > 1:
                    if self._stored_after(key, ambiguous, unanswered, timed_out, progress, deadline):
                        return
                    raise
            self._sleep(self.retry_pause * attempt)
            if progress.stopped or (deadline is not None and time.monotonic() >= deadline):
                if self._stored_after(key, ambiguous, unanswered, timed_out, progress, deadline):
                    return
                raise SpillError(f"{self.description}: stopped at the deadline while retrying")

    def _stored_after(self, key: str, ambiguous: bool, unanswered: bool, timed_out: bool, progress: _Progress,
                      deadline: float | None) -> bool:
        """Whether an attempt that got no answer (the last one, ``ambiguous``, or any, ``unanswered``) stored ``key``
        after all: looked up unless the last attempt timed out on the writer's own thread (the lookup would wait as
        long again; after a stop, the thread is abandoned), nor, for an earlier attempt only, on the calling thread
        after ``deadline``."""
        earlier = unanswered and (deadline is None or time.monotonic() < deadline)
        return (ambiguous or earlier) and (progress.stopped or not timed_out) and self._stored(key)

    def _stored(self, key: str) -> bool:
        """Whether ``key`` exists (False if that cannot be told)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if self.expected_bucket_owner:
            params["ExpectedBucketOwner"] = self.expected_bucket_owner
        try:
            self.client.head_object(**params)
        except Exception:
            return False
        return True

    def _location_of(self, keys: list[str]) -> str:
        if len(keys) == 1:
            return f"s3://{self.bucket}/{keys[0]}"
        parents = {key.rsplit("/", 1)[0] for key in keys}
        if len(parents) == 1:
            return f"s3://{self.bucket}/{parents.pop()}/"
        return self.description

    def _objects(self, records: list[SpillRecord]) -> Iterator[tuple[list[SpillRecord], bytes]]:
        """Cut one stream's sorted records into (records, gzip body) of bounded size."""
        chunk: list[SpillRecord] = []
        lines: list[bytes] = []
        size = 0
        for record in records:
            line = encode_line(record)
            if chunk and size + len(line) > self.max_object_bytes:
                yield chunk, gzip_bytes(b"".join(lines), self.compresslevel)
                chunk, lines, size = [], [], 0
            chunk.append(record)
            lines.append(line)
            size += len(line)
        if chunk:
            yield chunk, gzip_bytes(b"".join(lines), self.compresslevel)

    # -- reading and bookkeeping (reader, replay) ------------------------------------------------------

    def list_objects(self, under: str = "") -> Iterator[S3Object]:
        """Spill objects below ``prefix/under`` in key order, skipping already replayed ones."""
        list_prefix = self.key_for(under) if under else (f"{self.prefix}/" if self.prefix else "")
        paginator = self.client.get_paginator("list_objects_v2")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": list_prefix}
        if self.expected_bucket_owner:
            params["ExpectedBucketOwner"] = self.expected_bucket_owner
        replayed = f"/{REPLAYED_SEGMENT}/"
        for page in paginator.paginate(**params):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith(SUFFIX) and replayed not in f"/{key}":
                    yield S3Object(self.bucket, key, int(item.get("Size", 0)))

    def stream_objects(self, group: str, stream: str) -> Iterator[S3Object]:
        """The spill objects of one stream (one prefix listing)."""
        return self.list_objects(stream_prefix(group, stream))

    def read_object(self, obj: S3Object) -> list[SpillRecord]:
        """The records of ``obj``; ``ValueError`` for an object bigger than any this sink writes (compressed or
        not: see :data:`MAX_READ_BYTES`), before it is all in memory, and for a damaged one or one with a line that
        is no spill record (:class:`DamagedSpill`)."""
        decoded = self.salvage_object(obj)
        if decoded.damage is not None:
            raise DamagedSpill(decoded.damage)
        if decoded.bad_lines:  # every record or an error, as decode_records: salvage_object gives the rest
            raise DamagedSpill(decoded.bad_lines_said())
        return decoded.records

    def salvage_object(self, obj: S3Object) -> Decoded:
        """As :meth:`read_object`, but of an object whose data is damaged (cut short), every complete record before
        the damage, and what was not read (:func:`mwaa_logging.spillformat.salvage_records`)."""
        params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
        if self.expected_bucket_owner:
            params["ExpectedBucketOwner"] = self.expected_bucket_owner
        limit = max(MAX_READ_BYTES, 4 * self.max_object_bytes)
        answer = self.client.get_object(**params)
        stream = answer["Body"]
        try:
            if int(answer.get("ContentLength") or 0) > limit:
                raise ValueError(f"holds {answer.get('ContentLength')} bytes, more than any spill object")
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise ValueError(f"holds more than {limit} bytes, more than any spill object")
        finally:
            stream.close()
        return salvage_records(body, max_bytes=limit)

    @staticmethod
    def replayed_key(obj: S3Object) -> str:
        """Where :meth:`mark_replayed` moves ``obj``: ``<root>/@replayed/<group>/<stream>/<name>``.

        ``<root>`` is the spill prefix the object was written under (its key minus the three layout
        segments), whatever prefix this sink lists, so replaying a sub-prefix marks objects alike.
        """
        parts = obj.key.split("/")
        root, relative = parts[:-3], parts[-3:]
        return "/".join([*root, REPLAYED_SEGMENT, *relative])

    def replayed_copies(self, obj: S3Object) -> dict[str, int]:
        """Keys and sizes under the replayed prefix of ``obj``'s stream (where :meth:`mark_replayed` copies its
        objects); empty if that cannot be listed."""
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {"Bucket": obj.bucket, "Prefix": self.replayed_key(obj).rsplit("/", 1)[0] + "/"}
        if self.expected_bucket_owner:
            params["ExpectedBucketOwner"] = self.expected_bucket_owner
        copies: dict[str, int] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**params):
                copies.update((item["Key"], int(item.get("Size", 0))) for item in page.get("Contents", []))
        except (BotoCoreError, ClientError):
            return {}
        return copies

    def encryption_of(self, obj: S3Object) -> dict[str, str]:
        """``obj``'s encryption as PutObject/CopyObject arguments (a copy or a lease next to it keeps it; a copy
        would otherwise get the bucket default)."""
        if self.kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
        if self.expected_bucket_owner:
            params["ExpectedBucketOwner"] = self.expected_bucket_owner
        head = self.client.head_object(**params)
        if head.get("ServerSideEncryption") == "aws:kms" and head.get("SSEKMSKeyId"):
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": head["SSEKMSKeyId"]}
        return {"ServerSideEncryption": "AES256"}

    def mark_replayed(self, obj: S3Object) -> str:
        """Move ``obj`` under the replayed prefix (copy, then delete); return the new URL."""
        target = self.replayed_key(obj)
        copy: dict[str, Any] = {
            "Bucket": obj.bucket,
            "Key": target,
            "CopySource": {"Bucket": obj.bucket, "Key": obj.key},
        }
        copy.update(self.encryption_of(obj))
        if self.expected_bucket_owner:
            copy["ExpectedBucketOwner"] = self.expected_bucket_owner
            copy["ExpectedSourceBucketOwner"] = self.expected_bucket_owner
        self.client.copy_object(**copy)
        delete: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
        if self.expected_bucket_owner:
            delete["ExpectedBucketOwner"] = self.expected_bucket_owner
        self.client.delete_object(**delete)
        return f"s3://{obj.bucket}/{target}"
