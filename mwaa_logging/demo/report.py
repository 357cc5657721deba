"""The demo's summary: per-task table, totals and the verdict; side by side for ``--compare``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from mwaa_logging.demo.runner import DemoConfig, RunResult


def _n(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1_000_000:,.1f} MB" if value >= 100_000 else f"{value:,} B"


def spilled_text(reasons: Counter[str]) -> str:
    total = sum(reasons.values())
    if not total:
        return "0"
    return ", ".join(f"{n:,} {reason}" for reason, n in reasons.most_common())


def put_calls(result: RunResult) -> int | None:
    """PutLogEvents calls by the tasks: the endpoint's count when it has one, else the handlers'."""
    if result.counts is not None:
        return result.counts.put_calls
    return result.handler_total("put_calls")


def throttled(result: RunResult) -> int | None:
    if result.counts is not None:
        return result.counts.throttled
    return result.handler_total("throttled")


def wire_bytes(result: RunResult) -> int | None:
    """Request bytes of the tasks' CloudWatch calls (ours: its own count, which excludes S3 spill)."""
    ours = result.handler_total("bytes_sent")
    if ours is not None:
        return ours
    return None if result.counts is None else result.counts.bytes_received


def latency_text(result: RunResult) -> str:
    """Percentiles of the time from the log call to CloudWatch, for lines delivered there."""
    values = sorted(ms for check in result.checks for ms in check.latencies_ms)
    if not values:
        return "-"

    def at(share: float) -> float:
        return values[min(len(values) - 1, int(share * len(values)))] / 1000

    return f"{at(0.5):.1f} / {at(0.95):.1f} / {values[-1] / 1000:.1f} s"


def task_table(result: RunResult) -> Table:
    table = Table(title=f"{result.handler}: every task's stream read back ({result.group})", title_justify="left",
                  caption="puts: PutLogEvents calls by the task (fewest possible); close: handler.close(); "
                          "exit: from close() returning to the process exiting (logging.shutdown, atexit)",
                  caption_justify="left")
    for name in ("task", "lines logged", "verified", "in CloudWatch", "spilled", "duplicates", "lost",
                 "puts (min)", "close (s)", "exit (s)"):
        table.add_column(name, justify="left" if name == "task" else "right")
    for index, check in enumerate(result.checks):
        status = result.statuses.get(index, {})
        puts = (status.get("stats") or {}).get("put_calls")
        lost = f"{check.lost:,}" + (f" ({check.truncated} truncated)" if check.truncated else "")
        never = check.expected - result.logged_by(index)
        if never:
            lost += f" ({never:,} never logged)"
        table.add_row(check.task_id, _n(result.logged_by(index)), _n(check.arrived), _n(check.in_cloudwatch),
                      spilled_text(check.spilled), _n(check.duplicates), lost,
                      f"{_n(puts)} ({check.min_put_calls})", _seconds(status.get("close_seconds")),
                      _seconds(status.get("exit_seconds")))
    return table


def facts(result: RunResult, config: DemoConfig, target_description: str) -> list[tuple[str, str]]:
    reasons: Counter[str] = Counter()
    objects: set[str] = set()
    for check in result.checks:
        reasons.update(check.spilled)
        objects |= check.spill_objects
    minimum = result.total("min_put_calls")
    calls = put_calls(result)
    ratio = f" = {calls / minimum:.2f}x" if calls and minimum else ""
    where = "-"
    if objects:
        prefixes = sorted({o.rsplit("/", 3)[0] for o in objects})
        where = f"{len(objects)} objects under {', '.join(prefixes[:2])}{' ...' if len(prefixes) > 2 else ''}"
    order = all(c.in_order for c in result.checks)
    return [
        ("endpoint", target_description),
        ("workload", f"{config.tasks} task processes x {config.lines:,} lines over {config.duration:g} s, "
                     f"{config.big_events_generated} events > 1 MB each, seed {config.seed}"),
        ("throttle storm (every PutLogEvents refused)",
         "none" if result.storm is None else f"{result.storm[0]:.1f} s to {result.storm[1]:.1f} s"),
        ("lines planned", _n(result.expected)),
        ("lines logged (by the tasks)", _n(result.logged)),
        ("verified exactly", f"{result.total('arrived'):,} / {result.expected:,}"
                             f" ({'in order' if order else 'NOT in logging order'})"),
        ("delivered to CloudWatch", _n(result.total("in_cloudwatch"))),
        ("spilled", spilled_text(reasons)),
        ("spilled where", where),
        ("duplicates (removed by the reader)", _n(result.total("duplicates"))),
        ("lost after logging", _n(result.lost_after_logging)
         + (f" ({result.total('truncated')} truncated)" if result.total("truncated") else "")),
        ("never logged (task died)", _n(result.never_logged)),
        ("log call -> CloudWatch p50 / p95 / max", latency_text(result)),
        ("PutLogEvents calls (minimum)", f"{_n(calls)} ({minimum:,}{ratio})"),
        ("throttled calls", _n(throttled(result))),
        ("bytes on the wire", _bytes(wire_bytes(result))),
        ("wall time (tasks start -> all exited)", f"{result.wall_seconds:.1f} s"),
        ("read back and verify", f"{result.read_seconds:.1f} s"),
        *replay_facts(result),
    ]


def replay_facts(result: RunResult) -> list[tuple[str, str]]:
    if result.after_replay is None:
        return []
    found = sum(c.in_cloudwatch for c in result.after_replay)
    lost = sum(c.lost for c in result.after_replay)
    duplicates = sum(c.duplicates for c in result.after_replay)
    return [("after `mwaa-logging replay` (CloudWatch alone)",
             f"{found:,} / {result.expected:,} lines, {lost:,} missing, {duplicates:,} duplicates"
             f" ({result.replay_seconds:.1f} s)")]


def in_cloudwatch_after_replay(result: RunResult) -> str:
    checks = result.after_replay if result.after_replay is not None else result.checks
    return _n(sum(c.in_cloudwatch for c in checks))


def print_summary(console: Console, result: RunResult, config: DemoConfig, target_description: str) -> None:
    console.print(task_table(result))
    if result.replay_output:
        console.print(result.replay_output, markup=False, highlight=False, soft_wrap=True)
    table = Table(title=f"{result.handler}: totals", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for name, value in facts(result, config, target_description):
        table.add_row(name, value)
    console.print(table)
    for failure in result.failures:
        console.print(f"[red]{failure}[/red]")
    warned = result.warnings()
    if warned:
        console.print("handler warnings: " + ", ".join(f"{kind} {n:,}" for kind, n in warned.items()))


def duplicate_count(result: RunResult) -> int:
    """The duplicates the verdict counts: in CloudWatch alone after the replay, else the read-back's."""
    if result.after_replay is not None:
        return sum(c.duplicates for c in result.after_replay)
    return result.total("duplicates")


def duplicates_text(result: RunResult) -> str:
    """The duplicates the verdict names: in CloudWatch alone after the replay, else those the read-back found
    (and removed). Not a failure: delivery is at least once (a PutLogEvents call whose reply was lost, its
    events stored, is sent again; such a line may also be spilled, then replayed)."""
    n = duplicate_count(result)
    where = " in CloudWatch after the replay" if result.after_replay is not None else " (removed by the reader)"
    if not n:
        return "0 duplicates"
    return (f"{n:,} duplicates{where} (not a failure: delivery is at least once, a call whose reply was lost "
            "is sent again)")


def verdict(result: RunResult) -> str:
    if result.ok:
        replayed = " and replayed" if result.after_replay is not None else ""
        return (f"RESULT ({result.handler}): all {result.expected:,} lines verified, 0 lost"
                f" ({result.total('in_cloudwatch'):,} in CloudWatch, {result.total('spilled_total'):,} spilled"
                f"{replayed}); {duplicates_text(result)}")
    problems = [f"{result.lost_after_logging:,} lost"]
    if result.never_logged:
        problems[0] += f" after logging, {result.never_logged:,} never logged (task died)"
    if duplicates_text(result) != "0 duplicates":
        problems.append(duplicates_text(result))
    if result.after_replay is not None and any(not c.ok for c in result.after_replay):
        problems.append("replay left lines missing from CloudWatch")
    if result.total("unexpected"):
        problems.append(f"{result.total('unexpected'):,} unexpected lines")
    problems.extend(result.failures[:3])
    return f"RESULT ({result.handler}): FAILED: " + "; ".join(problems)


def compare_table(results: list[RunResult]) -> Table:
    table = Table(title="same workload, same endpoint, fresh log group each", title_justify="left")
    table.add_column("")
    for result in results:
        table.add_column(result.handler, justify="right")
    rows: list[tuple[str, Callable[[RunResult], str]]] = [
        ("lines logged", lambda r: _n(r.logged)),
        ("lines delivered exactly", lambda r: _n(r.total("arrived"))),
        ("  in CloudWatch", lambda r: _n(r.total("in_cloudwatch"))),
        ("  spilled to S3 (read back; replayable)", lambda r: _n(r.total("spilled_total"))),
        ("lines lost", lambda r: _n(r.lost_after_logging)),
        ("  of which truncated", lambda r: _n(r.total("truncated"))),
        *([("lines never logged (task died)", lambda r: _n(r.never_logged))]
          if any(r.never_logged for r in results) else []),
        ("in CloudWatch after replay", in_cloudwatch_after_replay),
        ("duplicates (after replay, as the verdict)", lambda r: _n(duplicate_count(r))),
        ("log call -> CloudWatch p50/p95/max", latency_text),
        ("PutLogEvents calls", lambda r: _n(put_calls(r))),
        ("  minimum (all lines at once, lossless)", lambda r: _n(r.total("min_put_calls"))),
        ("throttled calls", lambda r: _n(throttled(r))),
        ("bytes on the wire", lambda r: _bytes(wire_bytes(r))),
        ("tasks start -> all exited (s)", lambda r: f"{r.wall_seconds:.1f}"),
        ("handler warnings", lambda r: _n(sum(r.warnings().values()))),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results))
    return table
