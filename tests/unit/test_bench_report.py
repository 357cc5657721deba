"""The benchmark report (``benchmarks/_report.py``): each row's verdict reads the number its target is about."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "_report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encoding_rows(report: ModuleType, validated: float, unvalidated: float) -> dict[str, str]:
    bench = {"name": "test_direct_encoding_10k",
             "extra_info": {"speedup_vs_validated": validated, "speedup_vs_unvalidated": unvalidated}}
    return {row[0].strip(): report.verdict(row[1], row[3]) for row in report.table([bench])}


def test_encoding_target_is_judged_on_the_validated_serializer_only(report: ModuleType) -> None:
    rows = encoding_rows(report, validated=24.2, unvalidated=9.8)
    assert rows == {"10k-event PutLogEvents body: botocore serializer time / ours": "yes",
                    "same, botocore without parameter validation": ""}


def test_encoding_below_target_is_reported(report: ModuleType) -> None:
    rows = encoding_rows(report, validated=9.9, unvalidated=30.0)
    assert rows["10k-event PutLogEvents body: botocore serializer time / ours"] == "NO"


@pytest.mark.parametrize(("ours", "target", "expected"), [
    ("1.49", "<= 1.5", "yes"), ("1,613.0", "<= 1.5", "NO"), ("0 / 0", "0", "yes"), ("3", "0", "NO"),
    ("12.5", ">= 10", "yes"), ("", ">= 10", ""), ("1.2", "", ""),
])
def test_verdict(report: ModuleType, ours: str, target: str, expected: str) -> None:
    assert report.verdict(ours, target) == expected


def test_wire_bytes_are_shown_with_and_without_gzip(report: ModuleType) -> None:
    benches = [{"name": "test_wire_bytes_per_event[none]",
                "extra_info": {"compression": "none", "wire_bytes_per_event": 231.4, "compression_ratio": 1.0}},
               {"name": "test_wire_bytes_per_event[gzip]",
                "extra_info": {"compression": "gzip", "wire_bytes_per_event": 47.9, "compression_ratio": 4.83}}]
    rows = {row[0].strip(): row[1] for row in report.table(benches)}
    assert rows == {"same body on the wire, bytes per event, compression=none": "231.4",
                    "same body on the wire, bytes per event, compression=gzip, 4.83x smaller": "47.9"}


def test_end_to_end_shows_mb_per_s_for_both_handlers(report: ModuleType) -> None:
    bench = {"name": "test_end_to_end_100k",
             "extra_info": {"ours_mb_per_s": 14.9, "watchtower_mb_per_s": 3.7, "rounds": 5}}
    rows = {row[0].strip(): row[1:3] for row in report.table([bench])}
    assert rows["MB/s of log text (events/s x mean message bytes)"] == ("14.9", "3.7")
