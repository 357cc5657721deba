"""boto3 clients for the library: standard AWS configuration, one retry owner, no I/O at creation.

- Region, profile, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`` / ``AWS_ENDPOINT_URL_S3``
  and the rest of the shared config are botocore's, unchanged.
- botocore's own retries are off (``total_max_attempts=1``): the sender decides what to retry.
- Credentials are resolved through botocore's standard chain on the first signed request, not
  when the client is built: a container or instance-metadata lookup is network I/O and must not
  happen in the thread that configures logging.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    ReadOnlyCredentials,
    create_credential_resolver,
)
from botocore.exceptions import NoCredentialsError
from botocore.loaders import Loader, create_loader

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client

#: Seconds to open a TCP/TLS connection.
DEFAULT_CONNECT_TIMEOUT = 3.0
#: Seconds to wait for an answer. A PutLogEvents answer takes well under a second; a timeout
#: makes the call ambiguous (it may have been applied), so this is not set tight.
DEFAULT_READ_TIMEOUT = 10.0
#: Pooled HTTP connections per client (botocore's default is 10).
DEFAULT_MAX_POOL_CONNECTIONS = 16
USER_AGENT_EXTRA = "mwaa-logging"


def make_logs_client(
    boto3_client: CloudWatchLogsClient | None = None,
    profile_name: str | None = None,
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
) -> CloudWatchLogsClient:
    """A CloudWatch Logs client; ``boto3_client`` is returned unchanged when given."""
    if boto3_client is not None:
        return boto3_client
    return _new_client(  # type: ignore[no-any-return]
        "logs", profile_name, region_name, endpoint_url,
        client_config(connect_timeout, read_timeout, max_pool_connections),
    )


def make_s3_client(
    boto3_client: S3Client | None = None,
    profile_name: str | None = None,
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
) -> S3Client:
    """An S3 client built like :func:`make_logs_client`; ``boto3_client`` is returned unchanged."""
    if boto3_client is not None:
        return boto3_client
    return _new_client(  # type: ignore[no-any-return]
        "s3", profile_name, region_name, endpoint_url,
        client_config(connect_timeout, read_timeout, max_pool_connections),
    )


def _new_client(service: str, profile_name: str | None, region_name: str | None, endpoint_url: str | None,
                config: Config) -> Any:
    return _session(profile_name).client(service, region_name=region_name,  # type: ignore[call-overload]
                                         endpoint_url=endpoint_url, config=config)


def client_config(connect_timeout: float, read_timeout: float, max_pool_connections: int) -> Config:
    """botocore ``Config`` for the library's clients: no botocore retries, explicit timeouts."""
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "total_max_attempts": 1},
        user_agent_extra=USER_AGENT_EXTRA,
        tcp_keepalive=True,
    )


def _session(profile_name: str | None) -> boto3.Session:
    core = botocore.session.Session(profile=profile_name)
    core.register_component("data_loader", _shared_loader(core.get_config_variable("data_path")))
    chain = create_credential_resolver(core)
    core.register_component("credential_provider", CredentialResolver([_DeferredChainProvider(chain)]))
    return boto3.Session(botocore_session=core)


@functools.lru_cache(maxsize=4)
def _shared_loader(data_path: str | None) -> Loader:
    """One model loader (and its parsed-model cache) for all our sessions: a new client costs ~1 ms."""
    return create_loader(data_path)


class _DeferredChainProvider(CredentialProvider):  # type: ignore[misc]
    METHOD = "mwaa-logging-deferred-chain"

    def __init__(self, chain: CredentialResolver) -> None:
        super().__init__()
        self._chain = chain

    def load(self) -> Credentials:
        return DeferredChainCredentials(self._chain.load_credentials)


#: After the chain found no credentials, it runs again on a use at least this many seconds later.
RESOLVE_RETRY_SECONDS = 10.0


class DeferredChainCredentials(Credentials):  # type: ignore[misc]
    """Credentials that run the standard chain on first use, then delegate to what it found.

    Delegation keeps the found credentials' own refresh (container, instance, SSO, assume-role).
    No credentials found: that use raises :class:`NoCredentialsError`, like an unsigned client, and the chain
    runs again on a use :data:`RESOLVE_RETRY_SECONDS` later (botocore's instance-metadata provider answers
    "none" when the endpoint fails once: a process must not stay without credentials for its lifetime).
    """

    def __init__(self, resolve: Callable[[], Credentials | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Credentials.__init__ would assign the key attributes; they are properties here.
        self._resolve = resolve
        self._clock = clock
        self._lock = threading.Lock()
        self._next_try = -math.inf
        self._found: Credentials | None = None
        self.method = _DeferredChainProvider.METHOD

    def _credentials(self) -> Credentials:
        with self._lock:
            if self._found is None and self._clock() >= self._next_try:
                self._found = self._resolve()
                if self._found is None:
                    self._next_try = self._clock() + RESOLVE_RETRY_SECONDS
                else:
                    self.method = self._found.method
        if self._found is None:
            raise NoCredentialsError()
        return self._found

    @property
    def access_key(self) -> str:  # type: ignore[override]
        return str(self._credentials().access_key)

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return str(self._credentials().secret_key)

    @property
    def token(self) -> str | None:  # type: ignore[override]
        token: str | None = self._credentials().token
        return token

    @property
    def account_id(self) -> str | None:  # type: ignore[override]
        account_id: str | None = getattr(self._credentials(), "account_id", None)
        return account_id

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self._credentials().get_frozen_credentials()

    def get_deferred_property(self, property_name: str) -> Callable[[], Any]:
        def get_property() -> Any:
            try:
                return getattr(self._credentials(), property_name, None)
            except NoCredentialsError:
                return None

        return get_property


def forget_pooled_connections(client: Any) -> None:
    """Close the pooled connections a client holds (in a forked child they are the parent's sockets).

    Best effort on botocore internals; the child's own ``close`` of an inherited socket leaves the
    parent's connection intact, and the client opens new ones as needed.
    """
    manager = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_manager", None)
    clear = getattr(manager, "clear", None)
    if callable(clear):
        with contextlib.suppress(Exception):
            clear()
