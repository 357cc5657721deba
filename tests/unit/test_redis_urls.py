"""Redis URLs of rate_limit_scope: what is refused, why it is said, and that a password is never shown."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mwaa_logging.budgets.factory import build_budget, validate_scope
from mwaa_logging.budgets.urls import check_redis_url, hide_credentials, redact
from mwaa_logging.settings import Settings, SettingsError

#: Pieces of every generated password; nothing else in a URL or a message holds them.
MARKERS = ("Qx", "Zk", "Vy")
#: What may sit between them: what ends a URL's user part early ("/", "?", "#") and other specials.
SPECIALS = ("/", "@", "?", "#", ":", "%", " ", "=", "&", "/@")


def passwords(specials: tuple[str, ...] = SPECIALS) -> st.SearchStrategy[str]:
    """marker (special marker)*: every piece a parser could cut out of it holds a marker."""
    tail = st.lists(st.tuples(st.sampled_from(specials), st.sampled_from(MARKERS)), max_size=5)
    return st.builds(lambda first, rest: first + "".join(s + m for s, m in rest), st.sampled_from(MARKERS), tail)


def urls() -> st.SearchStrategy[str]:
    """Redis URLs (good and bad) carrying a generated password, in the user part or as ?password=."""
    host = st.sampled_from(["127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:x", ""])  # no name to resolve
    path = st.sampled_from(["/0", "/zero", "", "/0?foo=bar", "/0?db=-1", "/0?ssl_cert_reqs=none"])
    scheme = st.sampled_from(["redis://", "rediss://", "rediss//", "redis:/"])
    in_user_part = st.builds(lambda s, u, p, h, d: f"{s}{u}:{p}@{h}{d}", scheme,
                             st.sampled_from(["", "admin"]), passwords(), host, path)
    in_query = st.builds(lambda s, h, d, p: f"{s}{h}{d}{'&' if '?' in d else '?'}password={p}", scheme, host, path,
                         passwords(tuple(c for c in SPECIALS if c not in "&#")))  # '&', '#' end a query value
    return st.one_of(in_user_part, in_query)


def shows_a_password(text: str) -> bool:
    return any(marker in text for marker in MARKERS)


def messages(exc: BaseException) -> str:
    """The exception's text and its causes' (a traceback shows them all)."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        seen.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(seen)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    logger = logging.getLogger("mwaa_logging")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://user:S3cr/Ev8@myhost:6379/0", "S3cr/Ev8"),  # urllib ends the user part at the '/'
        ("redis://:S3cr@Ev8@myhost:6379/zero", "S3cr@Ev8"),  # the old pattern stopped at the first '@'
        ("redis://:S3cr?Ev8#Wq4@myhost:6379/0", "S3cr?Ev8#Wq4"),
        ("redis://myhost:6379/zero?password=S3cr@Ev8", "S3cr@Ev8"),
        ("redis://:S3cr@Ev8?Wq4@127.0.0.1:1/0", "S3cr@Ev8?Wq4"),  # it was taken, to connect to host 'Ev8'!
    ],
)
def test_a_refused_url_never_shows_its_password(url: str, secret: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.resolve({"rate_limit_scope": url}, environ={})
    text = messages(raised.value)
    assert "rate_limit_scope" in text
    for piece in (secret, *secret.replace("?", "/").replace("#", "/").replace("@", "/").split("/")):
        assert piece not in text
    assert secret not in hide_credentials(url) and secret not in redact(url)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=urls())
def test_no_generated_password_appears_in_any_error_or_warning(url: str, tmp_path: Path, recorder: Recorder) -> None:
    recorder.lines.clear()
    try:
        Settings.resolve({"rate_limit_scope": url}, environ={})
    except SettingsError as exc:
        assert not shows_a_password(messages(exc)), messages(exc)
    try:
        shared = build_budget(validate_scope(url), rate=10.0, burst=None, directory=tmp_path)
    except ValueError as exc:
        assert not shows_a_password(messages(exc)), messages(exc)
    else:  # a usable URL: nothing listens on 127.0.0.1:1; the warning says the URL
        shared.acquire(time.monotonic())
        assert recorder.lines
    assert not any(shows_a_password(line) for line in recorder.lines), recorder.lines
    assert not shows_a_password(hide_credentials(url)) and not shows_a_password(redact(url))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://myhost:6379/db0", "the path must be /<database number>, got '/db0'"),
        ("redis://myhost:6379/0?db=-1", "the database must be a number >= 0, got -1"),
        ("redis://myhost:0/0", "the port must be from 1 to 65535, got 0"),
        ("redis://user:Pa/ssword@myhost:6379/0", "must be percent-encoded"),
        # redis-py would connect to host 'ret' with password 'Sec' (the author meant 'Sec@ret?client_name=x')
        ("redis://:Sec@ret?client_name=x@redis.internal:6379/0", "must be percent-encoded"),
    ],
)
def test_a_refused_url_says_why(url: str, reason: str) -> None:
    """The setting's message was only "expected 'process', 'host', or a redis://... URL"."""
    with pytest.raises(SettingsError) as raised:
        Settings.resolve({"rate_limit_scope": url}, environ={})
    assert reason in str(raised.value) and "rate_limit_scope" in str(raised.value)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a URL check must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize(
    ("url", "argument"),
    [
        ("redis://myhost:6379/0?ssl_cert_reqs=none", "'ssl_cert_reqs'"),  # a rediss:// argument on redis://
        ("redis://myhost:6379/0?foo=bar", "'foo'"),
        ("unix:///run/redis.sock?db=1&foo=bar", "'foo'"),
        ("rediss://myhost:6379/0?ssl_cert_reqs=sometimes", "Invalid SSL Certificate Requirements Flag"),
        ("redis://myhost:6379/0?protocol=4", "protocol"),
    ],
)
def test_query_arguments_redis_py_refuses_at_the_first_call_are_refused_at_construction(
    no_network: None, url: str, argument: str
) -> None:
    """redis-py raised TypeError at the first connection: no fallback, nothing delivered."""
    with pytest.raises(SettingsError, match="rate_limit_scope") as raised:
        Settings.resolve({"rate_limit_scope": url}, environ={})
    assert argument in str(raised.value)
    with pytest.raises(ValueError, match="rate_limit_scope"):
        build_budget(url, rate=1.0, burst=None)


@pytest.mark.parametrize(
    "url",
    [
        "rediss://myhost:6379/0?ssl_cert_reqs=none",
        "redis://myhost:6379/0?socket_timeout=1&health_check_interval=5&client_name=a%40b",
        "redis://myhost:6379/0?password=p@ss",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_query_arguments_redis_py_takes_are_kept(no_network: None, url: str) -> None:
    check_redis_url(url)
    assert Settings.resolve({"rate_limit_scope": url}, environ={}).rate_limit_scope == url
