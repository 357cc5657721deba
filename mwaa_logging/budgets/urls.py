"""Redis URLs of ``rate_limit_scope``: checked when the setting is read, redacted for messages.

No redis-py import at module level: the settings import this module, and redis-py is the optional
``redis`` extra.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

_DB_PATH = re.compile(r"(/[0-9]*)?")
#: A ``password`` query argument (redis-py passes it on to the connection), up to the next argument.
_PASSWORD_ARGUMENT = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/*")
_UNEXPECTED_ARGUMENT = re.compile(r"unexpected keyword argument '([^']+)'")


def hide_credentials(text: str) -> str:
    """``text`` (a URL, maybe mistyped) with its credentials shown as ``***``: everything from ``//`` (or the
    scheme) to the last ``@``, since a password may hold ``/``, ``?``, ``#`` or ``@`` (where a URL parser would
    end the user part early and show the rest), and the value of a ``password`` query argument. When in doubt
    (an ``@`` in the query) it hides too much, never too little."""
    text = _PASSWORD_ARGUMENT.sub(r"\1***", text)
    at = text.rfind("@")
    if at < 0:
        return text
    slashes = text.find("//")
    if 0 <= slashes < at:
        start = slashes + 2
    else:
        scheme = _SCHEME.match(text)
        start = scheme.end() if scheme is not None and scheme.end() <= at else 0
    return text[:start] + "***" + text[at:]


def redact(url: str) -> str:
    """``url`` without its password (the user name stays when the URL parses as one), for messages."""
    url = _PASSWORD_ARGUMENT.sub(r"\1***", url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return hide_credentials(url)
    if parts.netloc.count("@") != url.count("@"):  # an '@' past the host part: it may end a password
        return hide_credentials(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def check_redis_url(url: str) -> None:
    """Nothing if ``url`` is a usable ``redis://``, ``rediss://`` or ``unix://`` URL; else ``ValueError``
    saying why, without its credentials.

    redis-py parses it when installed (port, query arguments such as ``?db=``) and builds, without connecting,
    the connection it would open, which refuses query arguments it does not take (``?ssl_cert_reqs=`` on a
    ``redis://`` URL: the first call would raise ``TypeError``). What redis-py quietly ignores is checked here:
    a path that is not ``/<database number>`` (redis-py would use database 0), a missing host or socket path,
    port 0 and a negative database.
    """
    try:
        _check(url)
    except ValueError as exc:
        reason = str(exc)
    else:
        return
    if _split_inside_credentials(url):
        reason = _SPLIT  # the parser's reason would quote a piece of the password ("port 'Pa'", "path '/ss@h/0'")
    password = _password(url)
    if password and len(password) >= 3:
        reason = reason.replace(password, "***")
    raise ValueError(reason) from None


_SPLIT = ("the host part ends before the last '@': a user name or password holding '/', '?' or '#', or an '@' "
          "after the host, must be percent-encoded (%2F, %3F, %23, %40)")


def _split_inside_credentials(url: str) -> bool:
    """True when a URL parser ends the host part before the last ``@`` (which may end a password)."""
    url = _PASSWORD_ARGUMENT.sub(r"\1***", url)
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:
        return "@" in url
    return netloc.count("@") != url.count("@")


def _password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


def _check(url: str) -> None:
    if _split_inside_credentials(url):
        # else it could connect to a host made of a piece of the password (redis://:Sec@ret?client_name=x@host/0
        # is host 'ret'); an '@' in a query value (?password= aside) must be percent-encoded too
        raise ValueError(_SPLIT)
    parts = urllib.parse.urlsplit(url)
    kwargs = _parse(url)
    if parts.scheme == "unix":
        if not kwargs.get("path"):
            raise ValueError("a unix:// URL needs the socket's absolute path: unix:///path/redis.sock?db=0")
    else:
        if not kwargs.get("host"):
            raise ValueError("the URL has no host: redis://host:port/db")
        if parts.port == 0:  # older redis-py versions drop a 0 port instead of passing it on
            raise ValueError("the port must be from 1 to 65535, got 0")
        path = urllib.parse.unquote(parts.path)
        if not _DB_PATH.fullmatch(path):
            raise ValueError(f"the path must be /<database number>, got {path!r}")
    db = kwargs.get("db", 0)
    if not isinstance(db, int) or db < 0:
        raise ValueError(f"the database must be a number >= 0, got {db!r}")
    _build_connection(url, parts.scheme)


def client_options(timeout: float) -> dict[str, Any]:
    """redis-py client keywords of a budget's connection: short timeouts, no retries (it fails fast)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


def _build_connection(url: str, scheme: str) -> None:
    """Build, without connecting, the connection redis-py would open for ``url``; ``ValueError`` if it refuses
    the URL's query arguments. Nothing to do without redis-py (the budget cannot be built then anyway)."""
    try:
        import redis
    except ImportError:
        return
    try:
        pool = redis.ConnectionPool.from_url(url, **client_options(0.1))
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        unexpected = _UNEXPECTED_ARGUMENT.search(str(exc))
        if unexpected is None:
            raise ValueError(f"redis-py refuses its arguments: {exc}") from None
        raise ValueError(f"redis-py takes no query argument {unexpected[1]!r} in a {scheme}:// URL") from None
    except Exception as exc:  # redis-py's own checks: RedisError, ValueError, ...
        raise ValueError(f"redis-py refuses it: {exc}") from None


def _parse(url: str) -> dict[str, Any]:
    """redis-py's reading of ``url`` (``host``, ``port``, ``path``, ``db``, ...), ``ValueError`` if it refuses it."""
    try:
        from redis.connection import parse_url
    except ImportError:
        return _parse_without_redis(url)
    return dict(parse_url(url))


def _parse_without_redis(url: str) -> dict[str, Any]:
    """What :func:`_parse` needs when redis-py is not installed: host, port, socket path, ``?db=``."""
    parts = urllib.parse.urlsplit(url)
    kwargs: dict[str, Any] = {}
    port = parts.port  # ValueError unless an integer from 0 to 65535
    if parts.scheme == "unix":
        if parts.path:
            kwargs["path"] = urllib.parse.unquote(parts.path)
    else:
        if parts.hostname:
            kwargs["host"] = urllib.parse.unquote(parts.hostname)
        if port is not None:
            kwargs["port"] = port
    db = urllib.parse.parse_qs(parts.query).get("db")
    if db:
        kwargs["db"] = int(db[0])  # ValueError unless an integer
    return kwargs
