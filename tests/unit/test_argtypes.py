"""argparse value types: the replay's budget scope is read as the ``rate_limit_scope`` setting is."""

from __future__ import annotations

import argparse

import pytest

from mwaa_logging.argtypes import rate_limit_scope
from mwaa_logging.settings import Settings


@pytest.mark.parametrize(("given", "scope"), [
    ("host", "host"), ("HOST", "host"), (" Process ", "process"), ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_rate_limit_scope_reads_like_the_setting(given: str, scope: str) -> None:
    setting = Settings.resolve({"rate_limit_scope": given}, environ={}).rate_limit_scope
    assert rate_limit_scope(given) == scope == setting


@pytest.mark.parametrize("given", ["fleet", "", "redis://127.0.0.1:6379/notadb"])
def test_a_scope_the_setting_refuses_is_a_usage_error(given: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="rate_limit_scope"):
        rate_limit_scope(given)
    with pytest.raises(ValueError, match="rate_limit_scope"):
        Settings.resolve({"rate_limit_scope": given}, environ={})


def test_a_mistyped_redis_url_is_refused_without_repeating_its_password() -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        rate_limit_scope("rediss//:hunter2@cache.example:6379")
    assert "hunter2" not in str(refused.value) and "rediss//***@cache.example:6379" in str(refused.value)
    with pytest.raises(ValueError) as setting:
        Settings.resolve({"rate_limit_scope": "rediss//:hunter2@cache.example:6379"}, environ={})
    assert "hunter2" not in str(setting.value)
