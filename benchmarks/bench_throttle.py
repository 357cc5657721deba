"""N processes share one account-wide PutLogEvents quota on the local endpoint (issue 3).

Every worker process logs numbered ~200-byte lines at an even pace into its own stream, then flushes;
all workers start together. The endpoint (a separate process) enforces ``QUOTA_TPS`` for the whole
account and counts calls, throttles and the busiest second; its stored copy, plus our spill directory,
proves what arrived. watchtower runs with its defaults (it sends at ``flush()``); ours runs with
``rate_limit_scope=host`` and ``put_rate_limit`` below the quota, and (full mode) with no limit at all,
where it must learn the quota from throttles.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _workloads import (
    FULL,
    MAX_BATCH_EVENTS,
    Endpoint,
    WorkerPlan,
    at_least,
    loss_of,
    minimum_calls,
    numbered_lines,
    spilled_seqs,
)

QUOTA_TPS = 5.0
#: Ours, limited: a budget below the quota, shared by every process of the host.
PUT_RATE_LIMIT = 4.0
BURST = PUT_RATE_LIMIT  # the default burst: one second of rate
PROCESS_COUNTS = (8, 32) if FULL else (4, 8)
SECONDS = 15.0 if FULL else 6.0
EVENTS_PER_SECOND_PER_PROCESS = 500
GROUP = "bench-throttle"
WORKER = str(Path(__file__).with_name("_workloads.py"))
#: Issue 3 targets.
TARGET_THROTTLED_SHARE_LIMITED = 0.05
TARGET_THROTTLED_SHARE_LEARNED = 0.10
TARGET_GOODPUT_SHARE_LEARNED = 0.90
LEARNING_SECONDS = 10.0
_run_ids = itertools.count()


@dataclass
class FleetRun:
    """What one fleet of workers did, as the endpoint and the spill directory saw it."""

    kind: str
    processes: int
    events: int
    seconds: float
    calls: int
    throttled: int
    invalid: int
    peak_calls_1s: int
    minimum_calls: int
    delivered: int
    duplicates: int
    spilled: int
    lost: int
    #: (seconds since start, PutLogEvents calls so far, throttled so far), sampled while running.
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    emitted_until: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "delivered_events_per_s": round(self.delivered / self.seconds),
            "calls": self.calls,
            "throttled": self.throttled,
            "throttled_share": round(self.throttled / max(1, self.calls), 3),
            "peak_calls_1s": self.peak_calls_1s,
            "calls_vs_minimum": round(self.calls / max(1, self.minimum_calls), 2),
            "lost": self.lost,
            "spilled": self.spilled,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "seconds": round(self.seconds, 2),
        }


def remove_host_budgets(namespace: str) -> None:
    """Delete the host-scope budget files a run created (they live in /dev/shm or the temp dir)."""
    from mwaa_logging.budgets.host import default_directory

    for path in default_directory().glob(f"{namespace}-*.budget"):
        path.unlink(missing_ok=True)


class Sampler:
    """Polls the endpoint's counters every ``interval`` seconds from a thread."""

    def __init__(self, endpoint: Endpoint, started: float, interval: float = 0.5) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._endpoint, self._started, self._interval = endpoint, started, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            stats = self._endpoint.admin.stats()
            self.samples.append((time.time() - self._started, stats.calls.get("PutLogEvents", 0), stats.throttled))

    def stop(self) -> list[tuple[float, int, int]]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


def run_fleet(endpoint: Endpoint, kind: str, processes: int, tmp: Path, settings: Mapping[str, Any],
              events_per_process: int, seconds: float = SECONDS) -> FleetRun:
    run = f"{kind}-{processes}-{next(_run_ids)}"
    spill_dir = tmp / run / "spill"
    (tmp / run).mkdir(parents=True)
    # A namespace of its own: no budget state shared with earlier runs or other programs on this host.
    namespace = f"bench-{os.getpid()}-{run}"
    plans = [
        WorkerPlan(kind=kind, url=endpoint.url, group=GROUP, stream=f"{run}-{index}",
                   first_seq=index * events_per_process, events=events_per_process, seconds=seconds,
                   settings={**settings, "spill_to": str(spill_dir), "rate_limit_namespace": namespace})
        for index in range(processes)
    ]
    logs = [open(tmp / run / f"worker-{index}.err", "w") for index in range(processes)]  # noqa: SIM115
    workers = [
        subprocess.Popen([sys.executable, WORKER, "worker", json.dumps(asdict(plan))], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=log, text=True, env=endpoint.env())
        for plan, log in zip(plans, logs, strict=True)
    ]
    try:
        for worker, log in zip(workers, logs, strict=True):
            assert worker.stdout is not None and worker.stdin is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"worker failed to start: {Path(log.name).read_text()[-2000:]}")
        endpoint.admin.set_quota(QUOTA_TPS)  # a full bucket, as at the start of any second
        endpoint.admin.reset_stats()  # watchtower's constructor calls are not PutLogEvents, but start clean
        started = time.time()
        sampler = Sampler(endpoint, started)
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker, log in zip(workers, logs, strict=True):
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if worker.wait(60) != 0 or not line:
                raise RuntimeError(f"worker failed: {Path(log.name).read_text()[-2000:]}")
            reports.append(json.loads(line))
        samples = sampler.stop()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        for log in logs:
            log.close()
        remove_host_budgets(namespace)
    finished = max(report["flushed_at"] for report in reports)
    stats = endpoint.admin.stats()
    delivered = [seq for plan in plans for seq in endpoint.seqs(GROUP, plan.stream)]
    spilled = spilled_seqs(spill_dir) if spill_dir.exists() else []
    expected = range(processes * events_per_process)
    arrived = loss_of(delivered, expected)
    anywhere = loss_of(delivered + spilled, expected)
    max_count = int(settings.get("max_batch_count", MAX_BATCH_EVENTS))
    minimum = sum(minimum_calls([len(line) for line in numbered_lines(plan.first_seq, plan.events)], max_count)
                  for plan in plans)
    return FleetRun(
        kind=kind, processes=processes, events=len(expected), seconds=finished - started,
        calls=stats.calls.get("PutLogEvents", 0), throttled=stats.throttled, invalid=stats.invalid,
        peak_calls_1s=stats.put_peak_1s, minimum_calls=minimum, delivered=arrived.distinct,
        duplicates=arrived.duplicates, spilled=len(set(spilled)), lost=anywhere.lost, samples=samples,
        emitted_until=max(report["emitted_until"] for report in reports) - started,
    )


@pytest.fixture(scope="module")
def quota_endpoint() -> Any:
    with Endpoint(put_quota=QUOTA_TPS) as running:
        yield running


@pytest.mark.parametrize("processes", PROCESS_COUNTS)
def test_shared_quota(benchmark: Any, quota_endpoint: Endpoint, tmp_path: Path, processes: int) -> None:
    """watchtower (defaults) and ours (host budget below the quota) with the same fleet and quota."""
    events = int(EVENTS_PER_SECOND_PER_PROCESS * SECONDS)
    runs: dict[str, FleetRun] = {}

    def both() -> None:
        runs["watchtower"] = run_fleet(quota_endpoint, "watchtower", processes, tmp_path, {}, events)
        runs["ours"] = run_fleet(quota_endpoint, "ours", processes, tmp_path,
                                 {"rate_limit_scope": "host", "put_rate_limit": PUT_RATE_LIMIT}, events)

    benchmark.pedantic(both, rounds=1, iterations=1)
    ours, theirs = runs["ours"], runs["watchtower"]
    benchmark.extra_info.update(
        processes=processes, quota_tps=QUOTA_TPS, put_rate_limit=PUT_RATE_LIMIT, burst=BURST,
        **{f"ours_{key}": value for key, value in ours.summary().items()},
        **{f"watchtower_{key}": value for key, value in theirs.summary().items()},
        ours_vs_watchtower_delivered_per_s=round(ours.delivered / ours.seconds
                                                 / max(1e-9, theirs.delivered / theirs.seconds), 2),
    )
    assert ours.lost == 0 and ours.invalid == 0, ours.summary()
    # Counts get one call of room: a token granted at the end of one second may reach the endpoint in the next.
    assert ours.peak_calls_1s <= PUT_RATE_LIMIT + BURST + 1, ours.summary()
    assert ours.throttled <= TARGET_THROTTLED_SHARE_LIMITED * ours.calls + 1, ours.summary()


def window(samples: list[tuple[float, int, int]], start: float, end: float) -> tuple[float, int, int]:
    """(seconds, calls, throttled) between the samples nearest ``start`` and ``end``."""
    first = min(samples, key=lambda s: abs(s[0] - start))
    last = min(samples, key=lambda s: abs(s[0] - end))
    return last[0] - first[0], last[1] - first[1], last[2] - first[2]


@pytest.mark.full_only  # learning takes over 30 s
def test_unknown_quota_is_learned(benchmark: Any, quota_endpoint: Endpoint, tmp_path: Path) -> None:
    """No limit set: after the first throttle the fleet converges on the quota it cannot see.

    Small batches (``max_batch_count=50``) make the fleet want about twice the quota in calls, so there
    is always more to send than the quota allows while it logs.
    """
    processes, per_second, batch = 8, 60, 50
    seconds = 25.0
    events = int(per_second * seconds)
    runs: dict[str, FleetRun] = {}

    def learn() -> None:
        runs["ours"] = run_fleet(quota_endpoint, "ours", processes, tmp_path,
                                 {"rate_limit_scope": "host", "max_batch_count": batch}, events, seconds)

    benchmark.pedantic(learn, rounds=1, iterations=1)
    ours = runs["ours"]
    first_throttle = next((t for t, _, throttled in ours.samples if throttled), None)
    assert first_throttle is not None, "the fleet never reached the quota: the benchmark measured nothing"
    span, calls, throttled = window(ours.samples, first_throttle + LEARNING_SECONDS, ours.emitted_until)
    goodput = (calls - throttled) / span
    steps = [window(ours.samples, start, start + 5.0) for start in range(0, int(ours.emitted_until), 5)]
    benchmark.extra_info.update(
        processes=processes, quota_tps=QUOTA_TPS, demand_calls_per_s=processes * per_second / batch,
        first_throttle_s=round(first_throttle, 1), window_s=round(span, 1),
        throttled_share_after_learning=round(throttled / max(1, calls), 3),
        goodput_share_of_quota=round(goodput / QUOTA_TPS, 3),
        throttled_share_per_5s=[round(t / max(1, c), 2) for _, c, t in steps],
        ok_calls_per_s_per_5s=[round((c - t) / max(1e-9, s), 1) for s, c, t in steps],
        **{f"ours_{key}": value for key, value in ours.summary().items()},
    )
    assert span >= 5.0, "the window after learning is too short to judge"
    assert ours.lost == 0 and ours.invalid == 0, ours.summary()
    assert throttled <= TARGET_THROTTLED_SHARE_LEARNED * calls + 1, benchmark.extra_info
    assert at_least(goodput, TARGET_GOODPUT_SHARE_LEARNED * QUOTA_TPS), benchmark.extra_info
