"""Settings: keywords > MWAA_LOGGING_* > defaults; a bad value names the setting and the accepted form."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from mwaa_logging import errors as mwaa_logging_errors
from mwaa_logging.handler import CloudWatchLogHandler
from mwaa_logging.settings import SPECS, Settings, SettingsError, env_var


def test_keyword_beats_environment_beats_default() -> None:
    env = {"MWAA_LOGGING_MAX_LATENCY": "120", "MWAA_LOGGING_CLOSE_TIMEOUT": "3"}
    settings = Settings.resolve({"max_latency": 60}, environ=env)
    assert settings.max_latency == 60.0
    assert settings.close_timeout == 3.0
    assert settings.send_interval == SPECS["send_interval"].default


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_variable_counts_as_unset(name: str, empty: str) -> None:
    """Compose files and Kubernetes manifests unset a variable by emptying it: MWAA_LOGGING_CLOSE_TIMEOUT= raised,
    while an empty MWAA_LOGGING_SPILL_TO counted as unset."""
    assert Settings.resolve(environ={env_var(name): empty}) == Settings.resolve(environ={})


def test_a_typo_in_a_variable_name_is_said_once_with_the_setting_meant(caplog: pytest.LogCaptureFixture) -> None:
    env = {"MWAA_LOGGING_SPILL_T0": "s3://bucket/spill", "MWAA_LOGGING_PATCH_WATCHTOWER": "1",
           "MWAA_LOGGING_MAX_LATENCY": "60", "MWAA_LOGGING_NOT_A_SETTING_AT_ALL": "1", "OTHER_SPILL_TO": "x"}
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        settings = Settings.resolve(environ=env)
        Settings.resolve(environ=env)
    assert settings.spill_to is None and settings.max_latency == 60
    said = sorted(r.getMessage() for r in caplog.records if r.name == "mwaa_logging")
    assert len(said) == 2, said
    assert said[0].startswith("MWAA_LOGGING_NOT_A_SETTING_AT_ALL is not an mwaa-logging setting and is ignored")
    assert "MWAA_LOGGING_<NAME> for spill_to, max_buffer_bytes" in said[0]
    assert said[1].startswith("MWAA_LOGGING_SPILL_T0 is not an mwaa-logging setting and is ignored; "
                              "did you mean MWAA_LOGGING_SPILL_TO?")


@pytest.mark.parametrize(
    ("name", "raw", "form"),
    [
        ("max_latency", "soon", "a number of seconds > send_interval"),
        ("max_latency", "0", "a number of seconds > send_interval"),
        ("close_timeout", "-1", "a number of seconds from 0 to 86400"),
        ("close_timeout", "1e10", "a number of seconds from 0 to 86400"),
        ("send_interval", "1e9", "a number of seconds from 0 to 86400"),
        ("max_latency", "1e306", "at most 1209600 (14 days)"),
        ("connect_timeout", "1e10", "a number of seconds > 0, at most 3600"),
        ("read_timeout", "inf", "a number of seconds > 0, at most 3600"),
        ("endpoint_url", "not a url", "an http:// or https:// URL"),
        ("endpoint_url", "ftp://127.0.0.1:1", "an http:// or https:// URL"),
        ("spill_to", "s3:///prefix", "s3://bucket/prefix"),
        ("spill_to", "s3://my bucket/prefix", "'my bucket' is no S3 bucket name"),
        ("spill_to", "s3://logs:443/prefix", "'logs:443' is no S3 bucket name"),
        ("spill_to", "s3://ab/prefix", "'ab' is no S3 bucket name"),
        ("spill_to", "s3://logs/prefix?versionId=1", "takes no ?query or #fragment"),
        ("spill_to", "s3://logs/prefix#part", "takes no ?query or #fragment"),
        ("spill_to", "file://relative/dir", "file:///absolute/path"),  # the host part was dropped: /dir
        ("spill_to", "file://", "file:///absolute/path"),  # spilled into the working directory
        ("spill_to", "file:///tmp/spill?mode=1", "takes no ?query or #fragment"),
        ("region_name", "eu_west_1", "an AWS region name"),
        ("region_name", "eu-west-1 x", "an AWS region name"),
        ("max_buffer_bytes", "12.5", "an integer number of bytes"),
        ("max_batch_count", "10001", "an integer from 1 to 10000"),
        ("max_batch_size", "2000000", "an integer from 128 to 1048576"),
        ("max_batch_size", "100", "an integer from 128 to 1048576"),
        ("compression", "brotli", "'auto', 'gzip' or 'none'"),
        ("rate_limit_scope", "fleet", "'process', 'host', or a redis://, rediss:// or unix:// Redis URL"),
        ("spill_to", "ftp://x", "a directory path, a file:// URL or s3://bucket/prefix"),
        ("spill_marker", "maybe", "true or false"),
        ("put_rate_limit", "nan", "calls per second"),
        ("spill_s3_expected_bucket_owner", "12345678901", "an AWS account id (12 digits)"),
        ("spill_s3_expected_bucket_owner", "arn:aws:iam::123456789012:root", "an AWS account id (12 digits)"),
        ("spill_s3_expected_bucket_owner", "1234-5678-901x", "an AWS account id (12 digits)"),
        ("spill_s3_expected_bucket_owner", "\uff11" * 12, "an AWS account id (12 digits)"),  # fullwidth digits
    ],
)
def test_bad_values_raise_naming_the_setting_and_the_form(name: str, raw: str, form: str) -> None:
    with pytest.raises(SettingsError) as from_env:
        Settings.resolve({}, environ={env_var(name): raw})
    message = str(from_env.value)
    assert name in message and form in message and env_var(name) in message
    with pytest.raises(SettingsError, match=name):
        Settings.resolve({name: raw}, environ={})


def test_the_smallest_max_batch_size_still_holds_a_chunk_of_any_split_message() -> None:
    """A message larger than one event is split into chunks whose header takes up to 58 bytes (nine-digit chunk
    numbers): the smallest batch accepted must hold such a chunk with some payload, else the sender cannot split."""
    from mwaa_logging.limits import EVENT_OVERHEAD_BYTES
    from mwaa_logging.splitting import split_message

    smallest = Settings.resolve({"max_batch_size": 128}, environ={}).max_batch_size
    with pytest.raises(SettingsError, match="max_batch_size"):
        Settings.resolve({"max_batch_size": smallest - 1}, environ={})
    room = smallest - EVENT_OVERHEAD_BYTES
    assert room - len("[mwaa-logging split 0123456789abcdef 000000001/999999999] ") >= 4
    pieces = split_message("é" * 5_000 + "x" * 300, max_bytes=room)
    assert all(len(piece.encode()) <= room for piece in pieces)


def test_unknown_keyword_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting.*spil_to"):
        Settings.resolve({"spil_to": "/tmp/x"}, environ={})


def test_max_latency_must_leave_room_for_the_send_interval() -> None:
    with pytest.raises(SettingsError, match=r"max_latency.*send_interval"):
        Settings.resolve({"send_interval": 10, "max_latency": 5}, environ={})
    with pytest.raises(SettingsError, match=r"max_latency=1\.0 \(from MWAA_LOGGING_MAX_LATENCY\).*send_interval "
                                            r"\(2\.0, its default\)"):
        Settings.resolve({}, environ={"MWAA_LOGGING_MAX_LATENCY": "1"})
    with pytest.raises(SettingsError, match=r"max_latency=100\.0 \(from MWAA_LOGGING_MAX_LATENCY\).*send_interval "
                                            r"\(120\.0\)"):
        Settings.resolve({"send_interval": 120}, environ={"MWAA_LOGGING_MAX_LATENCY": "100"})


@pytest.mark.parametrize("source", ["keyword", "environment"])
def test_a_long_send_interval_stretches_the_default_max_latency(source: str) -> None:
    """watchtower accepts send_interval=600; as a drop-in we must too, so an unset max_latency follows it."""
    given = {"send_interval": 600} if source == "keyword" else {}
    env = {} if source == "keyword" else {"MWAA_LOGGING_SEND_INTERVAL": "600"}
    settings = Settings.resolve(given, environ=env)
    assert (settings.send_interval, settings.max_latency) == (600.0, 1200.0)
    assert Settings.resolve({"send_interval": 60}, environ={}).max_latency == SPECS["max_latency"].default
    assert Settings.resolve({"send_interval": 600, "max_latency": 900}, environ={}).max_latency == 900.0


def test_values_are_parsed_to_their_types() -> None:
    settings = Settings.resolve({}, environ={
        "MWAA_LOGGING_MAX_BUFFER_BYTES": "8_388_608", "MWAA_LOGGING_SPILL_MARKER": "off",
        "MWAA_LOGGING_PUT_RATE_LIMIT": "250", "MWAA_LOGGING_RATE_LIMIT_SCOPE": "redis://10.0.0.1:6379/2",
        "MWAA_LOGGING_SPILL_S3_TAGS": "team=data,env=prod", "MWAA_LOGGING_SPILL_TO": "s3://bucket/prefix",
    })
    assert settings.max_buffer_bytes == 8_388_608
    assert settings.spill_marker is False
    assert settings.put_rate_limit == 250.0
    assert settings.rate_limit_scope == "redis://10.0.0.1:6379/2"
    assert settings.spill_s3_tags == {"team": "data", "env": "prod"}
    assert settings.spill_to == "s3://bucket/prefix"


@pytest.mark.parametrize(("raw", "said"), [
    ("cost=a&b", "'a&b'"),  # S3 answers InvalidTag to the first spill, in the outage that needed it
    ("team=data,owner=me;you", "'me;you'"),
    ("aws:team=data", "'aws:team'"),  # the aws: prefix is reserved
    ("k" * 129 + "=v", "128"),
    ("k=" + "v" * 257, "256"),
    (",".join(f"k{i}=v" for i in range(11)), "10 tags"),
    ("team=a,team=b", "'team' given twice"),  # was kept as team=b, silently
])
def test_spill_s3_tags_that_s3_would_refuse_are_refused_at_construction(raw: str, said: str) -> None:
    with pytest.raises(SettingsError, match="spill_s3_tags") as refused:
        Settings.resolve({}, environ={"MWAA_LOGGING_SPILL_S3_TAGS": raw})
    assert said in str(refused.value)
    assert "expected key=value pairs separated by commas" in str(refused.value)


@pytest.mark.parametrize(("raw", "kept"), [("123456789012", "123456789012"), (" 1234-5678-9012 ", "123456789012")])
def test_an_account_id_as_the_console_shows_it_is_sent_as_s3_wants_it(raw: str, kept: str) -> None:
    """S3 answers 403 to an ExpectedBucketOwner that is not 12 digits: every spill would go to the local disk."""
    assert Settings.resolve({"spill_s3_expected_bucket_owner": raw}, environ={}).spill_s3_expected_bucket_owner == kept


def test_spill_s3_tags_s3_accepts_are_kept() -> None:
    raw = "team=data eng,path=/a/b:c,mail=x@y.z,plus=a+b-c_d,équipe=données,empty="
    assert Settings.resolve({"spill_s3_tags": raw}, environ={}).spill_s3_tags == {
        "team": "data eng", "path": "/a/b:c", "mail": "x@y.z", "plus": "a+b-c_d", "équipe": "données", "empty": ""}


def test_every_setting_has_a_spec_and_a_field() -> None:
    assert set(Settings.names()) == set(SPECS)


BAD_REDIS_URLS = [
    "redis://127.0.0.1:46379/abc",  # redis-py alone would quietly use database 0
    "redis://127.0.0.1:46379/1/2",
    "redis://127.0.0.1:46379/-1",
    "redis://127.0.0.1:46379/?db=-1",
    "redis://cache:6379/0?db=x",
    "redis://:6379/0",  # no host
    "redis:///0",
    "rediss://cache:notaport/0",
    "redis://cache:99999/0",
    "redis://cache:0/0",
    "unix://",  # no socket path
    "unix:///run/redis.sock?db=x",
]
GOOD_REDIS_URLS = [
    "redis://10.0.0.1:6379/2",
    "redis://cache",
    "redis://cache:6379/",
    "rediss://user:secret@cache:6380/0",
    "redis://[::1]:6379/0?db=3",
    "unix:///run/redis.sock",
    "unix:///run/redis.sock?db=1",
]


@pytest.fixture(params=["redis-py", "urllib"])
def url_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """With redis-py (the dev environment has the extra) and as if the redis extra were not installed."""
    if request.param == "urllib":
        monkeypatch.setitem(sys.modules, "redis", None)
        monkeypatch.setitem(sys.modules, "redis.connection", None)
    return str(request.param)


@pytest.mark.parametrize("url", BAD_REDIS_URLS)
def test_a_bad_redis_url_is_refused_naming_rate_limit_scope(url_parser: str, url: str) -> None:
    with pytest.raises(SettingsError, match="rate_limit_scope") as raised:
        Settings.resolve({"rate_limit_scope": url}, environ={})
    assert isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(SettingsError, match="MWAA_LOGGING_RATE_LIMIT_SCOPE"):
        Settings.resolve({}, environ={env_var("rate_limit_scope"): url})


@pytest.mark.parametrize("url", GOOD_REDIS_URLS)
def test_a_good_redis_url_is_kept_as_given(url_parser: str, url: str) -> None:
    assert Settings.resolve({"rate_limit_scope": url}, environ={}).rate_limit_scope == url


def test_the_handler_refuses_a_bad_redis_url_when_it_is_built() -> None:
    with pytest.raises(SettingsError, match=r"rate_limit_scope='redis://127\.0\.0\.1:46379/abc'"):
        CloudWatchLogHandler(log_group_name="g", rate_limit_scope="redis://127.0.0.1:46379/abc")


def test_redis_py_parses_the_url_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis.connection

    seen: list[str] = []
    parse_url = redis.connection.parse_url

    def spy(url: str) -> Any:
        seen.append(url)
        return parse_url(url)

    monkeypatch.setattr(redis.connection, "parse_url", spy)
    Settings.resolve({"rate_limit_scope": "redis://cache:6379/1"}, environ={})
    assert seen and set(seen) == {"redis://cache:6379/1"}  # also when it builds the connection it would open
    with pytest.raises(SettingsError, match="rate_limit_scope") as raised:  # its query-argument checks apply
        Settings.resolve({"rate_limit_scope": "redis://cache:6379/1?socket_timeout=soon"}, environ={})
    assert "socket_timeout" in str(raised.value.__cause__)


def test_a_password_in_a_refused_url_is_not_repeated_in_the_error() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.resolve({"rate_limit_scope": "rediss://app:s3cret@cache:6379/x"}, environ={})
    assert "s3cret" not in str(refused.value) and "rediss://***@cache:6379/x" in str(refused.value)


@pytest.mark.parametrize(("argument", "value"), [
    ("boto3_client", 5),
    ("log_group_tags", "a=b"),
    ("log_group_tags", {"k": 1}),
    ("log_group_tags", {"": "v"}),
    ("log_group_tags", {f"k{i}": "v" for i in range(51)}),
    ("log_group_retention_days", 2),
    ("log_group_retention_days", True),
])
def test_watchtower_arguments_cloudwatch_would_refuse_later_are_refused_naming_them(argument: str,
                                                                                     value: object) -> None:
    from mwaa_logging.build import check_watchtower_arguments

    given = {"boto3_client": None, "log_group_tags": None, "log_group_retention_days": None, argument: value}
    with pytest.raises(SettingsError, match=f"invalid setting {argument}="):
        check_watchtower_arguments(given["boto3_client"], given["log_group_tags"], given["log_group_retention_days"])
    check_watchtower_arguments(None, {"team": "data"}, 14)  # what CloudWatch takes passes


@pytest.mark.parametrize(("argument", "value"), [
    ("create_log_group", "sometimes"), ("use_queues", "nein"), ("create_log_stream", 2),
    ("create_log_stream", None), ("json_serialize_default", 5), ("json_serialize_default", "str"),
])
def test_watchtower_flags_and_serializers_that_would_do_something_else_are_refused(argument: str,
                                                                                   value: object) -> None:
    """A flag that is no yes/no would count as true or false by accident (watchtower reads any text as true; ours
    takes "no" and "False" as meant); a serializer that is not a function failed on the first record it was needed
    for."""
    import mwaa_logging

    with pytest.raises(SettingsError, match=f"invalid setting {argument}="):
        mwaa_logging.CloudWatchLogHandler(log_group_name="g", region_name="us-east-1", **{argument: value})


def test_flush_and_close_timeouts_are_bounded_waits() -> None:
    from mwaa_logging.settings import MAX_WAIT_SECONDS, wait_timeout

    assert wait_timeout(None) is None and wait_timeout(2) == 2.0 and wait_timeout(-1) == -1.0
    assert wait_timeout(float("inf")) == wait_timeout(1e300) == MAX_WAIT_SECONDS
    for bad in (float("nan"), "5", True):
        with pytest.raises(ValueError, match="timeout must be a number"):
            wait_timeout(bad)  # type: ignore[arg-type]


def test_a_spill_directory_under_home_is_expanded_and_a_non_path_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/airflow")
    assert Settings.resolve({"spill_to": "~/spill"}, environ={}).spill_to == "/home/airflow/spill"
    assert Settings.resolve({}, environ={"MWAA_LOGGING_SPILL_TO": "~/spill"}).spill_to == "/home/airflow/spill"
    with pytest.raises(SettingsError, match="invalid setting spill_to=5"):
        Settings.resolve({"spill_to": 5}, environ={})


@pytest.mark.parametrize(("arguments", "error", "named"), [
    ({"create_log_group": "sometimes"}, SettingsError, "invalid setting create_log_group="),
    ({"create_log_stream": 2}, SettingsError, "invalid setting create_log_stream="),
    ({"log_stream_name": 123}, SettingsError, "invalid setting log_stream_name=123"),
    ({"boto3_profile_name": "p", "boto3_client": object()}, mwaa_logging_errors.WatchtowerError, "not both"),
])
def test_open_stream_checks_its_arguments_as_the_handler_does(arguments: dict[str, object], error: type[Exception],
                                                              named: str) -> None:
    """open_stream took "false" as true (the group was created) and any value at all; a stream name that is not a
    string failed with an AttributeError."""
    from mwaa_logging import open_stream

    given: dict[str, Any] = {"log_stream_name": "s", **arguments}
    with pytest.raises(error, match=named):
        open_stream("g", region_name="us-east-1", **given)


def test_open_stream_reads_text_flags_as_a_config_file_means_them() -> None:
    from mwaa_logging import open_stream

    stream = open_stream("g", "s", region_name="us-east-1", create_log_group="false", create_log_stream="no")
    destination = stream._channel.destination
    assert (destination.create_log_group, destination.create_log_stream) == (False, False)
    stream.close(0)


def test_what_only_building_a_handler_refused_is_checked_where_integrations_are_configured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 2 builds its inner handlers at each task's set_context: a spill_to of /dev/null, or a Redis scope
    without redis-py, passed startup and then failed every task before it ran."""
    import importlib.util

    from mwaa_logging.build import check_buildable

    with pytest.raises(SettingsError, match="invalid setting spill_to='/dev/null'"):
        check_buildable(Settings.resolve({"spill_to": "/dev/null"}, environ={}))
    redis_scope = Settings.resolve({"rate_limit_scope": "redis://:s3cret@cache:6379/0"}, environ={})
    check_buildable(redis_scope)  # redis-py is installed here
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real_find_spec(name))
    with pytest.raises(SettingsError, match=r"invalid setting rate_limit_scope=.*needs redis-py") as refused:
        check_buildable(redis_scope)
    assert "s3cret" not in str(refused.value)
    check_buildable(Settings.resolve({"rate_limit_scope": "host", "spill_to": "/tmp/x/y"}, environ={}))
