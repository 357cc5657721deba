"""WSGI middleware in front of moto's server: what moto lacks to behave like CloudWatch Logs.

Per request: admin routes (``/_local_aws/...``) -> gzip body decoding -> stats -> faults -> quota ->
strict PutLogEvents (validated here, stored straight into moto's models) or moto for everything else (after the
group/stream name and retention checks moto lacks).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import orjson

from mwaa_logging.testing.cloudwatch_rules import RuleViolation, check_names, check_structure, check_times
from mwaa_logging.testing.faults import FaultKind, FaultRule, Faults
from mwaa_logging.testing.quota import Quotas
from mwaa_logging.testing.stats import StatsRecorder
from mwaa_logging.testing.store import LogsStore, ResourceNotFound

#: gzip bodies are read with ISA-L when it is installed (the ``fast`` extra): about a third of zlib's time,
#: which keeps the endpoint's own CPU small on the machine it shares with the client it serves.
_gzip: Any = gzip
_GZIP_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
try:
    from isal import igzip, isal_zlib

    _gzip = igzip
    _GZIP_ERRORS = (*_GZIP_ERRORS, isal_zlib.error)  # type: ignore[arg-type]
except ImportError:  # pragma: no cover - isal is optional
    pass

ADMIN_PREFIX = "/_local_aws/"
LOGS_TARGET_PREFIX = "Logs_20140328."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class CloseWithoutReply(ConnectionError):
    """Raised by the app to make werkzeug's server close the connection without answering."""


def _respond(
    start_response: StartResponse, status: str, body: bytes, content_type: str = JSON_CONTENT_TYPE
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000"),
        ],
    )
    return [body]


def aws_error(start_response: StartResponse, status: str, error_type: str, message: str) -> list[bytes]:
    """An AWS JSON-protocol error answer."""
    return _respond(start_response, status, orjson.dumps({"__type": error_type, "message": message}))


def s3_error(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    """An S3 (REST-XML protocol) error answer."""
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return _respond(start_response, status, body.encode(), "application/xml")


def throttled(start_response: StartResponse, is_logs: bool) -> list[bytes]:
    if is_logs:
        return aws_error(start_response, "400 Bad Request", "ThrottlingException", "Rate exceeded")
    return s3_error(start_response, "503 Slow Down", "SlowDown", "Please reduce your request rate.")


def unavailable(start_response: StartResponse, is_logs: bool) -> list[bytes]:
    if is_logs:
        return aws_error(
            start_response, "503 Service Unavailable", "ServiceUnavailableException",
            "The service is unavailable. Please try again later.",
        )
    return s3_error(
        start_response, "503 Service Unavailable", "ServiceUnavailable", "Service is unable to handle request."
    )


def denied(start_response: StartResponse, is_logs: bool, api: str) -> list[bytes]:
    """What IAM answers a call the caller's policy does not allow."""
    message = f"User: arn:aws:iam::123456789012:user/local is not authorized to perform: {api}"
    if is_logs:
        return aws_error(start_response, "400 Bad Request", "AccessDeniedException", message)
    return s3_error(start_response, "403 Forbidden", "AccessDenied", message)


def region_of(environ: dict[str, Any]) -> str:
    """Region from the SigV4 credential scope (``Credential=KEY/DATE/REGION/SERVICE/aws4_request``)."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        return scope.split("/")[2]
    except IndexError:
        return "us-east-1"


def api_of(environ: dict[str, Any]) -> str:
    """API name of a request: the JSON ``X-Amz-Target`` operation, else ``service:METHOD``."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        return target.rsplit(".", 1)[-1]
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    service = "unknown"
    with contextlib.suppress(IndexError):
        service = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")[3]
    return f"{service}:{environ.get('REQUEST_METHOD', 'GET')}"


def _required_name(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise RuleViolation(
            f"1 validation error detected: Value at '{key}' failed to satisfy constraint: Member must not be null"
        )
    return value


#: GetLogEvents answers at most this much: "as many log events as can fit in a response size of 1 MB" (counted
#: here as PutLogEvents counts a batch: UTF-8 bytes + 26 an event), and at least one event.
GET_PAGE_BYTES = 1_048_576


def cap_get_log_events_page(answer: dict[str, Any], forward: bool) -> dict[str, Any]:
    """``answer`` (moto's GetLogEvents page, up to 10,000 events whatever their size) cut to one 1 MB page as AWS
    answers it, its token moved to the first event left out: the head of the page reading forward, the tail
    reading backward (moto's tokens are ``f/<last index>`` and ``b/<first index>``)."""
    events = answer.get("events") or []
    size = kept = 0
    for event in events if forward else reversed(events):
        size += len(str(event.get("message", "")).encode("utf-8", "surrogatepass")) + 26
        if kept and size > GET_PAGE_BYTES:
            break
        kept += 1
    if kept == len(events):
        return answer
    try:
        if forward:
            first = int(str(answer["nextBackwardToken"])[2:])
            return {**answer, "events": events[:kept], "nextForwardToken": f"f/{first + kept - 1:056d}"}
        last = int(str(answer["nextForwardToken"])[2:])
        return {**answer, "events": events[len(events) - kept:], "nextBackwardToken": f"b/{last - kept + 1:056d}"}
    except (KeyError, ValueError):
        return answer  # not moto's token format: leave the page whole


def exclusive_end_time(body: bytes) -> bytes:
    """GetLogEvents ``endTime`` is exclusive in AWS, inclusive in moto: ask moto for ``endTime - 1``."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    end_time = request.get("endTime") if isinstance(request, dict) else None
    if type(end_time) is not int:
        return body
    request["endTime"] = end_time - 1
    return orjson.dumps(request)


class LocalAWSMiddleware:
    """The WSGI app served by :class:`~mwaa_logging.testing.local_aws.LocalAWS`."""

    def __init__(
        self,
        moto_app: WSGIApp,
        *,
        account_id: Callable[[], str],
        store: Callable[[], LogsStore],
        faults: Faults,
        quotas: Quotas,
        stats: StatsRecorder,
        stopping: threading.Event,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._moto_app = moto_app
        self._account_id = account_id
        self._store = store
        self.faults = faults
        self.quotas = quotas
        self.stats = stats
        self._stopping = stopping
        self._now_ms = wall_clock_ms

    # -- dispatch ---------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(ADMIN_PREFIX):
            return self._admin(environ, start_response)
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self._account_id()
        api = api_of(environ)
        is_logs = environ.get("HTTP_X_AMZ_TARGET", "").startswith(LOGS_TARGET_PREFIX)
        body = b""
        if is_logs:
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.stats.add("bytes_received", len(raw))
            body = raw
            if "gzip" in environ.get("HTTP_CONTENT_ENCODING", "").lower():
                self.stats.add("gzip_bodies")
                try:
                    body = _gzip.decompress(raw)
                except _GZIP_ERRORS:
                    self.stats.call(api)
                    return aws_error(
                        start_response, "400 Bad Request", "SerializationException",
                        "Content-Encoding gzip, but the body is not valid gzip",
                    )
                del environ["HTTP_CONTENT_ENCODING"]
            else:
                self.stats.add("plain_bodies")
            if api == "GetLogEvents":
                body = exclusive_end_time(body)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        else:
            self.stats.add("bytes_received", int(environ.get("CONTENT_LENGTH") or 0))
        self.stats.call(api)

        decision = self.faults.decide(api)
        if decision.delay > 0:
            self.stats.add("delayed")
            self._stopping.wait(decision.delay)
        kind = decision.kind
        if kind is FaultKind.THROTTLE:
            self.stats.add("throttled")
            return throttled(start_response, is_logs)
        if kind is FaultKind.UNAVAILABLE:
            self.stats.add("unavailable")
            return unavailable(start_response, is_logs)
        if kind is FaultKind.DENIED:
            self.stats.add("denied")
            return denied(start_response, is_logs, api)
        if kind is FaultKind.DROP:
            self.stats.add("dropped")
            raise CloseWithoutReply("injected: connection dropped")
        if kind is FaultKind.HANG:
            self.stats.add("hung")
            while not (self._stopping.is_set() or self.faults.cleared.is_set()):
                self.faults.cleared.wait(0.05)
            raise CloseWithoutReply("injected: hang released")

        if not self.quotas.admit(api):
            self.stats.add("throttled")
            self.stats.add("throttled_by_quota")
            return throttled(start_response, is_logs)

        if api == "PutLogEvents" and is_logs:
            result: Iterable[bytes] = self._put_log_events(body, region_of(environ), start_response)
        elif api == "GetLogEvents" and is_logs and kind is not FaultKind.LOST_REPLY:
            result = self._get_log_events(environ, body, start_response)
        elif is_logs and (refused := self._refused_names(api, body)) is not None:
            return aws_error(start_response, "400 Bad Request", refused.error_type, refused.message)
        else:
            result = self._moto_app(environ, start_response)
        if kind is FaultKind.LOST_REPLY:
            self.stats.add("lost_replies")
            for _ in result:  # let moto finish its work, then answer nothing
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise CloseWithoutReply("injected: reply lost")
        return result

    def _refused_names(self, api: str, body: bytes) -> RuleViolation | None:
        """The violation of a name or retention AWS would refuse in this call (moto accepts them), else None."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # moto answers it
        try:
            check_names(api, request if isinstance(request, dict) else {})
        except RuleViolation as violation:
            self.stats.invalid(f"{violation.error_type}: {violation.message}")
            return violation
        return None

    # -- GetLogEvents ------------------------------------------------------------------------
    def _get_log_events(self, environ: dict[str, Any], body: bytes, start_response: StartResponse) -> list[bytes]:
        """moto's answer, cut to AWS's 1 MB page (moto pages by count only)."""
        answered: list[Any] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answered[:] = [status, headers]
            return lambda _data: None

        result = self._moto_app(environ, keep)
        try:
            raw = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = answered
        try:
            request, answer = orjson.loads(body), orjson.loads(raw)
        except orjson.JSONDecodeError:
            request = answer = None
        if not (status.startswith("200") and isinstance(request, dict) and isinstance(answer, dict)):
            start_response(status, headers)
            return [raw]
        token = request.get("nextToken")
        forward = str(token).startswith("f/") if token else bool(request.get("startFromHead"))
        page = orjson.dumps(cap_get_log_events_page(answer, forward))
        start_response(status, [(k, v) for k, v in headers if k.lower() != "content-length"]
                       + [("Content-Length", str(len(page)))])
        return [page]

    # -- PutLogEvents ------------------------------------------------------------------------
    def _put_log_events(self, body: bytes, region: str, start_response: StartResponse) -> list[bytes]:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.stats.invalid("SerializationException: Invalid JSON")
            return aws_error(start_response, "400 Bad Request", "SerializationException", "Invalid JSON")
        if not isinstance(request, dict):
            request = {}
        try:
            group = _required_name(request, "logGroupName")
            stream = _required_name(request, "logStreamName")
            check_names("PutLogEvents", request)
            timestamps, messages = check_structure(request.get("logEvents"))
            store = self._store()
            log_stream, retention_days = store.find_stream(region, group, stream)
            now_ms = self._now_ms()
            verdict = check_times(timestamps, now_ms, retention_days)
        except RuleViolation as violation:
            self.stats.invalid(f"{violation.error_type}: {violation.message}")
            return aws_error(start_response, "400 Bad Request", violation.error_type, violation.message)
        except ResourceNotFound as missing:
            self.stats.add("not_found")
            return aws_error(start_response, "400 Bad Request", "ResourceNotFoundException", str(missing))
        start, end = verdict.accept_start, verdict.accept_end
        token = store.append(log_stream, timestamps[start:end], messages[start:end], now_ms)
        self.stats.add("puts_ok")
        self.stats.add("events_accepted", end - start)
        self.stats.add("events_rejected", len(timestamps) - (end - start))
        answer: dict[str, Any] = {"nextSequenceToken": token}
        rejected = verdict.rejected_info()
        if rejected:
            answer["rejectedLogEventsInfo"] = rejected
        return _respond(start_response, "200 OK", orjson.dumps(answer))

    # -- admin API ---------------------------------------------------------------------------
    def _admin(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        route = environ.get("PATH_INFO", "")[len(ADMIN_PREFIX):].strip("/")
        query = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            payload = orjson.loads(environ["wsgi.input"].read(length)) if length else {}
            answer = self._admin_route(method, route, query, payload)
        except (ValueError, KeyError, TypeError) as error:
            return _respond(start_response, "400 Bad Request", orjson.dumps({"error": str(error)}),
                            "application/json")
        except ResourceNotFound as missing:
            return _respond(start_response, "404 Not Found", orjson.dumps({"error": str(missing)}),
                            "application/json")
        if answer is None:
            return _respond(start_response, "404 Not Found", orjson.dumps({"error": f"no route {route}"}),
                            "application/json")
        return _respond(start_response, "200 OK", orjson.dumps(answer), "application/json")

    def _admin_route(self, method: str, route: str, query: dict[str, str], payload: Any) -> Any:
        if route == "health":
            return {"ok": True, "account_id": self._account_id()}
        if route == "stats":
            if method == "DELETE":
                self.stats.reset()
            return self.stats.snapshot().to_json()
        if route == "faults":
            if method == "POST":
                return self.faults.add(FaultRule.from_json(payload)).to_json()
            if method == "DELETE":
                if "id" in query:  # one rule (another client's stay), else all
                    self.faults.remove(int(query["id"]))
                else:
                    self.faults.clear()
            return {"faults": [rule.to_json() for rule in self.faults.rules()]}
        if route == "quota":
            if method == "POST":
                for api, tps in dict(payload).items():
                    self.quotas.set(str(api), None if tps is None else float(tps))
            return {"quotas": self.quotas.limits()}
        if route == "events":
            events = self._store().events(query["group"], query["stream"], query.get("region"))
            return {"events": events}
        if route == "streams":
            return {"groups": self._store().streams(query.get("region"))}
        return None
