"""Drop-in for watchtower: same constructor arguments, same exports, no network in __init__."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import watchtower

import mwaa_logging
from mwaa_logging.testing.local_aws import LocalAWS
from tests.waiting import wait_until


def test_every_watchtower_argument_is_accepted() -> None:
    ours = inspect.signature(mwaa_logging.CloudWatchLogHandler.__init__).parameters
    theirs = inspect.signature(watchtower.CloudWatchLogHandler.__init__).parameters
    assert set(theirs) - set(ours) == set()


def test_watchtower_names_are_exported() -> None:
    for name in ("CloudWatchLogHandler", "CloudWatchLogFormatter", "WatchtowerWarning", "WatchtowerError"):
        assert hasattr(mwaa_logging, name)


def test_construction_makes_no_aws_call(local_aws: LocalAWS) -> None:
    client = boto3.client("logs", endpoint_url=local_aws.url)
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="g", boto3_client=client, log_group_retention_days=7, log_group_tags={"a": "b"},
        send_interval=60, max_batch_size=500_000, max_batch_count=100, max_message_size=10_000,
        create_log_group=True, create_log_stream=True, use_queues=True)
    assert local_aws.stats().calls == {}
    handler.close()


def test_group_is_created_with_tags_and_retention_on_first_send(local_aws: LocalAWS) -> None:
    client = boto3.client("logs", endpoint_url=local_aws.url)
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="tagged", log_stream_name="s", boto3_client=client, log_group_retention_days=7,
        log_group_tags={"team": "data"}, send_interval=0.1)
    logger = logging.getLogger("tagged")
    logger.addHandler(handler)
    logger.warning("hello")
    assert handler.flush(10)
    group = client.describe_log_groups(logGroupNamePrefix="tagged")["logGroups"][0]
    assert group["retentionInDays"] == 7
    assert client.list_tags_log_group(logGroupName="tagged")["tags"] == {"team": "data"}
    logger.removeHandler(handler)
    handler.close()


def test_cwl_client_is_the_client_that_sends(local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    """watchtower's ``cwl_client``: callers read their streams back with it (``handler.cwl_client.get_log_events``)."""
    given = boto3.client("logs", endpoint_url=local_aws.url)
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="read-back", log_stream_name="s", boto3_client=given)
    assert handler.cwl_client is given
    handler.close(timeout=0)
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="read-back", log_stream_name="s", send_interval=0.1)
    logger = logging.getLogger("read-back")
    logger.addHandler(handler)
    try:
        logger.warning("read me back")
        assert handler.flush(10)
        events = handler.cwl_client.get_log_events(logGroupName="read-back", logStreamName="s")["events"]
        assert [e["message"] for e in events] == ["read me back"]
    finally:
        logger.removeHandler(handler)
        handler.close(timeout=0)


def test_client_settings_a_given_client_ignores_are_said(local_aws: LocalAWS, caplog: pytest.LogCaptureFixture) -> None:
    """Under the shim the provider and MWAA always pass boto3_client: MWAA_LOGGING_READ_TIMEOUT and the like cannot
    apply to it, and the operator who set them must learn it."""
    given = boto3.client("logs", endpoint_url=local_aws.url)
    with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="given", boto3_client=given, read_timeout=2.5,
                                                    endpoint_url="http://127.0.0.1:9")
    handler.close(timeout=0)
    assert handler.cwl_client is given and given.meta.config.read_timeout != 2.5
    said = [r.getMessage() for r in caplog.records if r.name == "mwaa_logging"]
    assert said == ["endpoint_url='http://127.0.0.1:9', read_timeout=2.5 not applied: CloudWatch Logs calls use the "
                    "boto3_client given, with its own endpoint and timeouts"], said


def test_bad_arguments_fail_at_construction_with_the_setting_named() -> None:
    with pytest.raises(mwaa_logging.SettingsError, match="log_group_name"):
        mwaa_logging.CloudWatchLogHandler(log_group_name="bad group name!")
    with pytest.raises(mwaa_logging.SettingsError, match="max_latency"):
        mwaa_logging.CloudWatchLogHandler(max_latency="later")
    with pytest.raises(mwaa_logging.SettingsError, match="log_stream_name"):
        mwaa_logging.CloudWatchLogHandler(log_stream_name="{nope}")
    with pytest.raises(mwaa_logging.SettingsError, match="log_stream_name"):
        mwaa_logging.CloudWatchLogHandler(log_stream_name=["a list"])  # type: ignore[arg-type]
    with pytest.raises(mwaa_logging.WatchtowerError):
        mwaa_logging.CloudWatchLogHandler(boto3_client=object(), boto3_profile_name="p")


@pytest.mark.parametrize(("arguments", "named"), [
    ({"use_queues": "maybe"}, "use_queues='maybe': expected True or False"),
    ({"create_log_stream": None}, "create_log_stream=None: expected True or False"),
    ({"log_group_retention_days": "8"}, "log_group_retention_days=8: expected one of CloudWatch's retention periods"),
    ({"log_group_retention_days": 7.5}, "log_group_retention_days=7.5: expected a whole number of days"),
    ({"log_group_retention_days": "7.5"}, "log_group_retention_days='7.5': expected a whole number of days"),
    ({"log_group_retention_days": 8.0}, "log_group_retention_days=8: expected one of CloudWatch's retention periods"),
    ({"log_group_retention_days": "seven"}, "log_group_retention_days='seven': expected one of CloudWatch's"),
    ({"endpoint_url": "http://127.0.0.1:99999"}, "endpoint_url='http://127.0.0.1:99999': expected an http:// or "
                                                 "https:// URL (its port is not a number from 0 to 65535)"),
    ({"spill_to": "/dev/null"}, "spill_to='/dev/null': '/dev/null' is not a directory"),
    ({"spill_to": "file:///dev/null/spill"}, "spill_to='file:///dev/null/spill': '/dev/null' is not a directory"),
])
def test_values_that_only_failed_later_fail_at_construction(arguments: dict[str, Any], named: str) -> None:
    """A port above 65535 failed every PutLogEvents call (retried, then spilled); a spill_to under a file failed at
    the first spill of an outage (lines went to the default directory)."""
    with pytest.raises(mwaa_logging.SettingsError) as refused:
        mwaa_logging.CloudWatchLogHandler(log_group_name="g", **{"endpoint_url": "http://127.0.0.1:9", **arguments})
    assert named in str(refused.value)


@pytest.mark.parametrize("spill_to", ["/tmp/" + "x" * 300 + "/spill", "file://LOCALHOST/tmp/mwaa-spill"])
def test_a_spill_to_that_cannot_be_looked_at_from_here_is_taken(spill_to: str) -> None:
    """Only a spill_to that is certainly no directory is refused: a name too long to look at (or a parent this
    process may not read, as in an Airflow component that never spills) raised a bare OSError."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", endpoint_url="http://127.0.0.1:9",
                                                spill_to=spill_to)
    handler.close(timeout=0)


def test_a_config_files_text_for_yes_no_arguments_and_retention_days_is_taken_as_meant() -> None:
    """``dictConfig`` from a file passes every value as text: ``"false"`` means False (watchtower would take it as
    true), ``"7"`` seven days; both were refused."""
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="g", log_stream_name="s", endpoint_url="http://127.0.0.1:9", use_queues="false",
        create_log_group="no", create_log_stream="1", log_group_retention_days="7")
    try:
        assert handler.use_queues is False
        destination = handler._channel.destination
        assert (destination.create_log_group, destination.create_log_stream,
                destination.log_group_retention_days) == (False, True, 7)
    finally:
        handler.close(timeout=0)


def test_dictconfig_style_construction_with_level() -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", level=logging.WARNING)
    assert handler.level == logging.WARNING
    handler.close()


def test_missing_region_fails_at_construction_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "MWAA_LOGGING_REGION_NAME"):
        monkeypatch.delenv(name, raising=False)
    registered = len(logging._handlerList)  # type: ignore[attr-defined]
    with pytest.raises(mwaa_logging.SettingsError, match=r"region_name.*AWS_DEFAULT_REGION") as failure:
        mwaa_logging.CloudWatchLogHandler(log_group_name="g")
    # nothing half-built is left for logging.shutdown() to flush at exit, even while the traceback
    # (which holds the half-built object) is alive, as it is when the error reaches the top level
    assert failure.tb is not None
    assert len(logging._handlerList) == registered  # type: ignore[attr-defined]
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", region_name="eu-west-1")
    handler.close(timeout=0)


#: CPython keeps an instance's attributes as inline values (loads specialized per attribute, no dict lookup) while
#: its class has at most this many attribute names (``SHARED_KEYS_MAX_SIZE``); ``emit`` reads a dozen of them per
#: record (see ``CloudWatchLogHandler``'s docstring; ``benchmarks/bench_instructions.py`` counts the cost).
INLINE_ATTRIBUTES_MAX = 30


def test_the_objects_emit_reads_keep_their_attributes_inline() -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="s", endpoint_url="http://127.0.0.1:9")
    try:
        handler.log_stream_name = "other"  # the setter Airflow calls per line must not materialize __dict__ either
        for obj in (handler, handler._channel, handler.formatter):
            assert len(vars(obj)) <= INLINE_ATTRIBUTES_MAX, (type(obj).__name__, sorted(vars(obj)))
    finally:
        handler.close(timeout=0)


@pytest.mark.parametrize("fmt", [None, "%(message)s", "%(levelname)s %(message)s"])
def test_record_message_is_set_as_watchtower_sets_it(fmt: str | None) -> None:
    """MWAA's handlers call the inner handler's ``emit`` and then read ``record.message`` (its error metrics):
    like watchtower (through ``logging.Formatter``), every formatter path of ours leaves it set."""
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name="s", endpoint_url="http://127.0.0.1:9")
    theirs = watchtower.CloudWatchLogFormatter(fmt)
    try:
        if fmt is not None:
            handler.setFormatter(mwaa_logging.CloudWatchLogFormatter(fmt))
        for args in ((), ("psycopg2.OperationalError",)):
            msg = "failed: %s" if args else "failed"
            record = logging.LogRecord("airflow.task", logging.ERROR, __file__, 1, msg, args, None)
            expected = logging.LogRecord("airflow.task", logging.ERROR, __file__, 1, msg, args, None)
            theirs.format(expected)
            handler.emit(record)
            assert record.message == expected.message
    finally:
        handler.close(timeout=0)


@pytest.mark.parametrize(("new", "old"), [("log_group_name", "log_group"), ("log_stream_name", "stream_name")])
def test_a_deprecated_name_with_its_new_name_is_refused_as_watchtower_refuses_it(new: str, old: str) -> None:
    """watchtower 3.4 raises WatchtowerError when both are given; the deprecated one was used silently."""
    arguments = {new: "explicit", old: "old"}
    with pytest.raises(watchtower.WatchtowerError) as theirs:
        watchtower.CloudWatchLogHandler(**arguments)  # raises before it builds a client
    with pytest.raises(mwaa_logging.WatchtowerError) as ours:
        mwaa_logging.CloudWatchLogHandler(endpoint_url="http://127.0.0.1:9", **arguments)
    assert str(ours.value) == str(theirs.value) == f"Both {new} and deprecated {old} parameter specified"


def test_a_deprecated_name_alone_or_with_the_default_new_name_is_used_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning) as warned:
        handler = mwaa_logging.CloudWatchLogHandler(log_group_name="watchtower", log_group="old",
                                                    stream_name="s", endpoint_url="http://127.0.0.1:9")
    assert [str(w.message) for w in warned] == ["Please use log_group_name instead of log_group",
                                                "Please use log_stream_name instead of stream_name"]
    try:
        assert (handler.log_group_name, handler.log_stream_name) == ("old", "s")
    finally:
        handler.close(timeout=0)


@pytest.mark.parametrize(("given", "days"), [(7.0, 7), ("7.0", 7), (" 14 ", 14), (0, None), (0.0, None), ("0", None)])
def test_a_whole_number_of_retention_days_is_taken_as_that_int(given: object, days: int | None,
                                                                local_aws: LocalAWS) -> None:
    """7.0 passed the construction check (7.0 == 7) and failed every PutRetentionPolicy in the sender with a
    ParamValidationError; 0 is no policy, as watchtower sets none for a falsy value."""
    client = boto3.client("logs", endpoint_url=local_aws.url)
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="whole-days", log_stream_name="s", boto3_client=client,
                                                log_group_retention_days=given, send_interval=0.1)
    logger = logging.getLogger("whole-days")
    logger.addHandler(handler)
    try:
        assert handler.log_group_retention_days == days and type(handler.log_group_retention_days) is type(days)
        logger.warning("kept for a week")
        assert handler.flush(10)
        group = client.describe_log_groups(logGroupNamePrefix="whole-days")["logGroups"][0]
        assert group.get("retentionInDays") == days
        assert handler.stats().delivered == 1
    finally:
        logger.removeHandler(handler)
        handler.close(timeout=0)


@pytest.mark.parametrize("template", ["{logger_name:d}", "{thread_name:%Y}", "{process_id:%Y}",
                                      "{strftime:%Y}/{logger_name!x}", "{machine_name}/{logger_name:>{width}}"])
def test_a_stream_template_no_record_can_render_is_refused_at_construction(template: str) -> None:
    """It was accepted, and every record then went to the handler's fallback stream with a note."""
    with pytest.raises(mwaa_logging.SettingsError, match=r"invalid setting log_stream_name="):
        mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name=template,
                                          endpoint_url="http://127.0.0.1:9")


@pytest.mark.parametrize("template", ["{strftime:%Y-%m-%d}/{logger_name}", "{process_id}", "{strftime:%H:%M}",
                                      "{machine_name:.5}/{thread_name:>10}/{process_id:08d}", "plain"])
def test_stream_templates_records_can_render_are_taken(template: str) -> None:
    handler = mwaa_logging.CloudWatchLogHandler(log_group_name="g", log_stream_name=template,
                                                endpoint_url="http://127.0.0.1:9")
    handler.close(timeout=0)


def _log_one(handler: mwaa_logging.CloudWatchLogHandler, name: str, line: str) -> None:
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        logger.warning(line)
        assert handler.flush(10)
    finally:
        logger.removeHandler(handler)


def test_an_existing_group_gets_the_retention_and_tags_as_with_watchtower(local_aws: LocalAWS) -> None:
    """watchtower 3.4 calls PutRetentionPolicy and TagResource in its constructor for a group that exists too; they
    were only applied when we created the group (retention None here). The sender applies them before its first
    put, the constructor still makes no call."""
    client = boto3.client("logs", endpoint_url=local_aws.url)
    client.create_log_group(logGroupName="existing")
    client.tag_log_group(logGroupName="existing", tags={"owner": "ops"})
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="existing", log_stream_name="s", boto3_client=client, log_group_retention_days=14,
        log_group_tags={"team": "a"}, send_interval=0.1)
    try:
        assert local_aws.stats().calls.get("PutRetentionPolicy") is None
        _log_one(handler, "existing-group", "hello")
        # (before the put when the process's CreateLogGroup budget has a token, else as soon as it has one)
        wait_until(lambda: _retention(client, "existing") == 14)
        wait_until(lambda: client.list_tags_log_group(logGroupName="existing")["tags"] == {"owner": "ops",
                                                                                           "team": "a"})
        calls = local_aws.stats().calls
        _log_one(handler, "existing-group", "again")  # once per handler
        assert local_aws.stats().calls.get("PutRetentionPolicy") == calls.get("PutRetentionPolicy") == 1
        assert local_aws.stats().calls.get("TagResource") == calls.get("TagResource") == 1
        assert local_aws.messages("existing", "s") == ["hello", "again"]
    finally:
        handler.close(timeout=0)


def test_a_refused_retention_policy_loses_no_line_and_is_said_once(local_aws: LocalAWS,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client("logs", endpoint_url=local_aws.url)
    client.create_log_group(logGroupName="no-policy-rights")
    local_aws.faults.inject("denied", api="PutRetentionPolicy")
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="no-policy-rights", log_stream_name="s", boto3_client=client, log_group_retention_days=7,
        send_interval=0.1)
    try:
        with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
            for line in ("one", "two", "three"):
                _log_one(handler, "no-policy-rights", line)
            wait_until(lambda: local_aws.stats().calls.get("PutRetentionPolicy") == 1)
            _log_one(handler, "no-policy-rights", "four")
        assert local_aws.messages("no-policy-rights", "s") == ["one", "two", "three", "four"]
        said = [r.getMessage() for r in caplog.records if "PutRetentionPolicy" in r.getMessage()]
        assert len(said) == 1 and "AccessDenied" in said[0], said
        assert local_aws.stats().calls.get("PutRetentionPolicy") == 1  # refused for good: not asked again
    finally:
        handler.close(timeout=0)


def _retention(client: Any, group: str) -> int | None:
    found: int | None = client.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0].get("retentionInDays")
    return found


def test_the_retention_is_applied_when_the_create_budget_has_a_token_again_without_another_line(
        local_aws: LocalAWS) -> None:
    """The sender applied the retention only just before a put: a handler whose lines were sent while the process's
    CreateLogGroup budget had no token (many tasks starting at once) never applied it."""
    client = boto3.client("logs", endpoint_url=local_aws.url)
    client.create_log_group(logGroupName="busy-creates")
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="busy-creates", log_stream_name="s", boto3_client=client, log_group_retention_days=30,
        send_interval=0.1)
    budget = handler._channel.budgets.create_group
    try:
        while budget.acquire(time.monotonic()) == 0:  # what other handlers of the process took
            pass
        _log_one(handler, "busy-creates", "the only line")
        handler.close()  # waits for them too (an Airflow 2 task's handler is closed right after its lines)
        assert _retention(client, "busy-creates") == 30
        assert local_aws.messages("busy-creates", "s") == ["the only line"]
    finally:
        handler.close(timeout=0)


def test_tags_reach_a_group_another_process_created_first(local_aws: LocalAWS) -> None:
    """CreateLogGroup answered ResourceAlreadyExists (another task process won the race, without tags) counted as
    made with our tags: they were never applied."""
    client = boto3.client("logs", endpoint_url=local_aws.url)
    other = boto3.client("logs", endpoint_url=local_aws.url)

    def another_process_first(**_: Any) -> None:
        other.create_log_group(logGroupName="raced")

    client.meta.events.register("before-call.cloudwatch-logs.CreateLogGroup", another_process_first)
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="raced", log_stream_name="s", boto3_client=client, log_group_retention_days=7,
        log_group_tags={"team": "a"}, send_interval=0.1)
    try:
        _log_one(handler, "raced", "line")
        handler.close()
        assert other.list_tags_log_group(logGroupName="raced")["tags"] == {"team": "a"}
        assert _retention(other, "raced") == 7
    finally:
        handler.close(timeout=0)


class _ClientWithoutDescribe:
    """A client wrapper (the handler only asks a ``boto3_client`` for put_log_events) without DescribeLogGroups."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta
        self.exceptions = client.exceptions
        self.put_log_events = client.put_log_events
        self.create_log_stream = client.create_log_stream
        self.create_log_group = client.create_log_group
        self.put_retention_policy = client.put_retention_policy


def test_a_tagging_call_the_client_lacks_is_said_and_costs_no_line(local_aws: LocalAWS, spill_dir: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The AttributeError from a wrapper without describe_log_groups ended every sender pass before its puts: every
    line was spilled, none delivered."""
    client = boto3.client("logs", endpoint_url=local_aws.url)
    client.create_log_group(logGroupName="wrapped")
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="wrapped", log_stream_name="s", boto3_client=_ClientWithoutDescribe(client),
        log_group_tags={"team": "a"}, send_interval=0.1, spill_to=str(spill_dir))
    try:
        with caplog.at_level(logging.WARNING, logger="mwaa_logging"):
            _log_one(handler, "wrapped", "one")
            _log_one(handler, "wrapped", "two")
            handler.close()
        assert local_aws.messages("wrapped", "s") == ["one", "two"]
        assert handler.stats().spilled_total == 0
        said = [r.getMessage() for r in caplog.records if "TagResource wrapped" in r.getMessage()]
        assert len(said) == 1 and "AttributeError" in said[0], said
    finally:
        handler.close(timeout=0)


def test_a_group_the_handler_creates_costs_no_extra_calls_for_its_retention_and_tags(local_aws: LocalAWS) -> None:
    """Applied before the first put, a new group's settings cost a PutRetentionPolicy answered ResourceNotFound
    (and a DescribeLogGroups for the tags) before the create path applied them anyway."""
    handler = mwaa_logging.CloudWatchLogHandler(
        log_group_name="brand-new", log_stream_name="s", endpoint_url=local_aws.url, log_group_retention_days=7,
        log_group_tags={"team": "a"}, send_interval=0.1)
    try:
        _log_one(handler, "brand-new", "line")
        _log_one(handler, "brand-new", "again")
        handler.close()
        calls = local_aws.stats().calls
        assert (calls.get("CreateLogGroup"), calls.get("PutRetentionPolicy")) == (1, 1), calls
        assert calls.get("DescribeLogGroups") is None and calls.get("TagResource") is None, calls
        client = boto3.client("logs", endpoint_url=local_aws.url)
        assert _retention(client, "brand-new") == 7
        assert client.list_tags_log_group(logGroupName="brand-new")["tags"] == {"team": "a"}
    finally:
        handler.close(timeout=0)


EXITS_OWING_THE_RETENTION = """
import logging, sys, time
import mwaa_logging
handler = mwaa_logging.CloudWatchLogHandler(log_group_name="hung-policy", log_stream_name="s",
                                            log_group_retention_days=7, close_timeout=3, read_timeout=30)
logger = logging.getLogger("owing")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.info("line")
assert handler.flush(10)
print(time.monotonic(), flush=True)
if sys.argv[1] == "close":
    handler.close()
"""


@pytest.mark.parametrize("closes", ["close", "exit"])
def test_a_retention_call_that_hangs_holds_the_exit_one_close_timeout_not_two(local_aws: LocalAWS, spill_dir: Path,
                                                                              closes: str) -> None:
    """The exit flush waited close_timeout for the owed retention, then logging.shutdown()'s close() waited a
    whole one again (or close() first, then the exit flush)."""
    boto3.client("logs", endpoint_url=local_aws.url).create_log_group(logGroupName="hung-policy")
    local_aws.faults.inject("hang", api="PutRetentionPolicy")
    env = {**os.environ, **local_aws.env(), "MWAA_LOGGING_SPILL_TO": str(spill_dir)}
    try:
        done = subprocess.run([sys.executable, "-c", EXITS_OWING_THE_RETENTION, closes], env=env,
                              capture_output=True, text=True, timeout=60)
        ended = time.monotonic()
    finally:
        local_aws.faults.clear()
    assert done.returncode == 0, done.stderr
    closing = ended - float(done.stdout.split()[-1])  # CLOCK_MONOTONIC: the same clock in both processes
    assert 2.9 < closing < 5, closing  # one close_timeout (3 s), then the process ends; not two
    assert local_aws.messages("hung-policy", "s") == ["line"]
    assert "not applied yet at the close deadline" in done.stderr
