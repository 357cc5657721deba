"""Memory during a CloudWatch outage: each handler's peak resident memory while PutLogEvents hangs.

Each handler runs in a fresh worker process (so the peak is its own): it logs a warm-up and flushes, the
endpoint is told to take the next PutLogEvents call and never answer it (a network partition, a stuck load
balancer), then the worker logs ``LINES`` numbered ~1 KB lines and reports how far its resident memory rose
above what it had before them (``VmHWM`` after a reset, minus ``VmRSS``). NullHandler and FileHandler show
what logging the lines costs when nothing is held. watchtower keeps every record in its queue until its one
thread can send again; ours keeps at most ``max_buffer_bytes`` (default 64 MiB, counted as CloudWatch counts
bytes) and spills the oldest to disk (``memory_cap``). After the endpoint answers again, ours delivers what it
kept: the endpoint's copy plus the spill files must hold every line, and its peak includes that recovery.

Run as a script, this module is the worker: ``python bench_memory.py KIND URL STREAM LINES`` (the line count
is passed on: the worker's environment has no ``MWAA_LOGGING_*`` variables, so it cannot tell the mode).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _workloads import (
    FULL,
    Endpoint,
    flush_handler,
    isolated_logger,
    loss_of,
    ours_handler,
    spilled_seqs,
    watchtower_handler,
)

LINES = 300_000 if FULL else 200_000
#: Each line: this many characters, then `` seq=NNNNNNNNNN`` (the endpoint's copy proves what arrived).
BODY = "x" * 1_000
WARMUP = 1_000
GROUP = "bench-memory"
KINDS = ("null", "file", "ours", "watchtower")
#: ``max_buffer_bytes``'s default. Ours' peak passes it (measured 1.6x, with 100k, 200k and 400k lines alike):
#: the cap counts bytes as CloudWatch does, and Python keeps ~190 more per ~1 KB line (a str header, the event
#: tuple and its ints); the queue may hold another quarter of the cap before the memory guard relieves it, and
#: the events being spilled are held until their file is written. CI fails beyond 2x.
MAX_BUFFER_BYTES = 64 * 1024 * 1024
SLACK = 1.0
MIB = 1024 * 1024


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Make ``VmHWM`` (the peak resident set) start again from the current resident set (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def make_handler(kind: str, url: str, stream: str) -> logging.Handler:
    if kind == "null":
        return logging.NullHandler()
    if kind == "file":
        return logging.FileHandler(os.devnull)  # the same work per line, without 200 MB on a small disk
    if kind == "ours":
        return ours_handler(url, GROUP, stream)
    return watchtower_handler(url, GROUP, stream)


def run_worker(kind: str, url: str, stream: str, lines: int) -> dict[str, Any]:
    """Log the lines through one handler during an outage; report the peak growth (and ours' recovery)."""
    from mwaa_logging.testing.admin import RemoteLocalAWS

    admin = RemoteLocalAWS(url, timeout=60.0)
    handler = make_handler(kind, url, stream)
    logger = isolated_logger("bench.memory", handler)
    for seq in range(WARMUP):
        logger.info("%s seq=%010d", BODY, seq)
    flush_handler(handler)
    if kind in ("ours", "watchtower"):
        admin.inject("hang", count=1)  # the next PutLogEvents is taken and never answered
    _reset_peak()
    baseline = _memory_kib("VmRSS")
    for seq in range(WARMUP, WARMUP + lines):
        logger.info("%s seq=%010d", BODY, seq)
    report: dict[str, Any] = {"kind": kind, "outage_growth_kib": _memory_kib("VmHWM") - baseline}
    if kind == "ours":
        admin.clear_faults()  # the endpoint answers again: ours delivers what it kept
        flush_handler(handler)
        report["growth_kib"] = _memory_kib("VmHWM") - baseline
        report["stats"] = handler.stats().as_dict()  # type: ignore[attr-defined]
        handler.close()
    else:
        report["growth_kib"] = report["outage_growth_kib"]
    print(json.dumps(report), flush=True)
    if kind == "watchtower":
        os._exit(0)  # its exit hook would wait for the hung call and then send the whole backlog
    handler.close()
    return report


def run_kind(endpoint: Endpoint, kind: str, tmp: Path) -> dict[str, Any]:
    spill_dir, stream = tmp / kind, f"{kind}-{os.getpid()}"
    spill_dir.mkdir()
    env = {**endpoint.env(), "MWAA_LOGGING_SPILL_TO": str(spill_dir)}
    done = subprocess.run([sys.executable, __file__, kind, endpoint.url, stream, str(LINES)], env=env,
                          capture_output=True, text=True, timeout=600)
    endpoint.admin.clear_faults()  # watchtower's hung call, if it left one
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed: {done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if kind == "ours":
        spilled = spilled_seqs(spill_dir)
        report["loss"] = loss_of(endpoint.seqs(GROUP, stream) + spilled, range(WARMUP + LINES))
        report["spilled"] = len(set(spilled))
    return report


@pytest.fixture
def reports(endpoint: Endpoint, tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {kind: run_kind(endpoint, kind, tmp_path) for kind in KINDS}


def test_memory_during_an_outage(benchmark: Any, reports: dict[str, dict[str, Any]]) -> None:
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the work ran in the workers (see ``reports``)
    mib = {kind: round(report["growth_kib"] / 1024, 1) for kind, report in reports.items()}
    ours, loss = reports["ours"], reports["ours"]["loss"]
    benchmark.extra_info.update(
        lines=LINES, line_bytes=len(BODY) + 15, max_buffer_mib=MAX_BUFFER_BYTES // MIB,
        **{f"{kind}_peak_growth_mib": value for kind, value in mib.items()},
        ours_outage_peak_growth_mib=round(ours["outage_growth_kib"] / 1024, 1),
        watchtower_vs_ours=round(mib["watchtower"] / mib["ours"], 2),
        ours_vs_max_buffer=round(mib["ours"] * MIB / MAX_BUFFER_BYTES, 2),
        ours_spilled=ours["spilled"], ours_lost=loss.lost, ours_duplicates=loss.duplicates,
    )
    assert loss.lost == 0, (loss, ours["stats"])
    assert ours["spilled"] > 0 and ours["stats"]["spilled"].get("memory_cap", 0) == ours["spilled"], ours
    assert mib["ours"] * MIB <= MAX_BUFFER_BYTES * (1 + SLACK), benchmark.extra_info
    # watchtower holds the lines themselves (each ~1 KB: about as many MiB as thousands of lines)
    assert mib["watchtower"] * MIB >= LINES * len(BODY), benchmark.extra_info


if __name__ == "__main__":
    logging.raiseExceptions = True
    run_worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
