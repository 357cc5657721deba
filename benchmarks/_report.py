"""Print the ratios a benchmark run stored (``extra_info``) as a Markdown table.

``python benchmarks/_report.py artifacts/benchmarks.json``
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Info = dict[str, Any]
Row = tuple[str, str, str, str]  # measure, mwaa-logging, watchtower, target


def _get(info: Info, key: str) -> str:
    value = info.get(key)
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _calling(info: Info) -> list[Row]:
    return [
        (f"`logger.info()` CPU of the calling thread / NullHandler (FileHandler: {_get(info, 'file_vs_null')})",
         _get(info, "ours_vs_null"), _get(info, "watchtower_vs_null"), "<= 1.3"),
        ("  same calls, wall time (includes the GIL time the sender takes)",
         _get(info, "ours_wall_vs_null"), _get(info, "watchtower_wall_vs_null"), ""),
        ("  same calls, whole process CPU (the sender's work during the calls and the flush after)",
         _get(info, "ours_process_cpu_vs_null"), _get(info, "watchtower_process_cpu_vs_null"), ""),
    ]


def _cpu(info: Info) -> list[Row]:
    return [("process CPU per event (all threads) / NullHandler", _get(info, "ours_cpu_vs_null"),
             _get(info, "watchtower_cpu_vs_null"), "<= 1.5")]


def _instructions(info: Info) -> list[Row]:
    return [(f"  same in machine instructions (callgrind; NullHandler {_get(info, 'null_instructions_per_event')} an "
             "event)", _get(info, "ours_instructions_vs_null"), "", "")]


def _remote_log(info: Info) -> list[Row]:
    return [
        ("Airflow 3 task log line, provider / MWAA pattern (name set per line, dict msg): process CPU / NullHandler",
         _get(info, "ours_cpu_vs_null"), _get(info, "watchtower_cpu_vs_null"), ""),
        ("  watchtower CPU per line / ours", _get(info, "watchtower_cpu_vs_ours"), "", ""),
    ]


def _delivery(info: Info) -> list[Row]:
    return [
        ("100k events, first emit to flushed: events/s", _get(info, "ours_events_per_s"),
         _get(info, "watchtower_events_per_s"), ""),
        ("  ours / watchtower events/s", _get(info, "ours_vs_watchtower_events_per_s"), "", ">= 3"),
        ("  MB/s of log text (events/s x mean message bytes)", _get(info, "ours_mb_per_s"),
         _get(info, "watchtower_mb_per_s"), ""),
        ("  delivered events/s (lost ones not counted)", _get(info, "ours_delivered_events_per_s"),
         _get(info, "watchtower_delivered_events_per_s"), ""),
        ("  ours / watchtower delivered events/s", _get(info, "ours_vs_watchtower_delivered_per_s"), "", ""),
        ("  ms from the last emit to flush() returned (sender's backlog)", _get(info, "ours_flush_ms"),
         _get(info, "watchtower_flush_ms"), ""),
        (f"  PutLogEvents calls, most in one run (minimum {_get(info, 'minimum_calls')})", _get(info, "ours_calls"),
         _get(info, "watchtower_calls"), ""),
        ("  calls / minimum", _get(info, "ours_calls_vs_minimum"), "", "<= 1.05"),
        ("  wire bytes per event", _get(info, "ours_wire_bytes_per_event"),
         _get(info, "watchtower_wire_bytes_per_event"), ""),
        (f"  events lost (sum of {info.get('rounds')} runs each)", _get(info, "ours_lost"),
         _get(info, "watchtower_lost"), "0"),
    ]


def _encoding(info: Info) -> list[Row]:
    # the target is against botocore's serializer as clients run it (with parameter validation); the figure
    # without validation has no target and its own row, so the verdict reads only the targeted number
    return [("10k-event PutLogEvents body: botocore serializer time / ours", _get(info, "speedup_vs_validated"),
             "", ">= 10"),
            ("  same, botocore without parameter validation", _get(info, "speedup_vs_unvalidated"), "", "")]


def _wire_bytes(info: Info) -> list[Row]:
    compression = info["compression"]
    ratio = f", {_get(info, 'compression_ratio')}x smaller" if compression == "gzip" else ""
    return [(f"  same body on the wire, bytes per event, compression={compression}{ratio}",
             _get(info, "wire_bytes_per_event"), "", "")]


def _shared_quota(info: Info) -> list[Row]:
    head = (f"{info['processes']} processes, quota {info['quota_tps']:g} calls/s "
            f"(ours: host budget {info['put_rate_limit']:g}/s)")
    peak = f"<= {info['put_rate_limit'] + info['burst']:g}"
    return [
        (f"{head}: delivered events/s", _get(info, "ours_delivered_events_per_s"),
         _get(info, "watchtower_delivered_events_per_s"), ""),
        ("  throttled share of calls", _get(info, "ours_throttled_share"), _get(info, "watchtower_throttled_share"),
         "<= 0.05"),
        ("  peak calls in 1 s", _get(info, "ours_peak_calls_1s"), _get(info, "watchtower_peak_calls_1s"), peak),
        ("  calls / minimum", _get(info, "ours_calls_vs_minimum"), _get(info, "watchtower_calls_vs_minimum"), ""),
        ("  events lost", _get(info, "ours_lost"), _get(info, "watchtower_lost"), "0"),
    ]


def _learned(info: Info) -> list[Row]:
    return [
        (f"{info['processes']} processes, unknown quota {info['quota_tps']:g}/s: throttled share "
         "from 10 s after the first throttle", _get(info, "throttled_share_after_learning"), "", "<= 0.10"),
        ("  goodput / quota", _get(info, "goodput_share_of_quota"), "", ">= 0.90"),
        ("  events lost", _get(info, "ours_lost"), "", "0"),
    ]


def _memory(info: Info) -> list[Row]:
    return [
        (f"{info['lines']:,} lines of ~1 KB while PutLogEvents hangs: peak memory growth, MiB "
         f"(NullHandler {_get(info, 'null_peak_growth_mib')}, FileHandler {_get(info, 'file_peak_growth_mib')})",
         _get(info, "ours_peak_growth_mib"), _get(info, "watchtower_peak_growth_mib"), ""),
        (f"  / max_buffer_bytes ({info['max_buffer_mib']} MiB, the default)", _get(info, "ours_vs_max_buffer"), "",
         ""),
        ("  watchtower's peak / ours", _get(info, "watchtower_vs_ours"), "", ""),
        ("  lines spilled to disk (memory_cap) / lost", f"{_get(info, 'ours_spilled')} / {_get(info, 'ours_lost')}",
         "", ""),
    ]


#: Test name prefix -> rows, in the order the table shows them.
SECTIONS: tuple[tuple[str, Callable[[Info], list[Row]]], ...] = (
    ("test_calling_thread_cost", _calling),
    ("test_cpu_per_event", _cpu),
    ("test_instructions_per_event", _instructions),
    ("test_cpu_per_line_airflow3_remote_log", _remote_log),
    ("test_end_to_end_100k", _delivery),
    ("test_direct_encoding_10k", _encoding),
    ("test_wire_bytes_per_event", _wire_bytes),
    ("test_memory_during_an_outage", _memory),
    ("test_shared_quota", _shared_quota),
    ("test_unknown_quota_is_learned", _learned),
)


def table(benchmarks: Sequence[Info]) -> list[Row]:
    rows: list[Row] = []
    for prefix, make in SECTIONS:
        for bench in benchmarks:
            if bench["name"].startswith(prefix) and bench.get("extra_info"):
                rows.extend(row for row in make(bench["extra_info"]) if row[1] or row[2])
    return rows


def verdict(ours: str, target: str) -> str:
    """``yes``/``NO`` when the mwaa-logging value meets/misses a numeric target; empty without one."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", ours.replace(",", ""))
    if not target or not numbers:
        return ""
    values = [float(n) for n in numbers]
    if target.startswith("<="):
        ok = all(v <= float(target[2:]) for v in values)
    elif target.startswith(">="):
        ok = all(v >= float(target[2:]) for v in values)
    else:
        ok = all(v == float(target) for v in values)
    return "yes" if ok else "NO"


def render(rows: Sequence[Row]) -> str:
    header = ("measure", "mwaa-logging", "watchtower 3.4", "target", "met")
    full = [header, *((*row, verdict(row[1], row[3])) for row in rows)]
    widths = [max(len(row[i]) for row in full) for i in range(5)]
    rule = tuple("-" * width for width in widths)
    return "\n".join("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
                     for row in [full[0], rule, *full[1:]])


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python benchmarks/_report.py artifacts/benchmarks.json", file=sys.stderr)
        return 2
    benchmarks: list[Info] = json.loads(Path(argv[0]).read_text())["benchmarks"]
    print(render(table(benchmarks)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
