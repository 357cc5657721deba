"""A local CloudWatch Logs + S3 endpoint for tests, benchmarks and demos: moto's server behind our rules.

>>> with LocalAWS(put_quota_tps=None) as aws:            # doctest: +SKIP
...     logs = aws.client("logs")
...     aws.faults.inject("unavailable", count=2)
...     aws.stats().calls
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from werkzeug.serving import ThreadedWSGIServer

from mwaa_logging.testing.faults import Faults
from mwaa_logging.testing.middleware import LocalAWSMiddleware
from mwaa_logging.testing.quota import CREATE_QUOTAS, Quotas
from mwaa_logging.testing.stats import Stats, StatsRecorder
from mwaa_logging.testing.store import LogsStore

#: Fake credentials; the endpoint never checks signatures.
FAKE_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_IDLE_SECONDS = 30.0
_account_numbers = itertools.count(1)
_moto_app_lock = threading.Lock()
_moto_app: Any = None
#: One boto3 session for every ``LocalAWS.client``: it caches service models (~80 ms per new session).
_boto3_session: Any = None
_boto3_session_lock = threading.Lock()


def _shared_moto_app() -> Any:
    """One moto dispatcher per process (it only caches per-service Flask apps; storage is global)."""
    global _moto_app
    with _moto_app_lock:
        if _moto_app is None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

            _moto_app = DomainDispatcherApplication(create_backend_app)
        return _moto_app


def _handler_class() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        """moto's request handler without werkzeug's access log (it would configure logging), with keep-alive.

        AWS keeps HTTP connections open between calls, so clients reuse them; werkzeug's development server
        closes every one (it cannot tell where an unread request body ends). Here each request body is read
        whole before the application runs, so the next request on the connection starts where this one ends,
        and the ``Connection: close`` werkzeug sends is dropped. An idle connection is closed after
        ``timeout`` seconds, and at once when the server stops.
        """

        timeout = KEEP_ALIVE_IDLE_SECONDS
        #: Replies go out in several writes: without TCP_NODELAY, the client's delayed ACK holds each
        #: reply on a kept-alive connection for 40 ms.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            self._connection_rfile = self.rfile
            self._keep_alive = False

        def handle_one_request(self) -> None:
            self.rfile, self._keep_alive = self._connection_rfile, False
            super().handle_one_request()

        def make_environ(self) -> Any:
            environ = super().make_environ()
            stream = environ["wsgi.input"]
            if environ.get("wsgi.input_terminated"):  # chunked: the decoder stops at the last chunk
                body = stream.read()
            else:
                body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            # werkzeug reads whatever is left on ``self.rfile`` after the response: nothing is, now
            self.rfile = io.BytesIO()
            self._keep_alive = True
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            if self._keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return
            super().send_header(keyword, value)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

        def log(self, type: str, message: str, *args: Any) -> None:
            pass

        def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
            # Dropped on purpose (or by the client): never read another request from this socket.
            self.close_connection = True

    return QuietHandler


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server that can close every open connection on stop."""

    def __init__(self, host: str, port: int, app: Any, stats: StatsRecorder) -> None:
        super().__init__(host, port, app, handler=_handler_class())
        self._stats = stats
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def log(self, type: str, message: str, *args: Any) -> None:
        pass

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        self._stats.add("connections")
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LocalAWS:
    """CloudWatch Logs + S3 on ``http://127.0.0.1:<port>``, strict like AWS, with quotas and faults.

    ``put_quota_tps``: account-wide PutLogEvents quota (None = unlimited); ``create_quotas``: apply
    AWS's CreateLogStream (50/s) and CreateLogGroup (10/s) quotas. ``account_id``: the moto account
    this endpoint stores into (default: a fresh one per instance, so instances never share data).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        put_quota_tps: float | None = None,
        create_quotas: bool = False,
        account_id: str | None = None,
        region: str = "us-east-1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.account_id = account_id or str(900_000_000_000 + next(_account_numbers))
        self.faults = Faults(clock)
        self.quotas = Quotas(clock)
        self._stats = StatsRecorder(clock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._owner_pid = os.getpid()
        self.set_quota(put_tps=put_quota_tps)
        if create_quotas:
            for api, tps in CREATE_QUOTAS.items():
                self.quotas.set(api, tps)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalAWS:
        """Bind and serve in a background thread; returns self. Idempotent."""
        if self._server is not None:
            return self
        self._stopping.clear()
        app = LocalAWSMiddleware(
            _shared_moto_app(),
            account_id=self.effective_account_id,
            store=self.store,
            faults=self.faults,
            quotas=self.quotas,
            stats=self._stats,
            stopping=self._stopping,
        )
        server = _Server(self.host, self.port, app, self._stats)
        self._server = server
        self._owner_pid = os.getpid()
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01},
            name=f"local-aws-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, release hung requests, close open connections, join every server thread.

        Also forgets the stored logs and objects (read ``events()`` first; ``stats()`` stays).
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        if os.getpid() != self._owner_pid:  # a forked child leaving the `with` block: the server is its parent's
            self._server = self._thread = None  # (shutdown() would wait forever for a thread the child lacks)
            server.socket.close()
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()  # joins the request threads
        if thread is not None:
            thread.join(timeout)
        self._server = None
        self._thread = None
        self.store().drop_account()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> LocalAWS:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- how to reach it -------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalAWS is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address (::1) goes in brackets
        return f"http://{host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a process that should use this endpoint (endpoints + fake credentials)."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,  # what botocore reads
            "AWS_REGION": self.region,  # what other AWS SDKs read
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.url,
            "AWS_ENDPOINT_URL_S3": self.url,
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` on this endpoint (fake credentials unless given)."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        options.update(kwargs)
        global _boto3_session
        with _boto3_session_lock:  # creating clients from one session is not thread-safe
            if _boto3_session is None:
                _boto3_session = boto3.session.Session()
            session: Any = _boto3_session
            return session.client(service, **options)

    # -- control and inspection ----------------------------------------------------------------
    def effective_account_id(self) -> str:
        """The account moto stores into (moto lets ``MOTO_ACCOUNT_ID`` override the request's)."""
        return os.environ.get("MOTO_ACCOUNT_ID") or self.account_id

    def store(self) -> LogsStore:
        return LogsStore(self.effective_account_id())

    def set_quota(
        self,
        put_tps: float | None = None,
        *,
        create_stream_tps: float | None = None,
        create_group_tps: float | None = None,
    ) -> None:
        """Replace the three account-wide quotas, in calls per second (None = unlimited).

        Any other API can be limited too: ``aws.quotas.set("DescribeLogStreams", 25)``.
        """
        self.quotas.set("PutLogEvents", put_tps)
        self.quotas.set("CreateLogStream", create_stream_tps)
        self.quotas.set("CreateLogGroup", create_group_tps)

    def stats(self) -> Stats:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def events(self, group: str, stream: str, region: str | None = None) -> list[tuple[int, str]]:
        """Stored ``(timestamp, message)`` of one stream, in arrival order (no paging)."""
        return self.store().events(group, stream, region)

    def messages(self, group: str, stream: str) -> list[str]:
        return [message for _, message in self.events(group, stream)]

    def streams(self) -> dict[str, list[str]]:
        """Every log group with its streams."""
        return self.store().streams()
