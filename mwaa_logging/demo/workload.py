"""The simulated Airflow task logs: deterministic from a seed, so the verifier can regenerate every line.

A task's plan is a list of :class:`Line` (a few lines of Airflow's own preamble, then bursts of
operator output: plain lines, JSON dicts, warnings, stack traces and a few >1 MB payloads, then
Airflow's epilogue). :func:`emit_line` is the one function that turns a line into a logging call:
the worker calls it with the real handler attached, the verifier with a capturing handler and the
same formatter, so both produce the same text (tracebacks included).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

#: Airflow-like record layout without the time (CloudWatch stores it as the event timestamp).
LOG_FORMAT = "{%(filename)s:%(lineno)d} %(levelname)s - %(message)s"
#: Parent logger of every task line (Airflow's task logger).
TASK_LOGGER = "airflow.task"
DAG_ID = "demo_etl"
BIG_EVENT_BYTES = 1_200_000

Kind = Literal["text", "json", "exception", "big"]
TASK_NAMES = ("extract_orders", "extract_customers", "transform_sales", "load_warehouse",
              "validate_quality", "aggregate_daily", "export_reports", "refresh_dashboards")


class DemoTaskError(RuntimeError):
    """What a simulated task step raises (caught and logged with its traceback)."""


@dataclass(frozen=True, slots=True)
class Line:
    """One log call: ``pause`` is the share of the task's duration spent before it."""

    kind: Kind
    level: int
    logger: str
    text: str
    data: dict[str, Any] | None = None
    pause: float = 0.0


@dataclass(frozen=True)
class TaskPlan:
    """Everything one task process logs."""

    index: int
    task_id: str
    run_id: str
    lines: list[Line] = field(repr=False)

    @property
    def stream(self) -> str:
        """Airflow's stream name for this task try (``:`` replaced by ``_``, as the provider does)."""
        return f"dag_id={DAG_ID}/run_id={self.run_id}/task_id={self.task_id}/attempt=1.log"


def task_id(index: int) -> str:
    name = TASK_NAMES[index % len(TASK_NAMES)]
    return name if index < len(TASK_NAMES) else f"{name}_{index // len(TASK_NAMES)}"


def plan_task(seed: int, index: int, lines: int, big_events: int, run_id: str) -> TaskPlan:
    """The lines task ``index`` logs: exactly ``lines`` log calls, ``big_event_count(lines, big_events)`` of
    them > 1 MB."""
    rng = random.Random(f"{seed}/{index}")
    tid = task_id(index)
    preamble = _preamble(tid, run_id)
    epilogue = _epilogue(tid)
    body_count = max(0, lines - len(preamble) - len(epilogue))
    planned = (preamble + list(_body(rng, tid, body_count, big_events)) + epilogue)[:lines]
    return TaskPlan(index, tid, run_id, _with_pauses(rng, planned))


def _preamble(tid: str, run_id: str) -> list[Line]:
    ti = f"<TaskInstance: {DAG_ID}.{tid} {run_id} [queued]>"
    return [
        Line("text", logging.INFO, TASK_LOGGER, f"Dependencies all met for dep_context=non-requeueable deps ti={ti}"),
        Line("text", logging.INFO, TASK_LOGGER, f"Dependencies all met for dep_context=requeueable deps ti={ti}"),
        Line("text", logging.INFO, TASK_LOGGER, "Starting attempt 1 of 3"),
        Line("text", logging.INFO, TASK_LOGGER, f"Executing <Task(PythonOperator): {tid}> on {run_id}"),
        Line("json", logging.INFO, TASK_LOGGER, "", {"event": "task_started", "dag_id": DAG_ID, "task_id": tid,
                                                     "run_id": run_id, "try_number": 1, "pool": "default_pool"}),
    ]


def _epilogue(tid: str) -> list[Line]:
    return [
        Line("text", logging.INFO, f"{TASK_LOGGER}.operators", "Done. Returned value was: None"),
        Line("text", logging.INFO, TASK_LOGGER,
             f"Marking task as SUCCESS. dag_id={DAG_ID}, task_id={tid}, execution_date=demo"),
        Line("text", logging.INFO, TASK_LOGGER, "Task exited with return code 0"),
    ]


#: Lines of Airflow's own around the operator output (the preamble and the epilogue).
FRAME_LINES = len(_preamble("t", "r")) + len(_epilogue("t"))


def _big_positions(count: int, big_events: int) -> set[int]:
    """Where the big events go among ``count`` operator lines: spread evenly, at most one per line."""
    if big_events >= count:
        return set(range(count))
    return {int((k + 1) * count / (big_events + 1)) for k in range(big_events)}


def big_event_count(lines: int, big_events: int) -> int:
    """The events > 1 MB a task of ``lines`` lines logs when ``big_events`` are asked: no more than its
    operator lines (``lines`` minus Airflow's :data:`FRAME_LINES`)."""
    return len(_big_positions(max(0, lines - FRAME_LINES), big_events))


def _body(rng: random.Random, tid: str, count: int, big_events: int) -> Iterator[Line]:
    """Bursts of operator output; big events spread evenly."""
    big_at = _big_positions(count, big_events)
    makers: list[tuple[float, Callable[[random.Random, str, int], Line]]] = [
        (0.55, _progress_line), (0.2, _json_line), (0.12, _sql_line), (0.08, _warning_line),
        (0.05, _exception_line),
    ]
    weights = [w for w, _ in makers]
    for n in range(count):
        if n in big_at:
            yield _big_line(rng, tid, n)
        else:
            make = rng.choices([m for _, m in makers], weights)[0]
            yield make(rng, tid, n)


def _progress_line(rng: random.Random, tid: str, n: int) -> Line:
    rows = rng.randint(50, 5000)
    return Line("text", logging.INFO, f"{TASK_LOGGER}.operators",
                f"[{tid}] fetched page {n} (offset={n * 500}, rows={rows}) from "
                f"https://api.example.com/v2/orders?page={n} in {rng.randint(5, 900)} ms")


def _json_line(rng: random.Random, tid: str, n: int) -> Line:
    return Line("json", logging.INFO, f"{TASK_LOGGER}.metrics", "", {
        "event": "batch_processed", "task_id": tid, "batch": n, "rows": rng.randint(1, 10_000),
        "bytes": rng.randint(1_000, 5_000_000), "duration_ms": round(rng.uniform(0.5, 900.0), 3),
        "partition": f"dt=2026-11-{rng.randint(1, 24):02d}", "ok": rng.random() > 0.02,
        "tags": {"source": rng.choice(["postgres", "s3", "api"]), "région": "eu-west-1"},
    })


def _sql_line(rng: random.Random, tid: str, n: int) -> Line:
    table = rng.choice(["orders", "customers", "line_items", "inventory", "payments"])
    return Line("text", logging.INFO, "airflow.task.hooks.postgres",
                f"Running statement: INSERT INTO staging.{table} SELECT * FROM raw.{table} "
                f"WHERE batch_id = {n} AND updated_at > '2026-11-23T00:00:00Z', parameters: None "
                f"-- {rng.randint(1, 99_999)} rows affected")


def _warning_line(rng: random.Random, tid: str, n: int) -> Line:
    return Line("text", logging.WARNING, f"{TASK_LOGGER}.operators",
                f"Slow response from upstream (batch {n}): {rng.randint(1, 30)} s, "
                f"retrying with backoff {rng.choice([1, 2, 4, 8])} s — données partielles")


def _exception_line(rng: random.Random, tid: str, n: int) -> Line:
    return Line("exception", logging.ERROR, f"{TASK_LOGGER}.operators",
                f"Batch {n} of {tid} failed; it will be retried",
                {"reason": rng.choice(["connection reset by peer", "deadlock detected", "HTTP 503"])})


def _big_line(rng: random.Random, tid: str, n: int) -> Line:
    """A >1 MB event, like an operator printing a large XCom or a DataFrame."""
    row_ids = rng.sample(range(1_000_000), 64)
    rows: list[str] = []
    size = 0
    i = 0
    while size < BIG_EVENT_BYTES:
        row = f'{{"id":{row_ids[i % 64] + i},"sku":"SKU-{i:07d}","qty":{i % 97},"price":{(i * 37) % 1000}.99}}'
        rows.append(row)
        size += len(row) + 1
        i += 1
    return Line("big", logging.INFO, f"{TASK_LOGGER}.operators",
                f"Returned value was (batch {n}): [" + ",".join(rows) + "]")


def _with_pauses(rng: random.Random, lines: list[Line]) -> list[Line]:
    """Bursts: most lines follow the previous at once; a few start a burst after a pause.

    Pauses add up to 1.0 (the task's duration)."""
    starts = [i for i in range(1, len(lines)) if rng.random() < 0.02] or ([len(lines) // 2] if lines else [])
    weights = [rng.uniform(0.5, 1.5) for _ in starts]
    total = sum(weights) or 1.0
    pause_at = {i: w / total for i, w in zip(starts, weights, strict=True)}
    return [dataclasses.replace(line, pause=pause_at.get(i, 0.0)) for i, line in enumerate(lines)]


def _fail_step(line: Line) -> None:
    reason = (line.data or {}).get("reason", "unknown")
    raise DemoTaskError(f"{line.text.split(';')[0]}: {reason}")


def emit_line(line: Line) -> None:
    """Make the logging call ``line`` describes (the same call in the worker and in the verifier)."""
    logger = logging.getLogger(line.logger)
    if line.kind == "json":
        logger.log(line.level, line.data)
    elif line.kind == "exception":
        try:
            _fail_step(line)
        except DemoTaskError:
            logger.exception(line.text)
    else:
        logger.log(line.level, "%s", line.text)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


def expected_messages(plan: TaskPlan, formatter: logging.Formatter) -> list[str]:
    """The exact CloudWatch messages ``plan`` produces through a handler using ``formatter``."""
    capture = _Capture()
    capture.setFormatter(formatter)
    root = logging.getLogger(TASK_LOGGER)
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [capture]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    try:
        for line in plan.lines:
            emit_line(line)
    finally:
        root.handlers[:], level, root.propagate = saved
        root.setLevel(level)
    return capture.messages
