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
