"""Read one stream back as one log: CloudWatch events and spilled events, merged and made whole.

:func:`read_stream` yields :class:`ReadEvent` in timestamp order from

- CloudWatch ``GetLogEvents`` (``startFromHead=True``, paginated until the forward token repeats,
  throttling answered with capped backoff), streamed page by page;
- the spill targets (S3 prefix listing and/or local directory) of that stream.

Then, in this order:

1. **Duplicates** from at-least-once delivery are dropped. They are whole deliveries stored again: an
   ambiguous retry puts a batch twice (CloudWatch gives every event of one PutLogEvents call the same
   ingestion time, the retry another one), a batch may be both delivered and spilled, a spill stored in
   two objects, a replayed spill object read beside its replayed copy in CloudWatch.
   ``dedupe="exact"`` (default): within one millisecond, each message is kept as many times as the one
   delivery that holds it most often, a delivery being a CloudWatch event's ingestion time or a spilled
   event's spill object; so a line logged twice in one millisecond (an ASCII table's border) is kept
   twice when both copies went in one call or one spill object. CloudWatch's copies are kept first, then
   spilled ones, each the earliest in merged order, and what is kept stays in merged order. The cost:
   identical lines of one millisecond sent in different calls (or spilled in different objects) show once;
   two spill objects holding the same lines, replayed together (one PutLogEvents call), show twice.
   ``dedupe="across_sources"`` only drops spilled copies of lines CloudWatch holds (a line is kept
   as many times as the source that has it most often); ``dedupe="off"`` keeps every copy (the parts of
   a split message are put together once).
2. **Split events** (``[mwaa-logging split ...]`` chunks, see :mod:`mwaa_logging.splitting`) are
   reassembled, also when some chunks were delivered and others spilled.

Memory: CloudWatch pages are streamed. Spill objects are read once to learn where they start, and
merged lazily: an object is opened when the merge reaches its first timestamp. Up to
``max_cached_records`` (200,000) records from the first pass are kept; beyond that, objects are read
again when needed, so memory stays bounded by the objects that overlap in time.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import os
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from mwaa_logging.aws.s3spill import S3Object, S3SpillSink
from mwaa_logging.outcome import Outcome, classify_error
from mwaa_logging.retry import Backoff
from mwaa_logging.spill.factory import is_s3_url, local_directory_of
from mwaa_logging.spill.fallback import FallbackSpillSink
from mwaa_logging.spill.layout import REPLAYED_SUFFIX, stream_prefix
from mwaa_logging.spill.leftovers import spill_files
from mwaa_logging.spill.local import LocalSpillSink, default_spill_directories
from mwaa_logging.spillformat import DamagedSpill, Decoded, SpillRecord, salvage_records
from mwaa_logging.splitting import Reassembler
from mwaa_logging.streamnames import sanitize

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client

__all__ = ["CLOUDWATCH", "Dedupe", "ReadEvent", "cloudwatch_events", "drop_duplicates", "merge_sources",
           "read_stream", "reassemble_events", "spilled_events"]

#: ``ReadEvent.source`` of events read from CloudWatch Logs.
CLOUDWATCH = "cloudwatch"
_READ_BACKOFF = Backoff(base=0.5, cap=10.0)
#: Retries when the endpoint cannot be reached at all (refused, no route, name not resolved): a brief blip is ridden
#: out in ~1.5 s; a wrong or down endpoint is said then, not after the ~27 s that throttling's 8 retries take.
CONNECT_RETRIES = 2
_CANNOT_CONNECT = (EndpointConnectionError,)
Dedupe = Literal["exact", "across_sources", "off"]
#: What ``spill_to`` may name: a URL or path, a sink, or several of them.
SpillLocation: TypeAlias = "str | os.PathLike[str] | S3SpillSink | LocalSpillSink | FallbackSpillSink"


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """One event of the merged log. ``source`` is ``"cloudwatch"`` or the spill object it came from."""

    timestamp: int
    message: str
    source: str
    #: CloudWatch ingestion time (ms), for events read from CloudWatch.
    ingestion_time: int | None = None
    #: Why the event was spilled (``SpillReason`` value), for spilled events.
    reason: str | None = None
    #: When the event was spilled (ms), for spilled events whose spill object records it.
    spilled_at: int | None = None

    @property
    def spilled(self) -> bool:
        return self.source != CLOUDWATCH


def read_stream(
    group: str,
    stream: str,
    *,
    logs_client: CloudWatchLogsClient | None = None,
    spill_to: SpillLocation | Sequence[SpillLocation] | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
    dedupe: Dedupe = "exact",
    reassemble: bool = True,
    include_cloudwatch: bool = True,
    s3_client: S3Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_spill_error: SpillErrorHandler | None = None,
) -> Iterator[ReadEvent]:
    """Every event of ``group``/``stream`` in ``[start_time, end_time)`` (ms), merged, deduplicated, whole.

    ``logs_client`` defaults to :func:`mwaa_logging.aws.clients.make_logs_client` (standard AWS config);
    ``spill_to`` names the spill targets to search (``s3://bucket/prefix``, a directory, sinks). Given as a
    URL or path, as in the handler's setting, the handler's last resort is searched too: the default local
    spill directories (where lines go when the target itself fails: the cache one and the temp one), those that
    exist on this machine. ``None`` (the default), like a handler without ``spill_to``, searches
    ``MWAA_LOGGING_SPILL_TO`` when it is set (and those default directories), else those default directories;
    sinks, or an empty list, name exactly where to look.
    ``stream`` may be the name as the handler was given it: it is made the name written to (``:`` and ``*``
    replaced, a name over 512 characters shortened with a hash), as the handler does.
    A missing group or stream reads as no CloudWatch events (spilled ones are still returned).
    A spill location that cannot be listed or read raises, unless ``on_spill_error(location, error)``
    is given: then it is called and the rest of the log is still returned.
    """
    stream = sanitize(stream)  # the name the handler wrote to (':' and '*' replaced, a long name shortened)
    if spill_to is None:  # where a handler without spill_to spills: MWAA_LOGGING_SPILL_TO, else the default
        spill_to = configured_spill_to()
    sources = default_readers() if spill_to is None else spill_readers(spill_to, s3_client=s3_client)
    spilled = spilled_events(sources, group, stream, start_time, end_time, on_error=on_spill_error)
    if include_cloudwatch:
        if logs_client is None:
            from mwaa_logging.aws.clients import make_logs_client

            logs_client = make_logs_client()
        cloud: Iterable[ReadEvent] = cloudwatch_events(
            logs_client, group, stream, start_time=start_time, end_time=end_time, sleep=sleep
        )
    else:
        cloud = ()
    events = drop_duplicates(merge_sources(cloud, spilled), dedupe)
    return reassemble_events(events) if reassemble else events


# -- CloudWatch ------------------------------------------------------------------------------------------


def cloudwatch_events(
    client: CloudWatchLogsClient,
    group: str,
    stream: str,
    *,
    start_time: int | None = None,
    end_time: int | None = None,
    max_retries: int = 8,
    backoff: Backoff = _READ_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> Iterator[ReadEvent]:
    """GetLogEvents from the head, page by page; a missing group or stream reads as empty.

    Throttling and transient errors are retried (capped exponential backoff with full jitter, at most
    ``max_retries`` in a row; an endpoint that cannot be reached at all, at most :data:`CONNECT_RETRIES`); other
    errors raise ``ClientError``/``BotoCoreError``.
    """
    params: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    if start_time is not None:
        params["startTime"] = start_time
    if end_time is not None:
        params["endTime"] = end_time
    token: str | None = None
    while True:
        if token is not None:
            params["nextToken"] = token
        page = _get_page(client, params, max_retries, backoff, sleep, jitter)
        if page is None:
            return
        for event in page.get("events", []):
            timestamp = int(event["timestamp"])
            if end_time is not None and timestamp >= end_time:
                continue  # endTime is exclusive in AWS; some endpoints (moto) include it
            yield ReadEvent(timestamp, event["message"], CLOUDWATCH, ingestion_time=event.get("ingestionTime"))
        next_token = page.get("nextForwardToken")
        if not next_token or next_token == token:
            return
        token = next_token


def _get_page(
    client: CloudWatchLogsClient,
    params: dict[str, Any],
    max_retries: int,
    backoff: Backoff,
    sleep: Callable[[float], None],
    jitter: Callable[[], float],
) -> dict[str, Any] | None:
    state = backoff.reset()
    while True:
        try:
            return client.get_log_events(**params)  # type: ignore[return-value]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            outcome = classify_error(code, status)
            if outcome is Outcome.NO_RESOURCE:
                return None
            if outcome not in (Outcome.THROTTLED, Outcome.TRANSIENT) or state.attempts >= max_retries:
                raise
            state = state.failed(str(code))
        except BotoCoreError as error:
            limit = min(max_retries, CONNECT_RETRIES) if isinstance(error, _CANNOT_CONNECT) else max_retries
            if state.attempts >= limit:
                raise
            state = state.failed(type(error).__name__)
        sleep(state.delay(jitter))


# -- spill -----------------------------------------------------------------------------------------------


#: Loads the records of one spill object (what can be salvaged of a damaged one).
Loader = Callable[[], Decoded]
#: Called with a spill location and the error met reading it.
SpillErrorHandler = Callable[[str, Exception], None]
#: What listing or reading a spill location may raise (network, permissions, missing, corrupt data).
_READ_ERRORS = (ClientError, BotoCoreError, OSError, ValueError, KeyError, EOFError, zlib.error)


class _LocalReader:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.description = str(self.directory)

    def stream_objects(self, group: str, stream: str) -> Iterator[tuple[str, Loader]]:
        folder = self.directory / stream_prefix(group, stream)
        if folder.is_dir():
            for path in spill_files(folder):  # with those a killed writer left unfinished
                yield str(path), functools.partial(_decode_file, path)


def _decode_file(path: Path) -> Decoded:
    """``path``'s records (what can be salvaged of a damaged file); where a replay marked it since it was listed,
    from its ``.replayed`` name."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        try:
            data = path.with_name(path.name + REPLAYED_SUFFIX).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is gone") from None
    return salvage_records(data)


class _S3Reader:
    def __init__(self, sink: S3SpillSink) -> None:
        self.sink = sink
        self.description = sink.description

    def stream_objects(self, group: str, stream: str) -> Iterator[tuple[str, Loader]]:
        for obj in self.sink.stream_objects(group, stream):
            yield obj.url, functools.partial(self._read, obj)

    def _read(self, obj: S3Object) -> Decoded:
        """``obj``'s records; where a replay moved it since it was listed, from under ``@replayed/`` (its lines may
        be in CloudWatch pages this read has passed already)."""
        try:
            return self.sink.salvage_object(obj)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            try:
                return self.sink.salvage_object(S3Object(obj.bucket, self.sink.replayed_key(obj), obj.size))
            except ClientError:
                raise error from None


SpillReader: TypeAlias = "_LocalReader | _S3Reader"


def spill_readers(
    spill_to: SpillLocation | Sequence[SpillLocation], *, s3_client: S3Client | None = None
) -> list[SpillReader]:
    """Readers for every spill target named (a fallback chain counts as all of its targets), plus the default
    local spill directory when a target is named by URL or path (see :func:`read_stream`)."""
    items: Sequence[SpillLocation] = (
        [spill_to] if isinstance(spill_to, (str, os.PathLike, S3SpillSink, LocalSpillSink, FallbackSpillSink))
        else spill_to
    )
    readers = _readers_of(items, s3_client)
    if any(isinstance(item, (str, os.PathLike)) for item in items):
        readers += default_readers(readers)
    return readers


def configured_spill_to() -> str | None:
    """``MWAA_LOGGING_SPILL_TO``, where the handlers of this environment spill when not told otherwise (checked as
    the setting is); None when it is not set."""
    from mwaa_logging.settings import check_spill_to, env_var

    configured = os.environ.get(env_var("spill_to"), "").strip()
    return check_spill_to(configured) if configured else None


def default_readers(listed: Sequence[SpillReader] = ()) -> list[SpillReader]:
    """Readers for the default local spill directories that exist (the handler's last resort, and where a handler
    without ``spill_to`` spills), but those ``listed`` already reads."""
    seen = {Path(r.directory).resolve() for r in listed if isinstance(r, _LocalReader)}
    readers: list[SpillReader] = []
    for fallback in default_spill_directories():
        if fallback.is_dir() and fallback.resolve() not in seen:
            readers.append(_LocalReader(fallback))
            seen.add(fallback.resolve())
    return readers


def _readers_of(items: Sequence[SpillLocation], s3_client: S3Client | None) -> list[SpillReader]:
    readers: list[SpillReader] = []
    for item in items:
        if isinstance(item, FallbackSpillSink):
            readers.extend(_readers_of(item.sinks, s3_client))  # type: ignore[arg-type]
        elif isinstance(item, S3SpillSink):
            readers.append(_S3Reader(item))
        elif isinstance(item, LocalSpillSink):
            readers.append(_LocalReader(item.directory))
        elif is_s3_url(os.fspath(item)):
            readers.append(_S3Reader(S3SpillSink.from_url(os.fspath(item), client=s3_client)))
        else:
            readers.append(_LocalReader(local_directory_of(os.fspath(item))))
    return readers


@dataclass
class _SpillObject:
    location: str
    load: Loader
    first: int
    records: list[SpillRecord] | None


def spilled_events(
    readers: Iterable[SpillReader],
    group: str,
    stream: str,
    start_time: int | None = None,
    end_time: int | None = None,
    *,
    max_cached_records: int = 200_000,
    on_error: SpillErrorHandler | None = None,
) -> Iterator[ReadEvent]:
    """The spilled events of one stream in ``[start_time, end_time)``, sorted by timestamp.

    Each object is read once to learn its earliest timestamp; up to ``max_cached_records`` records are
    kept from that pass, larger spills are read again, one object at a time, when the merge reaches
    them (memory stays bounded, whatever order the objects were written in).
    """

    def in_window(decoded: Decoded) -> list[SpillRecord]:
        kept = [r for r in decoded.records if r.group == group and r.stream == stream
                and (start_time is None or r.timestamp >= start_time)
                and (end_time is None or r.timestamp < end_time)]
        kept.sort(key=_record_order)
        return kept

    def failed(location: str, error: Exception) -> None:
        if on_error is None:
            raise error
        on_error(location, error)

    objects: list[_SpillObject] = []
    cached = 0
    for reader in readers:
        try:
            listed = list(reader.stream_objects(group, stream))
        except _READ_ERRORS as error:
            failed(reader.description, error)
            continue
        for location, load in listed:
            try:
                decoded = load()
            except _READ_ERRORS as error:
                failed(location, error)
                continue
            if decoded.damage is not None:  # said once, on this first read; its complete records are merged
                failed(location, DamagedSpill(decoded.damage))
            if decoded.bad_lines:  # said once too; its other lines are merged
                others = f"; its other {len(decoded.records)} records are read" if decoded.records else ""
                failed(location, ValueError(decoded.bad_lines_said() + others))
            records = in_window(decoded)
            if not records:
                continue
            keep = cached + len(records) <= max_cached_records
            cached += len(records) if keep else 0
            objects.append(_SpillObject(location, load, records[0].timestamp, records if keep else None))
    objects.sort(key=lambda o: o.first)

    def events_of(obj: _SpillObject) -> Iterator[ReadEvent]:
        if obj.records is not None:
            records = obj.records
        else:
            try:
                records = in_window(obj.load())
            except _READ_ERRORS as error:
                failed(obj.location, error)
                return
        obj.records = None  # let the merge release it as it goes
        for r in records:
            yield ReadEvent(r.timestamp, r.message, obj.location, reason=r.reason, spilled_at=r.spilled_at)

    # k-way merge that opens an object only when the merge reaches its earliest timestamp.
    heap: list[tuple[tuple[int, float, int], int, ReadEvent, Iterator[ReadEvent]]] = []
    following = 0
    while heap or following < len(objects):
        while following < len(objects) and (not heap or objects[following].first <= heap[0][0][0]):
            iterator = events_of(objects[following])
            first = next(iterator, None)
            if first is not None:
                heapq.heappush(heap, (event_order(first), following, first, iterator))
            following += 1
        if not heap:  # the last objects were unreadable on their second read (said to on_error)
            break
        _, index, event, iterator = heapq.heappop(heap)
        yield event
        upcoming = next(iterator, None)
        if upcoming is not None:
            heapq.heappush(heap, (event_order(upcoming), index, upcoming, iterator))


def _record_order(record: SpillRecord) -> tuple[int, float]:
    return record.timestamp, math.inf if record.spilled_at is None else record.spilled_at


# -- pure merging ----------------------------------------------------------------------------------------


def event_order(event: ReadEvent) -> tuple[int, float, int]:
    """Where an event goes in the merged log: by timestamp; within one millisecond, a CloudWatch event by its
    ingestion time and a spilled one by when it was spilled (a line spilled during an outage comes before the
    lines of its millisecond delivered after it, and after those delivered before it); unknown times keep
    CloudWatch events first and spilled ones last."""
    if event.source == CLOUDWATCH:
        return event.timestamp, -math.inf if event.ingestion_time is None else event.ingestion_time, 0
    return event.timestamp, math.inf if event.spilled_at is None else event.spilled_at, 1


def merge_sources(*sources: Iterable[ReadEvent]) -> Iterator[ReadEvent]:
    """Merge iterables ordered by :func:`event_order`; at equal keys, earlier sources come first."""
    return heapq.merge(*sources, key=event_order)


def drop_duplicates(events: Iterable[ReadEvent], dedupe: Dedupe = "exact") -> Iterator[ReadEvent]:
    """Drop copies left by at-least-once delivery from timestamp-ordered ``events`` (see module doc)."""
    if dedupe == "off":
        yield from events
        return
    if dedupe not in ("exact", "across_sources"):
        raise ValueError(f"dedupe must be 'exact', 'across_sources' or 'off', not {dedupe!r}")
    for _, same_ms in itertools.groupby(events, key=lambda e: e.timestamp):
        if dedupe == "exact":
            yield from _exact(list(same_ms))
        else:
            yield from _across_sources(list(same_ms))


def _delivery_of(event: ReadEvent) -> tuple[str, int | None]:
    """The delivery that holds ``event``: a CloudWatch event's PutLogEvents call (CloudWatch gives every event of one
    call the same ingestion time; an unknown one counts as one delivery), a spilled event's spill object."""
    if event.source == CLOUDWATCH:
        return CLOUDWATCH, event.ingestion_time
    return event.source, None


def _exact(events: list[ReadEvent]) -> Iterator[ReadEvent]:
    """Keep each message of one millisecond as many times as the delivery that holds it most often: copies come
    from whole deliveries repeated, repeats within one delivery were logged. CloudWatch copies are kept first,
    then spilled ones, each the earliest in merged order; what is kept stays in merged order."""
    per_delivery = Counter((_delivery_of(e), e.message) for e in events)
    wanted: Counter[str] = Counter()
    for (_, message), count in per_delivery.items():
        wanted[message] = max(wanted[message], count)
    in_cloudwatch = Counter(e.message for e in events if not e.spilled)
    cloudwatch_left = Counter({m: min(n, in_cloudwatch[m]) for m, n in wanted.items()})
    spilled_left = wanted - cloudwatch_left
    for event in events:
        left = spilled_left if event.spilled else cloudwatch_left
        if left[event.message] > 0:
            left[event.message] -= 1
            yield event


def _across_sources(events: list[ReadEvent]) -> Iterator[ReadEvent]:
    """Keep each message max(count in CloudWatch, count in spill) times; CloudWatch copies first."""
    in_cloudwatch = Counter(e.message for e in events if not e.spilled)
    for event in events:
        if not event.spilled:
            yield event
        elif in_cloudwatch[event.message] > 0:
            in_cloudwatch[event.message] -= 1
        else:
            yield event


def reassemble_events(events: Iterable[ReadEvent], *, max_held: int = 100_000) -> Iterator[ReadEvent]:
    """Put split events back together (at the first chunk's place, timestamp and source)."""
    reassembler: Reassembler[ReadEvent] = Reassembler(
        lambda e: e.message, lambda e, whole: replace(e, message=whole), max_held=max_held
    )
    for event in events:
        yield from reassembler.feed(event)
    yield from reassembler.finish()
