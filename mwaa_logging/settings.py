"""One validated ``Settings`` object: constructor keywords win over ``MWAA_LOGGING_<NAME>`` variables,
which win over defaults. A bad value raises :class:`SettingsError` naming the setting and the accepted form.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from mwaa_logging.limits import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

ENV_PREFIX = "MWAA_LOGGING_"
T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


def _fail(name: str, form: str, raw: object, source: str) -> SettingsError:
    where = f" (from {source})" if source else ""
    from mwaa_logging.budgets.urls import hide_credentials

    shown = hide_credentials(raw) if isinstance(raw, str) else raw  # a Redis URL's password, mistyped or not
    return SettingsError(f"invalid setting {name}={shown!r}{where}: expected {form}")


@dataclass(frozen=True)
class Spec(Generic[T]):
    """How one setting is parsed from text/Python values and what it accepts."""

    default: T
    form: str
    parse: Callable[[Any], T]
    help: str


def _number(low: float | None = None, *, allow_zero: bool = True, integer: bool = False,
            high: float | None = None, optional: bool = False) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            if optional:
                return None
            raise ValueError("required")
        if isinstance(raw, bool):
            raise ValueError("bool is not a number")
        if hasattr(raw, "total_seconds"):  # datetime.timedelta, as watchtower accepts for send_interval
            raw = raw.total_seconds()
        value = float(raw) if not integer else _as_int(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not finite")
        if low is not None and (value < low or (not allow_zero and value == low)):
            raise ValueError("too small")
        if high is not None and value > high:
            raise ValueError("too large")
        return value

    return parse


def _as_int(raw: Any) -> int:
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValueError("not an integer")
        return int(raw)
    return int(str(raw).replace("_", "")) if isinstance(raw, str) else int(raw)


def yes_no(raw: Any) -> bool:
    """True/False, 1/0, or text as a config file has it (true/false, yes/no, on/off, 1/0); else ``ValueError``."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in choices:
            raise ValueError(text)
        return text

    return parse


def _optional_text(raw: Any) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def account_id(raw: Any) -> str | None:
    """An AWS account id: 12 digits, also as the console shows it (``1234-5678-9012``); None when unset. S3 answers
    403 to every request whose ExpectedBucketOwner is not the owner's id written as 12 digits."""
    text = _optional_text(raw)
    if text is None:
        return None
    digits = text.replace("-", "") if re.fullmatch(r"[0-9]{4}-[0-9]{4}-[0-9]{4}", text) else text
    if not re.fullmatch(r"[0-9]{12}", digits):  # not \d: other scripts' digits are no account id
        raise ValueError(text)
    return digits


def _scope(raw: Any) -> str:
    text = str(raw).strip()
    if text.lower() in ("process", "host"):
        return text.lower()
    if text.startswith(("redis://", "rediss://", "unix://")):
        from mwaa_logging.budgets.urls import check_redis_url  # redis-py parses it when installed

        try:
            check_redis_url(text)  # a bad database, host, port or query argument fails here, not at the first call
        except ValueError as exc:
            raise _Unfit(str(exc)) from None  # its reason, which never repeats a password
        return text
    from mwaa_logging.budgets.urls import hide_credentials

    raise ValueError(hide_credentials(text))  # a mistyped URL's password: the cause is shown in tracebacks


def _namespace(raw: Any) -> str:
    text = str(raw).strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
        raise ValueError(text)
    return text


def _spill_to(raw: Any) -> str | None:
    if raw is not None and not isinstance(raw, (str, os.PathLike)):
        raise ValueError(raw)
    text = _optional_text(os.fspath(raw) if raw is not None else None)
    if text is None:
        return None
    if "://" not in text:
        return os.path.expanduser(text)  # "~/spill" is the user's, as in a shell
    if "://" in text and not text.startswith(("file://", "s3://")):
        raise ValueError(text)
    if text.startswith("s3://"):
        _check_s3_url(text)
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc.lower() not in ("", "localhost") or not parts.path.strip("/"):
            raise _Unfit("a file:// URL names a directory of this machine: file:///absolute/path")
        if parts.query or parts.fragment or text.endswith(("?", "#")):
            raise _Unfit("a file:// spill URL takes no ?query or #fragment")
    return text


def check_spill_to(text: str) -> str:
    """``text`` as the ``spill_to`` setting takes it (``file://`` of this machine without ?query or #fragment, an
    ``s3://`` bucket name, no other ``scheme://``; a path with ``~`` expanded), else ValueError saying why (for the
    CLI's spill locations)."""
    try:
        value = _spill_to(text)
    except _Unfit as exc:
        raise ValueError(f"{exc}, got {text!r}") from None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"expected {SPECS['spill_to'].form}, got {text!r}")
    return value


#: Characters and lengths a bucket name may have at all (3-63 of a-z 0-9 . - today; 255 with A-Z and _ for buckets
#: made in us-east-1 before 2018, still in use).
_S3_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")


def _check_s3_url(text: str) -> None:
    parts = urlsplit(text)
    if not parts.netloc:
        raise ValueError(text)  # no bucket
    if not _S3_BUCKET.fullmatch(parts.netloc):
        raise _Unfit(f"{parts.netloc!r} is no S3 bucket name (3 to 63 characters from a-z 0-9 . -)")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise _Unfit("an s3:// spill URL takes no ?query or #fragment (S3 would not see it in the prefix)")


#: What botocore accepts as a region name (a DNS label): ``eu_west_1`` or ``eu-west-1 `` fail only when the client is
#: built, which under Airflow 3 is at the first remote log call, not when the logging configuration loads.
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def _region(raw: Any) -> str | None:
    text = _optional_text(raw)
    if text is not None and not _REGION.fullmatch(text):
        raise ValueError(text)
    return text


def _url(raw: Any) -> str | None:
    text = _optional_text(raw)
    if text is not None:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(text)
        try:
            parts.port  # noqa: B018  # a port above 65535 raises here, not at every call
        except ValueError:
            raise _Unfit("its port is not a number from 0 to 65535") from None
    return text


class _Unfit(ValueError):
    """A value of the accepted form that the service would still refuse; its text says why (shown to the user)."""


#: What S3 accepts in object tags (S3Tag: ``^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$``, key 1-128, value 0-256;
#: at most 10 tags an object).
_S3_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_S3_MAX_TAGS, _S3_MAX_TAG_KEY, _S3_MAX_TAG_VALUE = 10, 128, 256


def _tags(raw: Any) -> Mapping[str, str] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, Mapping):
        return _s3_tags({str(k): str(v) for k, v in raw.items()})
    pairs = [p for p in str(raw).split(",") if p.strip()]
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(pair)
        if key.strip() in result:
            raise _Unfit(f"tag {key.strip()!r} given twice")
        result[key.strip()] = value.strip()
    return _s3_tags(result)


def _s3_tag_character(c: str) -> bool:
    return c.isalpha() or c.isnumeric() or unicodedata.category(c)[0] == "Z" or c in _S3_TAG_PUNCTUATION


def _s3_tags(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` if S3 takes them on an object, else :class:`_Unfit`: S3 would refuse every spill (InvalidTag),
    in the outage that made it spill."""
    if len(tags) > _S3_MAX_TAGS:
        raise _Unfit(f"{len(tags)} tags; S3 takes at most {_S3_MAX_TAGS} tags on an object")
    for key, value in tags.items():
        if key.lower().startswith("aws:"):
            raise _Unfit(f"{key!r}: the aws: prefix is reserved for AWS")
        if not key or len(key) > _S3_MAX_TAG_KEY or len(value) > _S3_MAX_TAG_VALUE:
            raise _Unfit(f"{key!r}: tag keys have 1 to {_S3_MAX_TAG_KEY} characters, values at most "
                         f"{_S3_MAX_TAG_VALUE}")
        for text in (key, value):
            if not all(map(_s3_tag_character, text)):
                raise _Unfit(f"{text!r}: S3 tags hold letters, digits, spaces and _ . : / = + - @ only")
    return tags


#: Upper bounds of durations: beyond them a value is a mistake (and overflows the waits it sets).
_HOUR, _DAY, _14_DAYS = 3600, 86_400, 1_209_600  # 14 days: CloudWatch refuses older events anyway

SPECS: dict[str, Spec[Any]] = {
    "spill_to": Spec(None, "a directory path, a file:// URL or s3://bucket/prefix", _spill_to,
                     "Where events go that CloudWatch cannot take in time. Unset: a directory under the "
                     "user's cache (or temp) dir."),
    "max_buffer_bytes": Spec(64 * 1024 * 1024, "an integer number of bytes >= 1048576",
                             _number(MAX_BATCH_BYTES, integer=True),
                             "Memory cap of one handler's buffers, in bytes as CloudWatch counts them; above it the "
                             "oldest events are spilled. The process's peak is ~1.6x it during an outage (see "
                             "Benchmarks)."),
    "max_latency": Spec(300.0, f"a number of seconds > send_interval, at most {_14_DAYS} (14 days)",
                        _number(0, allow_zero=False, high=_14_DAYS),
                        "An event not delivered this long after its timestamp (or after it was logged, if its "
                        "timestamp was already older) is spilled. Unset and send_interval >= 150: twice "
                        "send_interval."),
    "close_timeout": Spec(10.0, f"a number of seconds from 0 to {_DAY}", _number(0, high=_DAY),
                          "Deadline of flush()/close() (and of the flush at interpreter exit); what is still "
                          "pending at close is spilled."),
    "send_interval": Spec(2.0, f"a number of seconds from 0 to {_DAY}", _number(0, high=_DAY),
                          "Longest time an event waits for a fuller batch before it is sent."),
    "max_batch_size": Spec(MAX_BATCH_BYTES, f"an integer from 128 to {MAX_BATCH_BYTES}",
                           _number(128, integer=True, high=MAX_BATCH_BYTES),
                           "Most bytes in one PutLogEvents call (UTF-8 + 26 per event); at least 128, so that a "
                           "chunk of a split message (header up to 58 bytes) fits with its payload."),
    "max_batch_count": Spec(MAX_BATCH_EVENTS, f"an integer from 1 to {MAX_BATCH_EVENTS}",
                            _number(1, integer=True, high=MAX_BATCH_EVENTS),
                            "Most events in one PutLogEvents call."),
    "max_message_size": Spec(MAX_BATCH_BYTES, f"an integer from 1024 to {MAX_BATCH_BYTES}",
                             _number(1024, integer=True, high=MAX_BATCH_BYTES),
                             "Largest event (message UTF-8 bytes + 26; at most max_batch_size, whichever is "
                             "smaller applies); larger messages are split (or truncated with oversize=truncate)."),
    "oversize": Spec("split", "'split' or 'truncate'", _choice("split", "truncate"),
                     "What happens to a message above max_message_size: split into ordered chunks "
                     "(lossless) or truncate."),
    "compression": Spec("auto", "'auto', 'gzip' or 'none'", _choice("auto", "gzip", "none"),
                        "gzip PutLogEvents bodies; auto falls back to plain, and says so once, when the endpoint "
                        "refuses a gzip body (a 5xx, or a 4xx refusal such as 400, 413 or 415) and accepts the retry "
                        "sent plain, twice in a row."),
    "put_rate_limit": Spec(None, "a number of PutLogEvents calls per second > 0, or empty for no limit",
                           _number(0, allow_zero=False, optional=True),
                           "Ceiling on PutLogEvents calls/s for the whole rate_limit_scope."),
    "rate_limit_burst": Spec(None, "a number of calls >= 1, or empty for one second of put_rate_limit",
                             _number(1, optional=True),
                             "Burst allowed above put_rate_limit. Without put_rate_limit: the largest burst while "
                             "the budget backs off after throttles."),
    "rate_limit_scope": Spec("process", "'process', 'host', or a redis://, rediss:// or unix:// Redis URL", _scope,
                             "Who shares put_rate_limit: this process, all processes of this host, "
                             "or every host using the same Redis."),
    "rate_limit_namespace": Spec("mwaa-logging", "1-64 characters from a-z A-Z 0-9 . _ -", _namespace,
                                 "Name of the shared budget (host file / Redis keys): environments sharing a "
                                 "host or a Redis database need distinct namespaces."),
    "endpoint_url": Spec(None, "an http:// or https:// URL", _url,
                         "CloudWatch Logs endpoint (else AWS_ENDPOINT_URL_CLOUDWATCH_LOGS / AWS_ENDPOINT_URL / AWS)."),
    "region_name": Spec(None, "an AWS region name (letters, digits and -, such as eu-west-1)", _region,
                        "AWS region (else the AWS configuration)."),
    "connect_timeout": Spec(5.0, f"a number of seconds > 0, at most {_HOUR}", _number(0, allow_zero=False, high=_HOUR),
                            "TCP connect timeout of AWS calls."),
    "read_timeout": Spec(20.0, f"a number of seconds > 0, at most {_HOUR}", _number(0, allow_zero=False, high=_HOUR),
                         "Read timeout of AWS calls (a call that gets no answer is retried)."),
    "spill_marker": Spec(True, "true or false", yes_no,
                         "After a spill, write one marker event into the stream saying where the lines went."),
    "spill_s3_kms_key_id": Spec(None, "a KMS key id or ARN", _optional_text,
                                "Encrypt S3 spill objects with SSE-KMS and this key (default SSE-S3)."),
    "spill_s3_expected_bucket_owner": Spec(None, "an AWS account id (12 digits)", account_id,
                                           "ExpectedBucketOwner sent with every S3 spill request."),
    "spill_s3_tags": Spec(None, "key=value pairs separated by commas", _tags, "Tags of S3 spill objects."),
}


@dataclass(frozen=True)
class Settings:
    """Every tunable of mwaa-logging, validated. Build with :meth:`resolve`."""

    spill_to: str | None = SPECS["spill_to"].default
    max_buffer_bytes: int = SPECS["max_buffer_bytes"].default
    max_latency: float = SPECS["max_latency"].default
    close_timeout: float = SPECS["close_timeout"].default
    send_interval: float = SPECS["send_interval"].default
    max_batch_size: int = SPECS["max_batch_size"].default
    max_batch_count: int = SPECS["max_batch_count"].default
    max_message_size: int = SPECS["max_message_size"].default
    oversize: str = SPECS["oversize"].default
    compression: str = SPECS["compression"].default
    put_rate_limit: float | None = SPECS["put_rate_limit"].default
    rate_limit_burst: float | None = SPECS["rate_limit_burst"].default
    rate_limit_scope: str = SPECS["rate_limit_scope"].default
    rate_limit_namespace: str = SPECS["rate_limit_namespace"].default
    endpoint_url: str | None = SPECS["endpoint_url"].default
    region_name: str | None = SPECS["region_name"].default
    connect_timeout: float = SPECS["connect_timeout"].default
    read_timeout: float = SPECS["read_timeout"].default
    spill_marker: bool = SPECS["spill_marker"].default
    spill_s3_kms_key_id: str | None = SPECS["spill_s3_kms_key_id"].default
    spill_s3_expected_bucket_owner: str | None = SPECS["spill_s3_expected_bucket_owner"].default
    spill_s3_tags: Mapping[str, str] | None = field(default=SPECS["spill_s3_tags"].default)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve(cls, overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> Settings:
        """Keywords (``overrides``, None values ignored) > ``MWAA_LOGGING_<NAME>`` > defaults."""
        overrides = dict(overrides or {})
        environ = os.environ if environ is None else environ
        unknown = set(overrides) - set(SPECS)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}; known: {', '.join(SPECS)}")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, spec in SPECS.items():
            env_name = ENV_PREFIX + name.upper()
            if overrides.get(name) is not None:
                raw, source = overrides[name], ""
            elif environ.get(env_name, "").strip():  # an empty variable (how compose and k8s unset one) is unset
                raw, source = environ[env_name], env_name
            else:
                continue
            sources[name] = source
            try:
                values[name] = spec.parse(raw)
            except (TypeError, ValueError) as exc:
                form = f"{spec.form} ({exc})" if isinstance(exc, _Unfit) else spec.form
                raise _fail(name, form, raw, source) from exc
        _say_unknown_variables(environ)
        if "max_latency" not in values and "send_interval" in values:
            # watchtower accepts any send_interval (e.g. 600 s): stretch the default deadline with it
            values["max_latency"] = max(SPECS["max_latency"].default, 2 * values["send_interval"])
        settings = cls(**values)
        settings._check_consistency(sources)
        return settings

    def _check_consistency(self, sources: Mapping[str, str]) -> None:
        if self.max_latency <= self.send_interval:
            latency_from = f" (from {sources['max_latency']})" if sources.get("max_latency") else ""
            interval_from = {None: ", its default", "": ""}.get(sources.get("send_interval"),
                                                                  f", from {sources.get('send_interval')}")
            raise SettingsError(
                f"invalid setting max_latency={self.max_latency!r}{latency_from}: expected a number of seconds "
                f"greater than send_interval ({self.send_interval!r}{interval_from}), else events would be spilled "
                "before they are sent"
            )

    def replace(self, **changes: Any) -> Settings:
        return Settings.resolve({**{n: getattr(self, n) for n in self.names()}, **changes}, environ={})


#: ``MWAA_LOGGING_*`` variables that are not settings: the watchtower shim's switch and this project's own tooling.
OTHER_VARIABLES = frozenset({"MWAA_LOGGING_PATCH_WATCHTOWER", "MWAA_LOGGING_VENV", "MWAA_LOGGING_AIRFLOW_VENV",
                             "MWAA_LOGGING_AIRFLOW2_VENV", "MWAA_LOGGING_BENCH", "MWAA_LOGGING_TEST_LINES",
                             "MWAA_LOGGING_TEST_RELEASE", "MWAA_LOGGING_NO_UV", "MWAA_LOGGING_TEST_WORKERS"})
_said_unknown: set[str] = set()


def _say_unknown_variables(environ: Mapping[str, str]) -> None:
    """Warn (once per name and process) about ``MWAA_LOGGING_*`` variables that set nothing: a typo'd name would
    otherwise leave its setting at the default without a word (e.g. spills going to the local disk, not S3)."""
    known = [env_var(name) for name in SPECS]
    for name in environ:
        if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES or name in _said_unknown or name in known:
            continue
        _said_unknown.add(name)
        close = difflib.get_close_matches(name[len(ENV_PREFIX):].lower(), list(SPECS), n=1, cutoff=0.7)
        hint = f"did you mean {env_var(close[0])}?" if close else f"known: {ENV_PREFIX}<NAME> for {', '.join(SPECS)}"
        from mwaa_logging.engine.diagnostics import report  # settings must not import the engine at module level

        report(f"{name} is not an mwaa-logging setting and is ignored; {hint} (README, Configuration)")


#: Longest wait flush()/close() accept (a larger or infinite timeout means this: ~31 years).
MAX_WAIT_SECONDS = 1e9


def wait_timeout(timeout: float | None) -> float | None:
    """A ``timeout`` argument of flush()/close() as a wait can take: None stays None (the setting applies),
    infinity and huge values become :data:`MAX_WAIT_SECONDS`; NaN or a non-number raises ``ValueError``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
        raise ValueError(f"timeout must be a number of seconds or None, not {timeout!r}")
    return min(float(timeout), MAX_WAIT_SECONDS)


def env_var(name: str) -> str:
    """The environment variable that sets ``name``."""
    return ENV_PREFIX + name.upper()
