"""Spill locations as the CLI takes them: what the handler's spill_to setting takes, no other."""

from __future__ import annotations

import argparse
import os

import pytest

from mwaa_logging.argtypes import spill_location
from mwaa_logging.spill.factory import local_directory_of


@pytest.mark.parametrize("text", ["/tmp/spill", "file:///tmp/spill", "file://localhost/tmp/spill", "s3://bucket",
                                  "s3://bucket/pre/fix", "relative/dir"])
def test_what_spill_to_takes_is_taken(text: str) -> None:
    assert spill_location(text) == text


def test_a_path_has_its_tilde_expanded_as_spill_to_does() -> None:
    assert spill_location("~/spill") == os.path.expanduser("~/spill")


@pytest.mark.parametrize("text", ["", " ", "file://tmp/spill", "file:///tmp/spill?x=1", "file:///tmp/spill#x",
                                  "file:///tmp/spill?", "http://x/y", "ftp://host/dir", "s3://", "s3://b",
                                  "s3://bucket/p?x=1"])
def test_what_spill_to_refuses_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        spill_location(text)


@pytest.mark.parametrize("url", ["file://tmp/spill", "file:///tmp/spill?x=1", "file:///tmp/spill#x"])
def test_the_directory_of_a_file_url_of_another_host_or_with_a_query_is_refused_not_its_path_alone(url: str) -> None:
    with pytest.raises(ValueError, match="names a directory of this machine"):
        local_directory_of(url)


def test_the_directory_of_a_file_url_of_this_machine() -> None:
    assert local_directory_of("file:///tmp/a%20b") == "/tmp/a b"
    assert local_directory_of("file://localhost/tmp/x") == "/tmp/x"
    assert local_directory_of("/tmp/x") == "/tmp/x"
