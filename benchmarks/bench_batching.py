"""Speed of the pure batching core.

Run: ``.venv/bin/python -m pytest benchmarks/bench_batching.py --benchmark-only``
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from mwaa_logging.batching import cut_batches
from mwaa_logging.events import LogEvent, make_event
from mwaa_logging.splitting import reassemble_messages, split_message

T0 = 1_700_000_000_000
COUNT = 100_000
#: cut_batches sorts, then cuts with prefix sums and binary search: ten times the events take ~14x (in order)
#: to ~22x (shuffled: the larger sort leaves the CPU's caches) the time here; a quadratic pass would take ~100x.
#: Measured in the same run, so a slow machine cannot fail it (an absolute 0.1 s bound did, at 0.102 s).
MAX_SCALING_10X = 40.0


def log_like_events(count: int, *, shuffled: bool) -> list[LogEvent]:
    """Airflow-like lines: 60-300 bytes, ~10 per millisecond, emission order unless shuffled."""
    rnd = random.Random(42)
    events = [make_event(T0 + seq // 10, "x" * rnd.randint(60, 300), seq) for seq in range(count)]
    if shuffled:
        rnd.shuffle(events)
    return events


@pytest.mark.parametrize("shuffled", [False, True], ids=["in_order", "shuffled"])
def test_cut_batches_100k(benchmark: Any, shuffled: bool) -> None:
    events = log_like_events(COUNT, shuffled=shuffled)
    batches = benchmark(cut_batches, events)
    assert sum(map(len, batches)) == COUNT
    scaling = benchmark.stats.stats.min / best_time(cut_batches, log_like_events(COUNT // 10, shuffled=shuffled))
    benchmark.extra_info.update(scaling_10x_events=round(scaling, 1), max_scaling=MAX_SCALING_10X)
    assert scaling < MAX_SCALING_10X, benchmark.extra_info


def best_time(function: Any, argument: Any, rounds: int = 25) -> float:
    """Fastest of ``rounds`` calls, in seconds (the same statistic as ``benchmark.stats.stats.min``)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function(argument)
        best = min(best, time.perf_counter() - started)
    return best


def test_cut_batches_100k_full_size_events(benchmark: Any) -> None:
    events = [(T0 + seq, "m", 1_048_576 // 3, seq) for seq in range(COUNT)]
    batches = benchmark(cut_batches, events)
    assert len(batches) == COUNT // 3 + 1


@pytest.mark.parametrize("char", ["a", "é", "\U0001f600"], ids=["ascii", "2byte", "4byte"])
def test_split_10mb_message(benchmark: Any, char: str) -> None:
    message = char * (10_000_000 // len(char.encode()))
    chunks = benchmark(split_message, message)
    assert len(chunks) == 10


def test_reassemble_100k_lines_with_splits(benchmark: Any) -> None:
    lines: list[str] = [f"line {i}" for i in range(COUNT)]
    for position in range(0, COUNT, 10_000):
        lines[position + 1 : position + 1] = split_message("y" * 3_000_000)
    result = benchmark(lambda: list(reassemble_messages(lines)))
    assert len(result) == COUNT + COUNT // 10_000
