"""Spill objects anyone who may write the bucket can put there: read back and replay say which object is wrong and
go on, and never hold more than a bounded amount of it in memory."""

from __future__ import annotations

import gzip
import resource
import zlib
from typing import Any

from mwaa_logging.aws.s3spill import MAX_READ_BYTES, S3SpillSink
from mwaa_logging.reader import read_stream
from mwaa_logging.replay import Replayer, open_source
from mwaa_logging.spill.layout import stream_prefix
from mwaa_logging.testing.local_aws import LocalAWS

BUCKET = "crafted-spill"
PREFIX = "p/" + stream_prefix("g", "s")
GOOD = b'{"logGroupName":"g","logStreamName":"s","timestamp":1,"message":"good","reason":"max_latency"}\n'


def gzip_bomb(mib: int) -> bytes:
    """``mib`` MiB of zero bytes, gzip level 9: about 1 KB per MiB."""
    compressor = zlib.compressobj(9, wbits=31)
    return b"".join(compressor.compress(b"\0" * (1 << 20)) for _ in range(mib)) + compressor.flush()


def plant(local_aws: LocalAWS) -> Any:
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "1-bomb.jsonl.gz", Body=gzip_bomb(MAX_READ_BYTES // (1 << 20) * 4))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "2-null.jsonl.gz", Body=gzip.compress(GOOD.replace(b"1", b"null")))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "3-list.jsonl.gz", Body=gzip.compress(b"[1, 2]\n"))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "4-good.jsonl.gz", Body=gzip.compress(GOOD))
    return s3


def test_read_back_says_each_crafted_object_and_returns_the_rest(local_aws: LocalAWS) -> None:
    """A line with ``"timestamp": null`` or a JSON array raised TypeError out of read_stream, also with
    on_spill_error (Airflow's log view of the task failed, naming no object); a gzip bomb (400 KB) took 2x its
    expanded size in memory (805 MiB for 400 MiB)."""
    s3 = plant(local_aws)
    said: dict[str, str] = {}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    events = read_stream("g", "s", spill_to=S3SpillSink(BUCKET, "p", client=s3), include_cloudwatch=False,
                         on_spill_error=lambda where, error: said.update({where: str(error)}))
    read = [event.message for event in events]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert read == ["good"]
    where = f"s3://{BUCKET}/{PREFIX}"
    assert said == {
        where + "1-bomb.jsonl.gz": f"expands beyond {MAX_READ_BYTES} bytes: not a spill object (a gzip bomb?)",
        where + "2-null.jsonl.gz": "line 1 is not a spill record: timestamp is not a number: None",
        where + "3-list.jsonl.gz": "line 1 is not a spill record: expected a JSON object, got list",
    }
    assert grown_mib < 2 * MAX_READ_BYTES / (1 << 20)


def test_replay_counts_each_crafted_object_as_failed_with_its_name(local_aws: LocalAWS) -> None:
    s3 = plant(local_aws)
    summary = Replayer(None, None, dry_run=True).run(open_source(f"s3://{BUCKET}/p", s3_client=s3))
    assert (summary.events_read, summary.objects_failed) == (1, 3)
    assert [error.split(": ", 1)[0] for error in summary.errors] == [
        f"read s3://{BUCKET}/{PREFIX}{name}.jsonl.gz" for name in ("1-bomb", "2-null", "3-list")]
