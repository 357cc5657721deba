"""Where the demo sends logs: the embedded local AWS, another endpoint, or a real account.

:class:`Target` hides the difference: environment for the task processes, clients for reading back,
and (when the endpoint is ours) its counters, quota and fault controls.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEMO_BUCKET = "mwaa-logging-demo"
#: Inherited variables that would send a run's calls away from the endpoint it was given (see ``Target.task_env``).
REDIRECTING_VARIABLES = frozenset({"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"})
#: How long the preflight waits for an endpoint given with --endpoint-url / --s3-endpoint-url to answer.
PREFLIGHT_TIMEOUT = 3.0


#: How long the probe (one GetLogEvents call) may take to connect, and to read the answer.
PROBE_TIMEOUT = 10.0


#: The stream the probe reads (no task writes it: the answer is ResourceNotFoundException).
PROBE_STREAM = "mwaa-logging-demo-probe"
#: Error codes of a CloudWatch Logs that refuses the caller (credentials or permission), not of another server.
REFUSALS = frozenset({"AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                      "InvalidSignatureException", "ExpiredTokenException", "IncompleteSignatureException"})


class EndpointError(Exception):
    """The endpoint the demo was pointed at cannot be used (a one-line message for the user)."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """``error`` as one line of at most about ``limit`` characters (botocore's messages may carry a whole
    response body, an HTML page, over several)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an endpoint URL (None: it can)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as error:
        return str(error)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL, e.g. http://127.0.0.1:4566"
    return None


def preflight(url: str, option: str, timeout: float = PREFLIGHT_TIMEOUT) -> None:
    """Raise :class:`EndpointError` unless an HTTP(S) server answers at ``url`` within ``timeout`` (with any
    status: an error status or a TLS handshake still says something listens)."""
    problem = url_problem(url)
    if problem is not None:
        raise EndpointError(f"{option} {url}: {problem}")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLError):
            return
        raise EndpointError(f"cannot reach {option} {url}: {error.reason}") from None
    except ssl.SSLError:
        return
    except (OSError, http.client.HTTPException) as error:
        raise EndpointError(f"cannot reach {option} {url}: {str(error) or type(error).__name__}") from None


def _remote_controls(url: str) -> Any:
    """The admin API of the mwaa-logging local endpoint at ``url``, or None when it is another endpoint."""
    from mwaa_logging.testing.admin import AdminError, RemoteLocalAWS

    class Controls(RemoteLocalAWS):
        def put_quota(self) -> float | None:
            """The endpoint's PutLogEvents quota (None: unlimited)."""
            value = self._call("GET", "quota")["quotas"].get("PutLogEvents")
            return None if value is None else float(value)

        def set_put_quota(self, tps: float | None) -> None:
            """Set only the PutLogEvents quota (``set_quota`` would replace the create quotas too)."""
            self._call("POST", "quota", {"PutLogEvents": tps})

        def add_throttle(self, seconds: float) -> int:
            """Throttle every PutLogEvents call for ``seconds``; the id of the rule the endpoint stored."""
            stored = self._call("POST", "faults", {"kind": "throttle", "api": "PutLogEvents", "duration": seconds})
            return int(stored["id"])

    controls = Controls(url, timeout=5)
    try:
        controls.health()
    except (AdminError, OSError, ValueError):  # an error status, no answer in time, not JSON: not ours
        return None
    return controls


@dataclass(frozen=True)
class EndpointCounts:
    """What the endpoint saw (None when it cannot tell: a real account)."""

    put_calls: int
    throttled: int
    events_accepted: int
    bytes_received: int

    def minus(self, other: EndpointCounts) -> EndpointCounts:
        return EndpointCounts(self.put_calls - other.put_calls, self.throttled - other.throttled,
                              self.events_accepted - other.events_accepted,
                              self.bytes_received - other.bytes_received)


class Target:
    """An endpoint the demo runs against; ``controls`` is a LocalAWS or RemoteLocalAWS, or None."""

    def __init__(self, description: str, env: dict[str, str], url: str | None, controls: Any,
                 owned: Any = None) -> None:
        self.description = description
        self.env = env
        self.url = url
        self.controls = controls
        self._owned = owned
        #: Undo what the run changed on an endpoint it does not own (run by :meth:`close`).
        self._restore: list[tuple[str, Callable[[], None]]] = []
        #: Fault rules this run added: id -> when it expires (``time.monotonic()``).
        self._own_faults: dict[int, float] = {}

    @property
    def owned(self) -> bool:
        """The endpoint was started by this run (nobody else calls it: its counters are this run's)."""
        return self._owned is not None

    def task_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment of a process of the run (task, replay): ``environ`` with this target's endpoint
        variables winning. ``MWAA_LOGGING_ENDPOINT_URL`` is dropped (the read-back, through boto3, would not
        follow it); when the target has an endpoint of its own, so are the variables that would send the calls
        elsewhere (``AWS_ENDPOINT_URL*``, ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``); real AWS keeps them (the
        default chain, as the read-back's)."""
        env = {name: value for name, value in environ.items() if name != "MWAA_LOGGING_ENDPOINT_URL"}
        if self.url is not None:
            for name in list(env):
                if name in REDIRECTING_VARIABLES or name.startswith("AWS_ENDPOINT_URL"):
                    del env[name]
        env.update(self.env)
        return env

    @classmethod
    def embedded(cls, quota: float | None) -> Target:
        from mwaa_logging.testing.local_aws import LocalAWS

        aws = LocalAWS(put_quota_tps=quota).start()
        env = {**aws.env(), "AWS_EC2_METADATA_DISABLED": "true"}
        return cls(f"embedded local AWS at {aws.url} (PutLogEvents quota {_tps(quota)})", env, aws.url, aws, aws)

    @classmethod
    def remote(cls, url: str, s3_url: str | None, quota: float | None) -> Target:
        """A running endpoint. Raises :class:`EndpointError` (quickly) when it does not answer.

        When it is a mwaa-logging local endpoint, its PutLogEvents quota is ``quota`` until :meth:`close`,
        which puts back the quota it had, unless someone else changed it meanwhile (then it is left, and said):
        the endpoint's quota is one for all its clients, two runs at once share it."""
        from mwaa_logging.testing.local_aws import FAKE_CREDENTIALS

        preflight(url, "--endpoint-url")
        if s3_url and s3_url != url:
            preflight(s3_url, "--s3-endpoint-url")
        env = {"AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": url, "AWS_ENDPOINT_URL_S3": s3_url or url}
        for name, value in FAKE_CREDENTIALS.items():
            if name not in ("AWS_SESSION_TOKEN",) and not os.environ.get(name):
                env[name] = value
        controls = _remote_controls(url)
        if controls is None:
            return cls(f"endpoint at {url}", env, url, None)
        target = cls(f"mwaa-logging local endpoint at {url} (PutLogEvents quota {_tps(quota)} during the run)",
                     env, url, controls)
        found = controls.put_quota()

        def put_back() -> None:
            now = controls.put_quota()
            if now != quota:  # another client set it since: theirs stays
                print(f"mwaa-logging demo: the PutLogEvents quota of {url} is {_tps(now)}, set by another client "
                      f"during the run: left as is (it was {_tps(found)} before the run)", file=sys.stderr)
                return
            controls.set_put_quota(found)

        target._restore.append((f"put back the PutLogEvents quota of {url} ({_tps(found)})", put_back))
        controls.set_put_quota(quota)
        return target

    @classmethod
    def real_aws(cls) -> Target:
        return cls("real AWS account (default credential chain)", {}, None, None)

    # -- reading back -------------------------------------------------------------------------------

    def logs_client(self) -> Any:
        return self.client("logs")

    def s3_client(self) -> Any:
        return self.client("s3")

    def client(self, service: str, attempts: int = 3, timeout: float | None = None) -> Any:
        """A boto3 client with this target's endpoint and credentials (the default chain for real AWS);
        ``timeout``: for connecting and for each read (else botocore's)."""
        import boto3
        from botocore.config import Config

        env = self.env
        endpoint = env.get("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS" if service == "logs" else "AWS_ENDPOINT_URL_S3")
        session: Any = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            # AWS_REGION too (this botocore reads only AWS_DEFAULT_REGION; the probe's message names both)
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None,
        )
        config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
        if timeout is not None:
            config = config.merge(Config(connect_timeout=timeout, read_timeout=timeout))
        return session.client(service, endpoint_url=endpoint, config=config)

    def probe(self, group: str) -> None:
        """One cheap CloudWatch Logs call before anything starts: ``GetLogEvents`` on a stream of the run's own
        log group ``group`` that does not exist, a call (and a permission) the read-back needs anyway (the library
        makes no ``Describe*`` call; a least-privilege role may not allow one). ResourceNotFoundException is the
        answer of CloudWatch Logs. Raises :class:`EndpointError` (one line) when no region or no credentials are
        configured, when the call is refused, or when the endpoint does not answer as CloudWatch Logs would (an
        HTTP server that is something else)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

        where = self.url or "the real AWS account"
        try:
            self.client("logs", attempts=1, timeout=PROBE_TIMEOUT).get_log_events(
                logGroupName=group, logStreamName=PROBE_STREAM, limit=1)
        except NoRegionError:
            raise EndpointError("no AWS region configured (set AWS_REGION or AWS_DEFAULT_REGION, or a region in the "
                                "AWS config file); no call was made") from None
        except NoCredentialsError:
            raise EndpointError("no AWS credentials found by the default credential chain (environment, AWS config "
                                "files, instance or container role); no call was made") from None
        except ClientError as error:
            code = str((error.response.get("Error") or {}).get("Code") or "")
            if code == "ResourceNotFoundException":
                return  # CloudWatch Logs: no such group or stream (yet)
            if code in REFUSALS:
                raise EndpointError(f"{where} refused GetLogEvents on {group} (the read-back needs it): "
                                    f"{one_line(error)}") from None
            raise EndpointError(f"{where} does not answer as CloudWatch Logs (GetLogEvents): "
                                f"{one_line(error)}") from None
        except BotoCoreError as error:
            raise EndpointError(f"{where} does not answer as CloudWatch Logs (GetLogEvents): "
                                f"{one_line(error)}") from None

    def ensure_bucket(self, bucket: str) -> None:
        with contextlib.suppress(Exception):  # exists already (or the run will say where it spilled)
            self.s3_client().create_bucket(Bucket=bucket)

    # -- endpoint controls (our endpoint only) ---------------------------------------------------

    @property
    def observable(self) -> bool:
        return self.controls is not None

    def counts(self) -> EndpointCounts | None:
        if self.controls is None:
            return None
        stats = self.controls.stats()
        return EndpointCounts(stats.calls.get("PutLogEvents", 0), stats.throttled, stats.events_accepted,
                              stats.bytes_received)

    def throttle_for(self, seconds: float) -> None:
        """Throttle every PutLogEvents call for ``seconds`` (a fault rule on our endpoint, remembered as this
        run's: :meth:`remove_own_faults` removes it)."""
        if self.controls is None:
            return
        expires = time.monotonic() + seconds
        faults: Any = getattr(self.controls, "faults", None)
        if callable(getattr(faults, "throttle_for", None)):
            rule_id = faults.throttle_for(seconds).id  # LocalAWS
        else:
            rule_id = self.controls.add_throttle(seconds)  # RemoteLocalAWS
        self._own_faults[rule_id] = expires

    def _remove_fault(self, rule_id: int) -> None:
        faults: Any = getattr(self.controls, "faults", None)
        if callable(getattr(faults, "remove", None)):
            faults.remove(rule_id)  # LocalAWS
        else:
            self.controls.remove_fault(rule_id)  # RemoteLocalAWS

    def remove_own_faults(self) -> None:
        """Remove the fault rules this run added, and no other (another client's stay in force)."""
        if self.controls is None:
            return
        for rule_id in list(self._own_faults):
            self._remove_fault(rule_id)
            del self._own_faults[rule_id]

    def close(self) -> None:
        """Stop the endpoint we started; undo what the run changed on one we did not (a failure to is
        reported on stderr, not raised)."""
        try:
            self.remove_own_faults()
        except Exception as error:  # the endpoint went away meanwhile: say so, finish closing
            print(f"mwaa-logging demo: could not remove this run's throttle rule from {self.url}: {error}",
                  file=sys.stderr)
        while self._restore:
            what, undo = self._restore.pop()
            try:
                undo()
            except Exception as error:  # the endpoint went away meanwhile: say so, finish closing
                print(f"mwaa-logging demo: could not {what}: {error}", file=sys.stderr)
        if self._owned is not None:
            self._owned.stop()


def _tps(quota: float | None) -> str:
    return "unlimited" if quota is None else f"{quota:g} calls/s"


class Storm:
    """Throttles every PutLogEvents call for ``seconds``, ``delay`` seconds after the tasks start logging.

    ``started()`` says whether they have; ``clock`` is the run's clock, so ``window`` can be charted.
    """

    def __init__(self, target: Target, delay: float, seconds: float, started: Callable[[], bool],
                 clock: Callable[[], float]) -> None:
        self.target = target
        self.delay = delay
        self.seconds = seconds
        self._started = started
        self._clock = clock
        self._cancelled = threading.Event()
        #: (start, end) on the run's clock, once the storm began.
        self.window: tuple[float, float] | None = None
        self._thread = threading.Thread(target=self._run, name="demo-storm", daemon=True)

    def start(self) -> None:
        if self.seconds > 0 and self.target.observable:
            self._thread.start()

    def _run(self) -> None:
        while not self._started():
            if self._cancelled.wait(0.05):
                return
        if self._cancelled.wait(self.delay):
            return
        self.target.throttle_for(self.seconds)
        begin = self._clock()
        self.window = (begin, begin + self.seconds)

    def cancel(self) -> None:
        self._cancelled.set()
        if self._thread.is_alive():
            self._thread.join(5)


@dataclass
class NeighbourCounts:
    put_calls: int = 0
    throttled: int = 0
    accepted: int = 0
    bytes_sent: int = 0

    def as_endpoint_counts(self) -> EndpointCounts:
        return EndpointCounts(self.put_calls, self.throttled, self.accepted, self.bytes_sent)


class Neighbour:
    """Another workload of the same account (a Lambda function, another environment) using part of the
    PutLogEvents quota: ``tps`` calls per second of one small event, counted so the demo can subtract it."""

    GROUP = "/aws/lambda/neighbour"

    def __init__(self, target: Target, tps: float) -> None:
        self.target = target
        self.tps = tps
        self.counts = NeighbourCounts()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-neighbour", daemon=True)
        self._client: Any = None

    def prepare(self) -> None:
        """Create the neighbour's group and stream (before the endpoint's counters are read)."""
        if self.tps <= 0 or not self.target.observable:
            return
        # One attempt per call: the neighbour counts each call and each throttle itself.
        self._client = self.target.client("logs", attempts=1)
        with contextlib.suppress(Exception):
            self._client.create_log_group(logGroupName=self.GROUP)
        with contextlib.suppress(Exception):
            self._client.create_log_stream(logGroupName=self.GROUP, logStreamName="handler")
        self._client.meta.events.register("before-send.cloudwatch-logs.PutLogEvents", self._count_bytes)

    def _count_bytes(self, request: Any, **_: Any) -> None:
        self.counts.bytes_sent += len(request.body or b"")

    def start(self) -> None:
        if self._client is not None:
            self._thread.start()

    def _loop(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        interval = 1.0 / self.tps
        next_call = time.monotonic()
        n = 0
        while not self._stop.wait(max(0.0, next_call - time.monotonic())):
            next_call += interval
            n += 1
            self.counts.put_calls += 1
            try:
                self._client.put_log_events(logGroupName=self.GROUP, logStreamName="handler", logEvents=[
                    {"timestamp": int(time.time() * 1000), "message": f"REPORT RequestId: {n:08d} Duration: 12 ms"}])
                self.counts.accepted += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ThrottlingException":
                    self.counts.throttled += 1
            except BotoCoreError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
