"""The CloudWatch Logs transport: pre-encoded (optionally gzip) PutLogEvents bodies through botocore.

botocore keeps everything that is hard to get right: credentials and their refresh, endpoint
resolution, SigV4, the connection pool, TLS, response parsing and modeled errors. Only the
PutLogEvents body is ours. The call goes through ``client.put_log_events`` with a one-event
placeholder (valid under parameter validation, cheap to serialize) and a private parameter that
carries the real body; two handlers on the client's event system move it into place:

- ``provide-client-params.cloudwatch-logs.PutLogEvents`` pops the private parameter into the
  per-call request context (so concurrent calls on one client never see each other's body);
- ``before-call.cloudwatch-logs.PutLogEvents`` swaps the serialized placeholder body for ours
  and sets ``Content-Encoding``. Signing happens after this (``request-created``), so SigV4
  signs the bytes that go on the wire;
- ``needs-retry.cloudwatch-logs.PutLogEvents`` (first in line) answers "no retry" for our calls: the
  sender owns retries and the throttle budget, also on a ``boto3_client`` the caller built with
  botocore's retries on (the Amazon provider's and MWAA's handlers pass one), whose retries would
  otherwise repeat a throttled call up to 4 times behind the budget's back;
- ``before-parse.cloudwatch-logs.PutLogEvents`` flags a 200 whose body is not JSON (a captive portal, a
  proxy's page), which botocore would parse to an empty success.

Calls without the private parameter (the user's own calls on a shared client) are untouched.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from mwaa_logging.aws.encoding import (
    DEFAULT_GZIP_LEVEL,
    encode_put_log_events,
    gzip_if_smaller,
    rejected_info,
)
from mwaa_logging.events import LogEvent
from mwaa_logging.outcome import ALREADY_EXISTS_CODES, CallResult, Outcome, classify_error

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["PUT_LOG_EVENTS_EVENTS", "BotocoreTransport", "Compression"]

logger = logging.getLogger("mwaa_logging.transport")

Compression = Literal["gzip", "none", "auto"]

_BODY_PARAM = "MwaaLoggingEncodedBody"
_CONTEXT_KEY = "mwaa_logging_encoded_body"
_PLACEHOLDER_EVENTS = ({"timestamp": 0, "message": "-"},)
#: Added to a parsed PutLogEvents response whose 200 body was not JSON (see ``_flag_unexpected_body``).
_UNEXPECTED_BODY_KEY = "MwaaLoggingUnexpectedBody"
#: Outcomes that show the endpoint read the request body (a missing stream is named in it).
_READ_THE_BODY = frozenset({Outcome.OK, Outcome.PARTIAL, Outcome.NO_RESOURCE})

#: The botocore events this module hooks (suffixed with the client's hyphenized service id).
PUT_LOG_EVENTS_EVENTS = (
    "provide-client-params.cloudwatch-logs.PutLogEvents",
    "before-call.cloudwatch-logs.PutLogEvents",
    "needs-retry.cloudwatch-logs.PutLogEvents",
    "before-parse.cloudwatch-logs.PutLogEvents",
)


class _GzipState(enum.Enum):
    UNKNOWN = "unknown"  # auto mode, nothing learned yet: a gzip failure is probed with plain
    ACCEPTED = "accepted"  # a gzip body went through: errors are the endpoint's, not gzip's
    REJECTED = "rejected"  # the endpoint cannot read gzip: send plain


#: ``auto`` mode: plain bodies read after refused gzip ones, in a row, before the endpoint is taken to refuse gzip.
PLAIN_READS_TO_FALL_BACK = 2

#: Endpoints found (in this process) to refuse gzip bodies in ``auto`` mode.
_PLAIN_ONLY_ENDPOINTS: set[str] = set()
_PLAIN_ONLY_LOCK = threading.Lock()


def _move_body_into_context(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    payload = params.pop(_BODY_PARAM, None)
    if payload is not None:
        context[_CONTEXT_KEY] = payload


def _swap_in_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    payload = context.get(_CONTEXT_KEY)
    if payload is None:
        return
    body, content_encoding = payload
    params["body"] = body
    if content_encoding:
        params["headers"]["Content-Encoding"] = content_encoding


def _flag_unexpected_body(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """A 200 whose body is not a JSON object, or is empty (botocore would parse it to an empty success): its start
    is added to the parsed response under ``_UNEXPECTED_BODY_KEY``. Bodies are checked, not Content-Type: compatible
    endpoints (moto) answer JSON as ``text/html``."""
    if response_dict.get("status_code") != 200:
        return
    body = response_dict.get("body")
    if isinstance(body, bytes) and not body.lstrip().startswith(b"{"):  # CloudWatch answers {} at least
        customized_response_dict[_UNEXPECTED_BODY_KEY] = body[:100].decode("utf-8", "replace")


def _no_botocore_retry(request_dict: dict[str, Any], **_: Any) -> bool | None:
    """False (not None: botocore takes the first answer that is not None) for our own calls, so that the
    client's retry handler, whatever its mode, does not repeat them; None leaves the user's own calls alone."""
    return False if _CONTEXT_KEY in request_dict.get("context", ()) else None


class BotocoreTransport:
    """:class:`mwaa_logging.protocols.Transport` over a botocore CloudWatch Logs client.

    ``compression``: ``"gzip"`` always compresses (when that shrinks the body), ``"none"`` never,
    ``"auto"`` compresses until the endpoint shows it cannot read gzip: twice in a row, a gzip body refused (a
    5xx, or the request refused as invalid, whatever its code or status; returned as transient, so that the
    sender retries it) and the next call, sent plain, read. Then it sends plain to that endpoint for the rest of
    the process, with one warning. An answer that shows the endpoint read a gzip body (success, a missing
    stream) ends the probing. Each body sent is a call of its own: the sender's budget and backoff apply.
    Never raises for AWS or network errors: every call ends in a :class:`CallResult`.
    """

    def __init__(
        self,
        client: CloudWatchLogsClient,
        *,
        compression: Compression = "auto",
        gzip_level: int = DEFAULT_GZIP_LEVEL,
    ) -> None:
        if compression not in ("gzip", "none", "auto"):
            raise ValueError(f"compression must be 'gzip', 'none' or 'auto', not {compression!r}")
        self._client = client
        self._compression = compression
        self._gzip_level = gzip_level
        self._endpoint = str(client.meta.endpoint_url)
        self._gzip_state = _GzipState.UNKNOWN
        #: auto mode: the next call sends plain, to see whether the endpoint reads what it refused gzipped
        self._probe_plain_next = False
        #: plain probes the endpoint read, each after a refused gzip body (one read gzip body ends the probing)
        self._plain_reads = 0
        self._gzip_failure: CallResult | None = None
        service_id = client.meta.service_model.service_id.hyphenize()
        events = client.meta.events
        events.register(
            f"provide-client-params.{service_id}.PutLogEvents",
            _move_body_into_context,
            unique_id="mwaa_logging.transport.move_body_into_context",
        )
        events.register(
            f"before-call.{service_id}.PutLogEvents",
            _swap_in_body,
            unique_id="mwaa_logging.transport.swap_in_body",
        )
        events.register(
            f"before-parse.{service_id}.PutLogEvents",
            _flag_unexpected_body,
            unique_id="mwaa_logging.transport.flag_unexpected_body",
        )
        events.register_first(
            f"needs-retry.{service_id}.PutLogEvents",
            _no_botocore_retry,  # type: ignore[arg-type]  # botocore uses the answer; the stubs say None
            unique_id="mwaa_logging.transport.no_botocore_retry",
        )

    @property
    def client(self) -> CloudWatchLogsClient:
        return self._client

    @property
    def compressing(self) -> bool:
        """Whether PutLogEvents bodies are gzip-compressed now (when that makes them smaller)."""
        return self._wants_gzip()

    def put_log_events(self, group: str, stream: str, events: Sequence[LogEvent]) -> CallResult:
        body = encode_put_log_events(group, stream, events)
        probing = self._probe_plain_next
        compressed = gzip_if_smaller(body, self._gzip_level) if self._wants_gzip() and not probing else None
        if compressed is None:
            result = self._put(group, stream, body, None)[0]
            if probing:
                self._judge_plain_probe(result)
            return result
        result, status = self._put(group, stream, compressed, "gzip")
        if self._compression != "auto" or self._gzip_state is not _GzipState.UNKNOWN:
            return result
        if result.outcome in _READ_THE_BODY:
            self._gzip_state = _GzipState.ACCEPTED
            return result
        if not _may_be_gzip_rejection(result, status):  # shows nothing either way (a throttle, refused credentials)
            return result
        # The next call (the sender's retry, under its budget and backoff) goes plain: if the endpoint reads
        # that, and does so again after the next gzip failure, it is the compression it refuses.
        self._probe_plain_next, self._gzip_failure = True, result
        if result.outcome is Outcome.INVALID:  # retried plain, not spilled as a request that cannot succeed
            return replace(result, outcome=Outcome.TRANSIENT,
                           message=f"{result.message} (gzip body refused? sent again uncompressed)")
        return result

    def _judge_plain_probe(self, result: CallResult) -> None:
        """``result`` of a plain body sent after a gzip body was refused: two such reads in a row, with no gzip
        body read in between, show the endpoint refuses gzip (one 503 or a proxy's hiccup does not)."""
        self._probe_plain_next = False
        if result.outcome not in _READ_THE_BODY:
            return
        self._plain_reads += 1
        if self._plain_reads >= PLAIN_READS_TO_FALL_BACK and self._gzip_failure is not None:
            self._mark_plain_only(self._gzip_failure)

    def create_log_group(self, group: str, tags: Mapping[str, str] | None = None) -> CallResult:
        if tags:
            return self._create(lambda: self._client.create_log_group(logGroupName=group, tags=dict(tags)))
        return self._create(lambda: self._client.create_log_group(logGroupName=group))

    def create_log_stream(self, group: str, stream: str) -> CallResult:
        return self._create(lambda: self._client.create_log_stream(logGroupName=group, logStreamName=stream))

    def put_retention_policy(self, group: str, days: int) -> CallResult:
        try:
            self._client.put_retention_policy(logGroupName=group, retentionInDays=days)
        except (ClientError, BotoCoreError) as error:
            return _error_result(error, 0)[0]
        return CallResult(Outcome.OK)

    def tag_log_group(self, group: str, tags: Mapping[str, str]) -> CallResult:
        """TagResource on the group's ARN, as watchtower 3.4 does for every group, existing or not. The ARN is read
        with DescribeLogGroups (from the same client and endpoint; watchtower asks STS for the account, from the
        default session): the group named is the first of those its name prefixes."""
        try:
            found = self._client.describe_log_groups(logGroupNamePrefix=group, limit=1).get("logGroups", [])
            if not found or found[0].get("logGroupName") != group:
                return CallResult(Outcome.NO_RESOURCE, error_code="ResourceNotFoundException",
                                  message=f"log group {group} does not exist")
            arn = found[0].get("logGroupArn") or str(found[0].get("arn", "")).removesuffix(":*")
            self._client.tag_resource(resourceArn=arn, tags=dict(tags))
        except (ClientError, BotoCoreError) as error:
            return _error_result(error, 0)[0]
        return CallResult(Outcome.OK)

    def _wants_gzip(self) -> bool:
        if self._compression == "none":
            return False
        if self._compression == "gzip":
            return True
        return self._gzip_state is not _GzipState.REJECTED and self._endpoint not in _PLAIN_ONLY_ENDPOINTS

    def _mark_plain_only(self, gzip_result: CallResult) -> None:
        self._gzip_state = _GzipState.REJECTED
        with _PLAIN_ONLY_LOCK:
            first = self._endpoint not in _PLAIN_ONLY_ENDPOINTS
            _PLAIN_ONLY_ENDPOINTS.add(self._endpoint)
        if first:
            logger.warning(
                "CloudWatch Logs endpoint %s does not accept gzip request bodies (%s %s); "
                "sending uncompressed PutLogEvents to it from now on",
                self._endpoint,
                gzip_result.error_code,
                gzip_result.message,
            )

    def _put(
        self, group: str, stream: str, body: bytes, content_encoding: str | None
    ) -> tuple[CallResult, int]:
        params: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "logEvents": list(_PLACEHOLDER_EVENTS),
            _BODY_PARAM: (body, content_encoding),
        }
        try:
            response = self._client.put_log_events(**params)
        except (ClientError, BotoCoreError) as error:
            return _error_result(error, len(body))
        if (unexpected := response.get(_UNEXPECTED_BODY_KEY)) is not None:
            # botocore parses a body that is not JSON to nothing, and any 200 looks like success: a captive
            # portal, a proxy's page or a wrong endpoint_url would take every line. Retried, then spilled.
            return CallResult(Outcome.TRANSIENT, error_code="UnexpectedAnswer",
                              message=f"HTTP 200 whose body is not a CloudWatch Logs answer (a proxy or a wrong "
                                      f"endpoint_url?): {unexpected!r}", wire_bytes=len(body)), 200
        rejected = rejected_info(response)
        outcome = Outcome.PARTIAL if rejected else Outcome.OK
        return CallResult(outcome, rejected=rejected, wire_bytes=len(body)), 200

    def _create(self, call: Callable[[], object]) -> CallResult:
        try:
            call()
        except (ClientError, BotoCoreError) as error:
            result = _error_result(error, 0)[0]
            if result.error_code in ALREADY_EXISTS_CODES:
                return CallResult(Outcome.OK, error_code=result.error_code, message=result.message)
            return result
        return CallResult(Outcome.OK)


def _error_result(error: ClientError | BotoCoreError, wire_bytes: int) -> tuple[CallResult, int]:
    """Classify a botocore exception; also return the HTTP status (0 when there was no answer)."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        outcome = classify_error(code, status or None)
        return CallResult(outcome, error_code=code, message=message, wire_bytes=wire_bytes), status
    code = type(error).__name__
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return CallResult(Outcome.AUTH, error_code=code, message=str(error)), 0
    if isinstance(error, ParamValidationError):
        return CallResult(Outcome.INVALID, error_code=code, message=str(error)), 0
    if isinstance(error, HTTPClientError):
        # The request was (maybe partly) sent and no answer came back: it may have been applied.
        return CallResult(Outcome.TRANSIENT, error_code=code, message=str(error), ambiguous=True,
                          wire_bytes=wire_bytes), 0
    if isinstance(error, ConnectionError):
        # No connection was made (refused, DNS, connect timeout, TLS handshake): nothing was sent.
        return CallResult(Outcome.TRANSIENT, error_code=code, message=str(error)), 0
    return CallResult(Outcome.TRANSIENT, error_code=code, message=str(error)), 0


def _may_be_gzip_rejection(result: CallResult, status: int) -> bool:
    """An answer an endpoint that cannot read gzip may give: a 5xx, or a refusal of the request itself (any code,
    a bare 400 or 413 from a proxy too), not a throttle, a missing resource or refused credentials."""
    return status >= 500 or (status >= 400 and result.outcome is Outcome.INVALID)


