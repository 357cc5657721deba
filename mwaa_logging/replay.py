"""``mwaa-logging replay SOURCE``: put spilled events back into their CloudWatch group and stream.

SOURCE is ``s3://bucket/prefix`` (any prefix of the spill layout) or a spill directory. Objects are
taken in key order, a few at a time per stream (a *unit*: objects of one stream until they hold about
four full PutLogEvents batches, at most ``--max-objects-per-unit`` objects). For each unit:

1. events older than CloudWatch accepts (14 days, minus a 5 minute margin) or more than 2 hours
   in the future are set aside as rejected; the rest is cut into valid PutLogEvents batches;
2. every batch goes through the PutLogEvents budget (``--rate`` calls/s), throttles and transient
   errors are retried with capped exponential backoff and full jitter, a missing group or stream is
   created; events CloudWatch rejects in ``rejectedLogEventsInfo`` (too old, expired by retention,
   too new) are set aside too;
3. rejected events are appended to the export file (``--export-rejected``, default
   ``./mwaa-logging-rejected-<UTC time>.jsonl.gz``, spill line format) and synced;
4. then, only then, the unit's objects are marked: S3 objects move to ``<root>/@replayed/...``
   (copy + delete), local files are renamed to ``<name>.replayed``.

A second run finds nothing left to replay. A crash between step 2 and step 4 replays that one
unit again (its events may then appear twice in CloudWatch, put by two calls; the reader shows them once).
Two runs over the same files at once do not both put them: each holds a stream's directory (``flock``) or
S3 prefix (a lease object written with ``If-None-Match``) while it replays it, and skips a stream another run holds
(said, with the lease's age and expiry on S3; exit 3: those lines are not known to be replayed).
A record is put only into the stream its object's path names (``<group>/<stream>/``, as the reader reads it); one
that names another stream is exported with reason ``misplaced`` and said, not put.
A unit that fails (permission, invalid request, retries exhausted) stays unmarked for the next run.
A damaged object (its gzip data cut short) has its complete records put and is marked like the others; what
could not be read is said. An object with a complete line that is not a spill record fails: none of it is
put, it stays unmarked, and the line is named (the reader shows its other lines). Local files a killed writer left
unfinished (``*.jsonl.gz.tmp``) are replayed too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import itertools
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from mwaa_logging.argtypes import (
    account_id,
    endpoint_url,
    positive_float,
    positive_int,
    rate_limit_scope,
    spill_location,
)
from mwaa_logging.batching import cut_batches, partition_by_age, partition_rejected
from mwaa_logging.events import MESSAGE, SEQ, TIMESTAMP, LogEvent, make_event
from mwaa_logging.limits import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from mwaa_logging.outcome import CallResult, Outcome
from mwaa_logging.protocols import Budget, Clock, Transport
from mwaa_logging.retry import Backoff
from mwaa_logging.spill.layout import EXPORT_PREFIX, REPLAYED_SUFFIX, TMP_SUFFIX, in_stream_prefix
from mwaa_logging.spill.leftovers import spill_files
from mwaa_logging.spillformat import Decoded, SpillReason, SpillRecord, decode_records, salvage_records
from mwaa_logging.splitting import split_oversized

__all__ = ["Claim", "ReplayError", "ReplaySummary", "Replayer", "SpillObject", "add_arguments", "open_source",
           "run"]

#: The lock file (local) or lease object (S3) a replay holds in each stream directory or prefix it replays.
LOCK_NAME = ".mwaa-logging-replay.lock"
DEFAULT_RATE = 10.0
#: Exit code of a run that failed nowhere but skipped streams another replay held (or a killed one's lease that has
#: not expired): their lines are not known to be in CloudWatch; run again later (a retry loop must not stop there).
EXIT_HELD = 3
#: A unit holds at most this many objects, and is closed once it holds this many full batches of events.
DEFAULT_MAX_OBJECTS_PER_UNIT = 200
UNIT_BATCHES = 4


class ReplayError(Exception):
    """A unit could not be replayed (its objects stay unmarked). ``fatal``: later units cannot fare better."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


# -- sources -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpillObject:
    """One spill object/file: ``location`` is its URL or path, ``handle`` what its source needs."""

    location: str
    size: int
    stream_key: str
    handle: Any = None


@dataclass(frozen=True)
class Claim:
    """A run's hold on one stream's objects: true when held. ``reason()`` says why it was not taken (when that
    was not simply another run holding it) or, once taken, why it was lost (another run may now hold it)."""

    held: bool
    reason: Callable[[], str | None] = lambda: None
    #: Not held because another run holds it: who, and until when where that is known.
    held_by: str | None = None

    def __bool__(self) -> bool:
        return self.held


class SpillSource(Protocol):
    description: str

    def objects(self) -> Iterator[SpillObject]: ...

    def read(self, obj: SpillObject) -> Decoded:
        """``obj``'s records; of a damaged object, those that could be salvaged, and what could not."""
        ...

    def mark(self, obj: SpillObject) -> str: ...

    def marked_copies(self, objects: Sequence[SpillObject]) -> set[str]:
        """Locations of ``objects`` an earlier run put and began to mark (their replayed copy exists) but could not
        finish marking: they are marked again, not put again."""
        ...

    def claim(self, stream_key: str) -> contextlib.AbstractContextManager[Claim]:
        """Hold the objects under ``stream_key`` for this run: false while another run holds them."""
        ...


class LocalSource:
    """Spill files under a directory; replayed files are renamed to ``<name>.replayed``.

    A run holds each stream directory it replays with ``flock`` on a lock file in it, so that two replays of
    the same files (at once, from the same or a parent directory) do not both put them; a killed run lets go.
    A file a killed writer left unfinished (``.tmp``, see :mod:`mwaa_logging.spill.leftovers`) is replayed too,
    never one being written.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        # absolute (not resolved: a symbolic link's own name is what names the stream): a stream directory given as
        # "." or "s" must still end in its <group>/<stream>, which records are checked against
        self.directory = Path(os.path.abspath(directory))
        self.description = str(self.directory)

    def objects(self) -> Iterator[SpillObject]:
        for path in spill_files(self.directory, recursive=True):
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # marked by another run since the directory was listed
                continue
            yield SpillObject(str(path), size, str(path.parent), path)

    def read(self, obj: SpillObject) -> Decoded:
        return salvage_records(Path(obj.handle).read_bytes())

    def mark(self, obj: SpillObject) -> str:
        path = Path(obj.handle)
        target = path.with_name(path.name + REPLAYED_SUFFIX)
        os.replace(path, target)
        return str(target)

    def marked_copies(self, objects: Sequence[SpillObject]) -> set[str]:
        return set()  # marking is one rename: never half done

    @contextlib.contextmanager
    def claim(self, stream_key: str) -> Iterator[Claim]:
        try:
            fd = os.open(os.path.join(stream_key, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
        except OSError as error:
            yield _cannot_mark(stream_key, error)
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield Claim(False, held_by=f"{stream_key} is locked by another replay running now (its "
                                          f"{LOCK_NAME})")
                return
            try:  # marking renames in the directory: a run that could put but not mark would put again every time
                probe_fd, probe = tempfile.mkstemp(prefix=".mwaa-logging-probe-", dir=stream_key)
                os.close(probe_fd)
                os.unlink(probe)
            except OSError as error:
                yield _cannot_mark(stream_key, error)
                return
            yield Claim(True)
        finally:
            os.close(fd)  # releases the lock


def _cannot_mark(stream_key: str, error: OSError) -> Claim:
    """Not held: this user cannot write in ``stream_key``, so what it put could not be marked as replayed."""
    reason = (f"cannot write in {stream_key} ({error.strerror or error}), so replayed files could not be marked; "
              "nothing of it was put")
    return Claim(False, lambda: reason)


class S3Source:
    """Spill objects under ``s3://bucket/prefix``; replayed objects move under ``<root>/@replayed/``.

    A run holds each stream prefix it replays with a lease object in it (``.mwaa-logging-replay.lock``, a
    conditional write, renewed while held, taken over 10 minutes after a killed run's last renewal), so that two
    replays of the same prefix do not both put its objects."""

    def __init__(self, url: str, *, client: Any = None, expected_bucket_owner: str | None = None,
                 lease_seconds: float | None = None) -> None:
        from mwaa_logging.aws.s3lease import LEASE_SECONDS
        from mwaa_logging.aws.s3spill import S3SpillSink

        self.sink = S3SpillSink.from_url(url, client=client, expected_bucket_owner=expected_bucket_owner)
        self.description = self.sink.description
        self.lease_seconds = LEASE_SECONDS if lease_seconds is None else lease_seconds
        self._said_unavailable = False
        #: One listed object of each stream prefix, whose encryption its lease object takes.
        self._listed: dict[str, Any] = {}

    def objects(self) -> Iterator[SpillObject]:
        for obj in self.sink.list_objects():
            stream_key = obj.key.rsplit("/", 1)[0]
            self._listed.setdefault(stream_key, obj)
            yield SpillObject(obj.url, obj.size, stream_key, obj)

    def read(self, obj: SpillObject) -> Decoded:
        from botocore.exceptions import ClientError

        try:
            return self.sink.salvage_object(obj.handle)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(obj.location) from error  # moved to @replayed by another run since listed
            raise

    def mark(self, obj: SpillObject) -> str:
        from botocore.exceptions import ClientError

        try:
            return self.sink.mark_replayed(obj.handle)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(obj.location) from error  # marked by another run since listed
            raise

    def _lease_encryption(self, stream_key: str) -> dict[str, str] | None:
        """The encryption of a spill object of ``stream_key`` (None: SSE-S3), as the copies :meth:`mark` makes."""
        from botocore.exceptions import BotoCoreError, ClientError

        listed = self._listed.get(stream_key)
        if listed is None:
            return None
        try:
            return self.sink.encryption_of(listed)
        except (BotoCoreError, ClientError):  # gone, or HEAD refused: the lease says so if its write fails too
            return None

    def marked_copies(self, objects: Sequence[SpillObject]) -> set[str]:
        """Marking copies an object under ``@replayed/``, then deletes it: a role that may not delete (a common
        guard on log buckets) left every object to be put again by every run. One listing of the stream's
        ``@replayed/`` prefix finds them."""
        if not objects:
            return set()
        copies = self.sink.replayed_copies(objects[0].handle)
        return {obj.location for obj in objects if copies.get(self.sink.replayed_key(obj.handle)) == obj.size}

    @contextlib.contextmanager
    def claim(self, stream_key: str) -> Iterator[Claim]:
        """A lease object (:mod:`mwaa_logging.aws.s3lease`) next to the stream's spill objects, taken with
        conditional writes; where the store or the role refuses leases, this run goes on without one, and says so
        once."""
        from mwaa_logging.aws.s3lease import S3Lease

        lease = S3Lease(self.sink.client, self.sink.bucket, f"{stream_key}/{LOCK_NAME}",
                        expected_bucket_owner=self.sink.expected_bucket_owner, lease_seconds=self.lease_seconds,
                        encryption=self._lease_encryption(stream_key))
        if not lease.acquire():
            yield Claim(False, lambda: lease.failed, held_by=lease.held_by)
            return
        if lease.unavailable is not None and not self._said_unavailable:
            self._said_unavailable = True
            print(f"replay: no lease at {lease.url} ({lease.unavailable}): another replay of {self.description} "
                  "running at the same time would put the same lines again", file=sys.stderr)
        try:
            yield Claim(True, lease.lost)
        finally:
            lease.release()


def open_source(
    source: str, *, s3_client: Any = None, expected_bucket_owner: str | None = None
) -> LocalSource | S3Source:
    """The source SOURCE names: ``s3://bucket/prefix``, ``file://dir`` or a directory."""
    if source.startswith("s3://"):
        return S3Source(source, client=s3_client, expected_bucket_owner=expected_bucket_owner)
    from mwaa_logging.spill.factory import local_directory_of

    directory = Path(local_directory_of(source))
    if not directory.is_dir():
        raise ReplayError(f"spill directory {directory} " + ("is not a directory" if directory.exists()
                                                             else "does not exist"))
    return LocalSource(directory)


# -- the replay itself -----------------------------------------------------------------------------------


@dataclass
class StreamSummary:
    group: str
    stream: str
    objects: int = 0
    read: int = 0
    put: int = 0
    rejected: int = 0


@dataclass
class ReplaySummary:
    """What a run did; ``read == put + rejected`` for every fully replayed stream."""

    dry_run: bool = False
    objects_found: int = 0
    objects_replayed: int = 0
    objects_failed: int = 0
    #: Objects another run was replaying (its lock held), or had replayed once this run could look.
    objects_skipped: int = 0
    #: Of those, the objects of streams another run (or, on S3, a killed run's unexpired lease) held: not replayed by
    #: this run, nor known to be by another; ``held`` says which streams, by whom and until when.
    objects_held: int = 0
    held: list[str] = field(default_factory=list)
    #: Damaged objects (cut short) whose complete records were replayed; what was lost is said in ``errors``.
    objects_salvaged: int = 0
    #: Local files a killed writer left unfinished (``.tmp``), replayed (or, in a dry run, found).
    objects_left_behind: int = 0
    events_read: int = 0
    events_put: int = 0
    events_rejected: int = 0
    put_calls: int = 0
    throttled: int = 0
    retries: int = 0
    created: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    streams: dict[tuple[str, str], StreamSummary] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    export_path: str | None = None

    def stream(self, group: str, stream: str) -> StreamSummary:
        key = (group, stream)
        if key not in self.streams:
            self.streams[key] = StreamSummary(group, stream)
        return self.streams[key]


class RejectedExport:
    """Appends rejected events to a file in the spill line format (gzip when the name ends in .gz)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._created = False
        self.count = 0

    def open(self) -> None:
        """Open (create) the file now: a replay checks it can export before it puts anything, since what it puts
        with an event it cannot export stays unmarked and is put again by the next run. :meth:`close` removes a
        file it created that stayed empty."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        # The events' text is the task logs' (secrets too): readable by this user alone, whatever the umask; a
        # symbolic link at the predictable default name (a shared working directory) is not followed.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._created = not existed

    def write(self, records: Sequence[SpillRecord]) -> None:
        if not records:
            return
        self.open()
        assert self._file is not None
        data = b"".join(orjson.dumps(r.to_json()) + b"\n" for r in records)
        if self.path.name.endswith(".gz"):
            data = gzip.compress(data)  # members appended to one file form one valid gzip stream
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.count += len(records)

    def close(self) -> None:
        if self._file is not None:
            try:  # another run given the same name may have written to it
                empty = os.fstat(self._file.fileno()).st_size == 0
            except OSError:
                empty = False
            with contextlib.suppress(OSError):  # each write was flushed: only what a failed write left (said) remains
                self._file.close()
            self._file = None
            if self._created and not self.count and empty:
                with contextlib.suppress(OSError):
                    self.path.unlink()


class Replayer:
    """Replays units of spill objects through a :class:`Transport` under a :class:`Budget`.

    Time is injected: ``clock`` (monotonic s) for the budget, ``wall_ms`` for the age rules,
    ``sleep`` for waits, ``jitter`` for backoff.
    """

    def __init__(
        self,
        transport: Transport | None,
        budget: Budget | None,
        *,
        export: RejectedExport | None = None,
        dry_run: bool = False,
        clock: Clock = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        backoff: Backoff | None = None,
        max_attempts: int = 10,
        create_budget: Budget | None = None,
    ) -> None:
        if not dry_run and (transport is None or budget is None):
            raise ValueError("a transport and a budget are needed unless dry_run")
        self.transport = transport
        self.budget = budget
        self.create_budget = create_budget
        self.export = export
        self.dry_run = dry_run
        self.clock = clock
        self.wall_ms = wall_ms
        self.sleep = sleep
        self.jitter = jitter
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.max_attempts = max_attempts
        self.summary = ReplaySummary(dry_run=dry_run)

    def run(
        self,
        source: SpillSource,
        *,
        max_objects_per_unit: int = DEFAULT_MAX_OBJECTS_PER_UNIT,
        on_object: Callable[[SpillObject], None] | None = None,
        objects: Sequence[SpillObject] | None = None,
    ) -> ReplaySummary:
        """Replay every object of ``source`` (or the ``objects`` already listed), one stream at a time; a
        stream another run holds (see :meth:`SpillSource.claim`) is skipped."""
        listed = list(source.objects()) if objects is None else list(objects)
        self.summary.objects_found += len(listed)
        for stream_key, same_stream in itertools.groupby(listed, key=lambda obj: obj.stream_key):
            stream_objects = list(same_stream)
            with contextlib.nullcontext(Claim(True)) if self.dry_run else source.claim(stream_key) as claim:
                if not claim:
                    self.summary.objects_skipped += len(stream_objects)
                    if (reason := claim.reason()) is not None:
                        self.summary.errors.append(f"skipped {stream_key}, left for the next run: {reason}")
                    else:
                        self.summary.objects_held += len(stream_objects)
                        self.summary.held.append(f"skipped {len(stream_objects)} objects: "
                                                 f"{claim.held_by or f'another replay holds {stream_key}'}")
                    for obj in stream_objects:
                        if on_object is not None:
                            on_object(obj)
                    continue
                if marked := source.marked_copies(stream_objects):
                    stream_objects = self._mark_again(source, stream_objects, marked, on_object)
                for unit in self._units(source, stream_objects, max_objects_per_unit, claim):
                    fatal = self._replay_unit(source, unit)
                    if on_object is not None:
                        for obj, _ in unit:
                            on_object(obj)
                    if fatal:
                        return self.summary  # credentials or permissions refused: the rest cannot go better
        return self.summary

    def _mark_again(self, source: SpillSource, objects: list[SpillObject], marked: set[str],
                    on_object: Callable[[SpillObject], None] | None) -> list[SpillObject]:
        """Finish marking the ``marked`` objects (put by an earlier run); return the others."""
        for obj in (obj for obj in objects if obj.location in marked):
            if not self.dry_run:
                try:
                    source.mark(obj)
                except FileNotFoundError:  # another run finished marking it since it was listed
                    self.summary.objects_skipped += 1
                except Exception as exc:  # reported: never put again, whatever the next run finds
                    self.summary.objects_failed += 1
                    self.summary.errors.append(f"mark {obj.location}: put by an earlier run (its replayed copy "
                                               f"exists), not put again, but it could not be removed: {exc}")
                else:
                    self.summary.objects_replayed += 1
            if on_object is not None:
                on_object(obj)
        return [obj for obj in objects if obj.location not in marked]

    def _units(
        self, source: SpillSource, listed: Sequence[SpillObject], max_objects: int, claim: Claim
    ) -> Iterator[list[tuple[SpillObject, list[SpillRecord]]]]:
        """The objects of one stream, read, a unit at a time; each unit only while ``claim`` still holds."""

        def held(rest: int) -> bool:  # ``rest``: objects not yet yielded, counted as skipped once the claim is lost
            if (reason := claim.reason()) is None:
                return True
            self.summary.objects_skipped += rest
            self.summary.errors.append(f"stopped replaying {listed[0].stream_key}, left for the next run: {reason}")
            return False

        unit: list[tuple[SpillObject, list[SpillRecord]]] = []
        events = size = 0
        for index, obj in enumerate(listed):
            if unit and (unit[0][0].stream_key != obj.stream_key or len(unit) >= max_objects
                         or events >= UNIT_BATCHES * MAX_BATCH_EVENTS or size >= UNIT_BATCHES * MAX_BATCH_BYTES):
                if not held(len(unit) + len(listed) - index):
                    return
                yield unit
                unit, events, size = [], 0, 0
            try:
                decoded = source.read(obj)
            except FileNotFoundError:  # replayed (and marked) by another run since it was listed
                self.summary.objects_skipped += 1
                continue
            except Exception as exc:  # a corrupt or vanished object must not stop the run
                self.summary.objects_failed += 1
                self.summary.errors.append(f"read {obj.location}: {exc}")
                continue
            records = decoded.records
            if decoded.bad_lines:  # put none of it, leave it unmarked (marked, its bad lines would be lost unsaid)
                self.summary.objects_failed += 1
                self.summary.errors.append(f"read {obj.location}: {decoded.bad_lines_said()}; none of its "
                                           f"{len(records)} other records is put, and it stays unmarked")
                continue
            if decoded.damage is not None:  # its complete records are put, and it is marked: the rest is lost
                self.summary.objects_salvaged += 1
                self.summary.errors.append(f"damaged {obj.location}: {decoded.damage}")
            if obj.location.endswith(TMP_SUFFIX):
                self.summary.objects_left_behind += 1
            unit.append((obj, records))
            events += len(records)
            size += sum(len(r.message) + 26 for r in records)
        if unit and held(len(unit)):
            yield unit

    def _replay_unit(self, source: SpillSource, unit: list[tuple[SpillObject, list[SpillRecord]]]) -> bool:
        """Put, export, mark one unit; True when the run should stop."""
        by_stream: dict[tuple[str, str], list[SpillRecord]] = {}
        rejected: list[SpillRecord] = []
        for obj, records in unit:
            misplaced: dict[tuple[str, str], list[SpillRecord]] = {}
            seen: dict[tuple[str, str], bool] = {}  # each stream its records name: is it the object's prefix's?
            for record in records:
                key = (record.group, record.stream)
                if (placed := seen.get(key)) is None:
                    placed = seen[key] = in_stream_prefix(obj.stream_key, *key)
                (by_stream if placed else misplaced).setdefault(key, []).append(record)
            for key in seen:
                self.summary.stream(*key).objects += 1
            for key, records_elsewhere in misplaced.items():
                rejected.extend(self._misplaced(obj, key, records_elsewhere))
        try:
            for (group, stream), records in by_stream.items():
                rejected.extend(self._replay_stream(group, stream, records))
        except ReplayError as exc:
            self.summary.objects_failed += len(unit)
            self.summary.errors.append(str(exc))
            return exc.fatal
        if self.dry_run:
            return False
        if self.export is not None:
            try:
                self.export.write(rejected)
            except OSError as exc:  # put but not marked: the next run puts it again; the rest would fail the same way
                self.summary.objects_failed += len(unit)
                self.summary.errors.append(
                    f"could not export {len(rejected)} rejected events to {self.export.path}: {exc}; the "
                    f"{len(unit)} objects put with them stay unmarked (the next run puts them again), and the run "
                    "stopped")
                return True
        for obj, _ in unit:
            try:
                source.mark(obj)
            except Exception as exc:  # reported; the object will be replayed again
                self.summary.objects_failed += 1
                self.summary.errors.append(f"mark {obj.location}: {exc}")
            else:
                self.summary.objects_replayed += 1
        return False

    def _misplaced(self, obj: SpillObject, key: tuple[str, str], records: list[SpillRecord]) -> list[SpillRecord]:
        """``records`` of ``obj`` name ``key``, not the stream of ``obj``'s prefix: counted and returned for the
        export, not put. The reader never shows them (for either stream), and putting them would let whoever may
        write one stream's prefix write any stream, outside that stream's lease."""
        count, reason = len(records), SpillReason.MISPLACED.value
        summary = self.summary.stream(*key)
        summary.read += count
        summary.rejected += count
        self.summary.events_read += count
        self.summary.events_rejected += count
        self.summary.rejected_by_reason[reason] = self.summary.rejected_by_reason.get(reason, 0) + count
        self.summary.errors.append(f"misplaced: {count} records in {obj.location} name {key[0]}/{key[1]}, not the "
                                   "stream of its path: exported, not put")
        return [replace(r, reason=reason, detail=f"found in {obj.location}") for r in records]

    def _replay_stream(self, group: str, stream: str, records: list[SpillRecord]) -> list[SpillRecord]:
        """Put one stream's records; return those CloudWatch cannot take (with their reasons)."""
        summary = self.summary.stream(group, stream)
        summary.read += len(records)
        self.summary.events_read += len(records)
        events = [make_event(r.timestamp, r.message, seq) for seq, r in enumerate(records)]
        empty = [e for e in events if not e[MESSAGE]]  # CloudWatch refuses empty messages
        sendable, too_old, too_new = partition_by_age([e for e in events if e[MESSAGE]], self.wall_ms())
        rejected = [(e, SpillReason.INVALID.value) for e in empty]
        rejected += [(e, SpillReason.TOO_OLD.value) for e in too_old]
        rejected += [(e, SpillReason.TOO_NEW.value) for e in too_new]
        put: set[int] = set()  # seqs: an event split into chunks counts once
        for batch in cut_batches(split_oversized(sendable)):
            if self.dry_run:
                self.summary.put_calls += 1
                put.update(e[SEQ] for e in batch)
            else:
                accepted, refused = partition_rejected(batch, self._put(group, stream, batch).rejected)
                rejected.extend(refused)
                put.update(e[SEQ] for e in accepted)
        summary.put += len(put)
        self.summary.events_put += len(put)
        out = [SpillRecord(group, stream, e[TIMESTAMP], e[MESSAGE], reason, "replay") for e, reason in rejected]
        for record in out:
            self.summary.rejected_by_reason[record.reason] = self.summary.rejected_by_reason.get(record.reason, 0) + 1
        summary.rejected += len(out)
        self.summary.events_rejected += len(out)
        return out

    def _put(self, group: str, stream: str, batch: list[LogEvent]) -> CallResult:
        assert self.transport is not None and self.budget is not None
        state = self.backoff.reset()
        while True:
            wait = self.budget.acquire(self.clock())
            if wait > 0:
                self.sleep(wait)
                continue
            result = self.transport.put_log_events(group, stream, batch)
            self.summary.put_calls += 1
            outcome = result.outcome
            if outcome is Outcome.THROTTLED:
                self.summary.throttled += 1
                self.budget.on_throttled(self.clock())
            if outcome in (Outcome.OK, Outcome.PARTIAL):
                self.budget.on_success(self.clock())
                return result
            if outcome is Outcome.NO_RESOURCE and state.attempts < self.max_attempts:
                self._create(group, stream)
            elif outcome in (Outcome.THROTTLED, Outcome.TRANSIENT) and state.attempts < self.max_attempts:
                pass
            else:
                raise ReplayError(f"{outcome.value}: PutLogEvents {group}/{stream}: {result.error_code} "
                                  f"{result.message}", fatal=outcome is Outcome.AUTH)
            state = state.failed(result.error_code or outcome.value)
            self.summary.retries += 1
            if outcome is not Outcome.NO_RESOURCE:
                self.sleep(state.delay(self.jitter))

    def _create(self, group: str, stream: str) -> None:
        """Create the group and the stream; a throttled or failed create is retried with backoff, as a put is
        (many tasks starting at once keep CreateLogStream's quota busy)."""
        transport = self.transport
        assert transport is not None
        creates: list[tuple[str, Callable[[], CallResult]]] = [
            ("CreateLogGroup", lambda: transport.create_log_group(group)),
            ("CreateLogStream", lambda: transport.create_log_stream(group, stream)),
        ]
        for api, create in creates:
            state = self.backoff.reset()
            while True:
                if self.create_budget is not None:
                    while (wait := self.create_budget.acquire(self.clock())) > 0:
                        self.sleep(wait)
                result = create()
                outcome = result.outcome
                if outcome is Outcome.OK:
                    self.summary.created += 1 if result.error_code is None else 0
                    break
                if outcome is Outcome.AUTH:
                    raise ReplayError(f"auth: {api} {group}/{stream}: {result.error_code} {result.message}",
                                      fatal=True)
                if outcome not in (Outcome.THROTTLED, Outcome.TRANSIENT):
                    break  # the put that follows says what is wrong
                if outcome is Outcome.THROTTLED:
                    self.summary.throttled += 1
                    if self.create_budget is not None:
                        self.create_budget.on_throttled(self.clock())
                if state.attempts >= self.max_attempts:
                    raise ReplayError(f"{outcome.value}: {api} {group}/{stream}: {result.error_code} "
                                      f"{result.message}")
                state = state.failed(result.error_code or outcome.value)
                self.summary.retries += 1
                self.sleep(state.delay(self.jitter))


# -- command line ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: 0 every object found was replayed (or another replay had replayed it); 1 some "
                     "objects failed, were damaged or were left for the next run (said); 2 cannot start (a bad "
                     f"argument, an unreadable source, an export it cannot write); {EXIT_HELD} nothing failed, but "
                     "streams another replay holds were skipped (on S3 also a killed replay's lease, until it "
                     "expires: its age and expiry are said): run again later; 130/143 interrupted (Ctrl-C, SIGTERM)")
    parser.add_argument("source", metavar="SOURCE", type=spill_location, help="s3://bucket/prefix or a spill directory")
    parser.add_argument("--dry-run", action="store_true", help="read and count, put and mark nothing")
    parser.add_argument("--rate", type=positive_float, default=DEFAULT_RATE,
                        help=f"PutLogEvents calls per second for this replay (default {DEFAULT_RATE:g})")
    parser.add_argument("--rate-limit-scope", type=rate_limit_scope, default="process",
                        help="share the budget: process, host or redis://host:port/db (default process)")
    parser.add_argument("--export-rejected", metavar="PATH",
                        help="file for events CloudWatch no longer accepts (default "
                             f"./{EXPORT_PREFIX}<UTC time>-<pid>.jsonl.gz; checked before anything is put, left only "
                             "if something was rejected)")
    parser.add_argument("--endpoint-url", type=endpoint_url,
                        help="CloudWatch Logs endpoint (default: AWS configuration)")
    parser.add_argument("--s3-endpoint-url", type=endpoint_url, help="S3 endpoint (default: AWS configuration)")
    parser.add_argument("--region", help="AWS region (default: AWS configuration)")
    parser.add_argument("--profile", help="AWS profile (default: AWS configuration)")
    parser.add_argument("--expected-bucket-owner", type=account_id, help="account id the spill bucket must belong to")
    parser.add_argument("--max-objects-per-unit", type=positive_int, default=DEFAULT_MAX_OBJECTS_PER_UNIT,
                        help="objects put together before they are marked (bounds duplicates after a crash)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mwaa-logging replay``: 0 done, 1 some objects failed or were damaged (their complete
    records put) or a stream was left for the next run (its lease could not be taken or was lost), 2 cannot
    start, 3 nothing failed but streams another replay holds (on S3 also a killed one's unexpired lease) were
    skipped: run again later."""
    from botocore.exceptions import BotoCoreError
    from rich.console import Console

    from mwaa_logging.engine.diagnostics import redact_urls

    console = Console(stderr=True)
    out = Console()

    def error(text: str) -> None:
        # Taken literally (names, keys and messages may hold '[...]', rich's markup) and never wrapped: a path
        # cut across lines at 80 columns (no terminal) could not be copied.
        console.print(redact_urls(text), style="red", markup=False, highlight=False, soft_wrap=True)

    try:
        source, replayer, export = _build(args)
    except (ReplayError, ValueError, BotoCoreError) as exc:
        error(f"replay: {exc}")
        return 2
    except KeyboardInterrupt:
        error("replay interrupted before it started: nothing was put")
        return 128 + signal.SIGINT
    try:
        with _terminated_as_exception():
            objects = list(source.objects())
            with _Progress(console, len(objects), disable=args.no_progress) as advance:
                summary = replayer.run(source, objects=objects, on_object=advance,
                                       max_objects_per_unit=args.max_objects_per_unit)
    except _Terminated:
        error(f"replay of {source.description} terminated (SIGTERM): what it marked stays marked, the rest is "
              "left for the next run")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        error(f"replay of {source.description} interrupted: what it marked stays marked, the rest is left for the "
              "next run")
        return 128 + signal.SIGINT
    except Exception as exc:  # listing failed (S3 unreachable, denied)
        error(f"replay of {source.description} stopped: {exc}")
        return 2
    finally:
        if export is not None:
            export.close()
    if export is not None and export.count:
        summary.export_path = str(export.path)
    out.print(summary_table(summary, source.description))
    for message in summary.held:
        console.print(redact_urls(f"replay: {message}"), style="yellow", markup=False, highlight=False,
                      soft_wrap=True)
    for message in summary.errors:
        error(message)
    if summary.objects_failed or summary.objects_salvaged or summary.errors:
        return 1
    return EXIT_HELD if summary.objects_held else 0


class _Terminated(BaseException):
    """SIGTERM (``timeout``, systemd, a container stop) while replaying: unwinds, so that leases are released."""


@contextlib.contextmanager
def _terminated_as_exception() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` in the main thread, where its default action would kill the run with
    its S3 leases held (other runs would skip those streams until the leases expire)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _build(args: argparse.Namespace) -> tuple[LocalSource | S3Source, Replayer, RejectedExport | None]:
    s3_client = None
    if args.source.startswith("s3://"):
        from mwaa_logging.aws.clients import make_s3_client

        s3_client = make_s3_client(None, args.profile, region_name=args.region, endpoint_url=args.s3_endpoint_url)
    source = open_source(args.source, s3_client=s3_client, expected_bucket_owner=args.expected_bucket_owner)
    if args.rate is not None and not args.rate > 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")
    if args.dry_run:
        return source, Replayer(None, None, dry_run=True), None
    from mwaa_logging.aws.clients import make_logs_client
    from mwaa_logging.aws.transport import BotocoreTransport
    from mwaa_logging.budgets.factory import CREATE_STREAM, build_budget
    from mwaa_logging.limits import CREATE_LOG_STREAM_TPS

    client = make_logs_client(None, args.profile, region_name=args.region, endpoint_url=args.endpoint_url)
    budget = build_budget(args.rate_limit_scope, rate=args.rate, burst=None)
    create_budget = build_budget(args.rate_limit_scope, rate=float(CREATE_LOG_STREAM_TPS), burst=None,
                                 name=CREATE_STREAM)
    export_path = args.export_rejected or time.strftime(f"{EXPORT_PREFIX}%Y%m%dT%H%M%SZ-{os.getpid()}.jsonl.gz",
                                                        time.gmtime())
    export = RejectedExport(export_path)
    try:
        export.open()
    except OSError as exc:
        raise ReplayError(f"cannot write the export of rejected events {export_path} ({exc}); give a writable "
                          "path with --export-rejected") from exc
    replayer = Replayer(BotocoreTransport(client), budget, export=export, create_budget=create_budget)
    return source, replayer, export


class _Progress:
    """A rich progress bar over objects; yields the callback that advances it."""

    def __init__(self, console: Any, total: int, *, disable: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=console, disable=disable, transient=True)
        self._task = self._progress.add_task("replay", total=total)

    def __enter__(self) -> Callable[[SpillObject], None]:
        self._progress.start()
        return lambda _obj: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def summary_table(summary: ReplaySummary, source: str) -> Any:
    """A rich table: one row per stream, then the totals and where rejected events went."""
    from rich.markup import escape
    from rich.table import Table

    verb = "would put" if summary.dry_run else "put"
    table = Table(title=escape(f"replay of {source}" + (" (dry run)" if summary.dry_run else "")))
    for column in ("log group", "log stream", "objects", "events", verb, "rejected"):
        table.add_column(column, justify="right" if column not in ("log group", "log stream") else "left")
    for s in sorted(summary.streams.values(), key=lambda s: (s.group, s.stream)):
        table.add_row(escape(s.group), escape(s.stream), str(s.objects), str(s.read), str(s.put), str(s.rejected))
    table.add_section()
    table.add_row("total", f"{len(summary.streams)} streams", str(summary.objects_found),
                  str(summary.events_read), str(summary.events_put), str(summary.events_rejected))
    calls = "PutLogEvents calls needed" if summary.dry_run else "PutLogEvents calls"
    notes = [f"{calls}: {summary.put_calls}", f"throttled: {summary.throttled}",
             f"retries: {summary.retries}", f"objects marked replayed: {summary.objects_replayed}",
             f"objects failed: {summary.objects_failed}"]
    if summary.objects_held:
        from mwaa_logging.aws.s3lease import LEASE_SECONDS

        held = "" if not source.startswith("s3://") else (
            f"; a replay killed on S3 holds its streams {LEASE_SECONDS / 60:g} min after its last renewal")
        notes.append(f"objects skipped, another replay holds them (not replayed: run again later{held}): "
                     f"{summary.objects_held}")
    if summary.objects_skipped > summary.objects_held:
        notes.append("other objects skipped (another replay had replayed them, or as said below): "
                     f"{summary.objects_skipped - summary.objects_held}")
    if summary.objects_left_behind:
        notes.append(f"files a killed writer left unfinished (.tmp): {summary.objects_left_behind}")
    if summary.objects_salvaged:
        notes.append(f"damaged objects, their complete records {'to put' if summary.dry_run else 'put'}: "
                     f"{summary.objects_salvaged} (see below)")
    if summary.rejected_by_reason:
        notes.append("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.rejected_by_reason.items())))
    if summary.export_path:
        notes.append(f"rejected events exported to {summary.export_path}")
    table.caption = escape("; ".join(notes))
    return table


def records_in(paths: Iterable[str | os.PathLike[str]]) -> Iterator[SpillRecord]:
    """Every record of spill or export files (for checking an export)."""
    for path in paths:
        yield from decode_records(Path(path).read_bytes())


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="mwaa-logging replay")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
