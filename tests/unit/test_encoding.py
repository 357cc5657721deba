"""The direct PutLogEvents encoder against botocore's own serializer, and its edge cases."""

from __future__ import annotations

import gzip
import json
from typing import Any

import botocore.session
import pytest
from botocore import serialize
from hypothesis import given, settings
from hypothesis import strategies as st

from mwaa_logging.aws.encoding import encode_put_log_events, gzip_if_smaller, rejected_info
from mwaa_logging.events import MESSAGE, SIZE, TIMESTAMP, LogEvent, counted_size, make_event
from mwaa_logging.outcome import RejectedInfo

_OPERATION = botocore.session.get_session().get_service_model("logs").operation_model("PutLogEvents")
_BOTOCORE = serialize.create_serializer("json", include_validation=True)

# Valid Unicode text (no lone surrogates), biased towards what breaks encoders.
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\x1f", "\x7f", '"', "\\", "\n", "\t", "\u2028", "\ufeff", "é", "😀"]),
    ),
    min_size=1,
    max_size=60,
)
_EVENTS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2**53), _TEXT), min_size=1, max_size=20
).map(lambda pairs: [make_event(ts, msg, seq) for seq, (ts, msg) in enumerate(sorted(pairs))])
_NAMES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30)


def botocore_body(group: str, stream: str, events: list[LogEvent]) -> bytes:
    """The body botocore's model-driven serializer sends for the same call."""
    params = {
        "logGroupName": group,
        "logStreamName": stream,
        "logEvents": [{"timestamp": e[TIMESTAMP], "message": e[MESSAGE]} for e in events],
    }
    body: bytes = _BOTOCORE.serialize_to_request(params, _OPERATION)["body"]
    return body


def canonical(document: Any) -> bytes:
    """Compact UTF-8 JSON, as our encoder writes it."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@settings(max_examples=200, deadline=None)
@given(group=_NAMES, stream=_NAMES, events=_EVENTS)
def test_body_is_the_botocore_document_byte_for_byte_once_rendered_compactly(
    group: str, stream: str, events: list[LogEvent]
) -> None:
    ours = encode_put_log_events(group, stream, events)
    theirs = botocore_body(group, stream, events)
    assert json.loads(ours) == json.loads(theirs)
    assert ours == canonical(json.loads(theirs))


def test_non_ascii_is_sent_as_utf8_not_escaped() -> None:
    message = "é" * 1000
    body = encode_put_log_events("g", "s", [make_event(1, message, 0)])
    assert message.encode() in body
    # botocore escapes each "é" to six bytes; counted size is 2 bytes per "é".
    assert len(botocore_body("g", "s", [make_event(1, message, 0)])) > len(body) + 3000


def test_control_characters_are_escaped() -> None:
    body = encode_put_log_events("g", "s", [make_event(1, "a\x00b\x1bc\nd", 0)])
    assert b"\\u0000" in body and b"\\u001b" in body and b"\\n" in body
    assert json.loads(body)["logEvents"][0]["message"] == "a\x00b\x1bc\nd"


@pytest.mark.parametrize(
    ("message", "sent"),
    [
        ("a\ud800b", "a\ufffdb"),  # lone high surrogate
        ("\udcff tail", "\ufffd tail"),  # surrogateescape'd byte 0xff
        ("pair \ud83d\ude00", "pair 😀"),  # a surrogate pair is joined, not replaced
    ],
)
def test_lone_surrogates_become_replacement_characters(message: str, sent: str) -> None:
    event = make_event(5, message, 0)
    body = encode_put_log_events("g\ud800", "s", [make_event(1, "fine", 1), event])
    decoded = json.loads(body)
    assert decoded["logGroupName"] == "g\ufffd"
    assert [e["message"] for e in decoded["logEvents"]] == ["fine", sent]
    # The batch was sized with the surrogates: what is sent never counts more than that.
    assert counted_size(sent) <= event[SIZE]


def test_gzip_round_trips_and_is_deterministic() -> None:
    events = [make_event(i, f"line {i} of the task log", i) for i in range(500)]
    body = encode_put_log_events("g", "s", events)
    compressed = gzip_if_smaller(body)
    assert compressed is not None
    assert len(compressed) < len(body) / 5
    assert gzip.decompress(compressed) == body
    assert gzip_if_smaller(body) == compressed


def test_gzip_is_skipped_when_it_does_not_shrink() -> None:
    assert gzip_if_smaller(b'{"a":1}') is None


def test_rejected_info_maps_every_index() -> None:
    response = {
        "rejectedLogEventsInfo": {
            "tooNewLogEventStartIndex": 7,
            "tooOldLogEventEndIndex": 2,
            "expiredLogEventEndIndex": 1,
        }
    }
    assert rejected_info(response) == RejectedInfo(too_new_start=7, too_old_end=2, expired_end=1)


@pytest.mark.parametrize("response", [{}, {"rejectedLogEventsInfo": {}}, {"nextSequenceToken": "x"}])
def test_nothing_rejected_is_none(response: dict[str, Any]) -> None:
    assert rejected_info(response) is None
