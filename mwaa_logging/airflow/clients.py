"""boto3 CloudWatch Logs clients for Airflow processes, credentials from Airflow's connection when there is one.

The Amazon provider's ``AwsLogsHook`` resolves ``[logging] remote_log_conn_id`` (the task supervisor
fetches that connection from the API server just before it builds the remote log processors and
before it uploads). Without the provider or the connection, the engine builds its own client
(region from the log group ARN, endpoint from ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`` / settings).
"""

from __future__ import annotations

from typing import Any

from mwaa_logging.aws.clients import DEFAULT_MAX_POOL_CONNECTIONS, client_config


def _hook(region_name: str, conn_id: str | None) -> Any | None:
    """The provider's ``AwsLogsHook`` for an existing connection ``conn_id``, else None."""
    if not conn_id:
        return None
    try:
        from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

        hook = AwsLogsHook(aws_conn_id=conn_id, region_name=region_name)
        hook.get_connection(conn_id)  # raises when the connection does not exist
    except Exception:  # no provider, no connection: the default AWS credential chain applies
        return None
    return hook


def write_client(region_name: str, conn_id: str | None, connect_timeout: float, read_timeout: float) -> Any | None:
    """A client for the engine with the connection's credentials, or None to let the engine build one.

    Built with mwaa-logging's client config (no botocore retries: the engine owns retries).
    """
    hook = _hook(region_name, conn_id)
    if hook is None:
        return None
    try:
        session = hook.get_session(region_name=region_name)
        endpoint_url = getattr(hook.conn_config, "endpoint_url", None)
        return session.client(
            "logs",
            region_name=region_name,
            endpoint_url=endpoint_url,
            config=client_config(connect_timeout, read_timeout, DEFAULT_MAX_POOL_CONNECTIONS),
        )
    except Exception:
        return None


#: How long a read client made without the connection (its lookup failed) is used before the lookup is tried again.
UNSETTLED_READ_CLIENT_SECONDS = 60.0


def read_client_settled(region_name: str, conn_id: str | None, endpoint_url: str | None = None) -> tuple[Any, bool]:
    """A client to read streams back (Airflow UI / REST), via the connection when there is one; and whether it is
    the client this configuration always gives (the connection's, or no connection to use), not the default chain's
    because looking the connection up failed (it may exist later)."""
    wanted = bool(conn_id) and endpoint_url is None
    hook = _hook(region_name, conn_id) if wanted else None
    if hook is not None:
        try:
            return hook.get_conn(), True
        except Exception:
            pass
    import boto3

    client = boto3.session.Session().client("logs", region_name=region_name or None, endpoint_url=endpoint_url)
    return client, not wanted
