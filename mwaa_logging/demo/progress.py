"""Live progress: totals and per-second rates of lines logged, delivered, spilled and throttled.

Sources: each task process's status file (lines logged, its handler's counters) and, when the
endpoint is ours, the endpoint's counters (what CloudWatch actually stored, minus the neighbour).
A rich live table on a terminal; one plain line every few seconds otherwise (CI logs).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from mwaa_logging.demo.endpoint import EndpointCounts

SAMPLE_INTERVAL = 0.5
PLAIN_INTERVAL = 3.0


@dataclass(frozen=True)
class Sample:
    """Totals at ``t`` seconds after the tasks started; ``None`` where nobody can tell."""

    t: float
    logged: int
    delivered: int | None
    spilled: int | None
    throttled: int | None
    put_calls: int | None
    tasks_done: int


def read_statuses(status_dir: Path) -> dict[int, dict[str, Any]]:
    """The latest status of every task that wrote one (a file being replaced is skipped this time)."""
    statuses: dict[int, dict[str, Any]] = {}
    for path in status_dir.glob("task-*.json"):
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            status = orjson.loads(path.read_bytes())
            statuses[int(status["task"])] = status
    return statuses


def _handler_sum(statuses: dict[int, dict[str, Any]], name: str) -> int | None:
    values = [s["stats"][name] for s in statuses.values() if s.get("stats")]
    return sum(values) if values else None


def take_sample(t: float, statuses: dict[int, dict[str, Any]], endpoint: EndpointCounts | None) -> Sample:
    """Endpoint counts when there are some (same yardstick for every handler), else handler counters."""
    logged = sum(int(s["logged"]) for s in statuses.values())
    spilled = _handler_sum(statuses, "spilled_total")
    done = sum(1 for s in statuses.values() if s.get("done"))
    if endpoint is not None:
        return Sample(t, logged, endpoint.events_accepted, spilled, endpoint.throttled, endpoint.put_calls, done)
    return Sample(t, logged, _handler_sum(statuses, "delivered"), spilled, _handler_sum(statuses, "throttled"),
                  _handler_sum(statuses, "put_calls"), done)


class Monitor:
    """Samples every ``interval`` seconds in a thread, keeps the timeline, feeds a display."""

    def __init__(self, status_dir: Path, endpoint_counts: Callable[[], EndpointCounts | None],
                 display: Display, interval: float = SAMPLE_INTERVAL) -> None:
        self.status_dir = status_dir
        self.endpoint_counts = endpoint_counts
        self.display = display
        self.interval = interval
        self.timeline: list[Sample] = []
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-monitor", daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self.display.start()
        self._thread.start()

    def elapsed(self) -> float:
        """Seconds since ``start()`` (the timeline's clock)."""
        return time.monotonic() - self._started

    def sample(self) -> Sample:
        sample = take_sample(self.elapsed(), read_statuses(self.status_dir),
                             self.endpoint_counts())
        self.timeline.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.display.update(self.sample(), self.timeline)

    def stop(self) -> Sample:
        self._stop.set()
        self._thread.join(10)
        final = self.sample()
        self.display.update(final, self.timeline)
        self.display.stop()
        return final


def rate(timeline: list[Sample], field: str, window: float = 1.0) -> float | None:
    """Per-second rate of ``field`` over the last ``window`` seconds of the timeline."""
    if len(timeline) < 2:
        return None
    last = timeline[-1]
    earlier = next((s for s in reversed(timeline) if last.t - s.t >= window), timeline[0])
    now, then = getattr(last, field), getattr(earlier, field)
    if now is None or then is None or last.t <= earlier.t:
        return None
    return float(now - then) / (last.t - earlier.t)


def _fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


class Display:
    """Nothing shown (``--quiet``)."""

    def __init__(self, title: str, tasks: int) -> None:
        self.title = title
        self.tasks = tasks

    def start(self) -> None:
        pass

    def update(self, sample: Sample, timeline: list[Sample]) -> None:
        pass

    def stop(self) -> None:
        pass


_FIELDS = (("logged", "lines logged"), ("delivered", "events stored in CloudWatch"), ("spilled", "spilled"),
           ("throttled", "throttled calls"), ("put_calls", "PutLogEvents calls"))


class RichDisplay(Display):
    """A live table on a terminal."""

    def __init__(self, title: str, tasks: int, console: Console) -> None:
        super().__init__(title, tasks)
        self._live = Live(self._table(None, []), console=console, refresh_per_second=4, transient=False)

    def _table(self, sample: Sample | None, timeline: list[Sample]) -> Table:
        elapsed = f"{sample.t:5.1f} s" if sample else "starting"
        done = sample.tasks_done if sample else 0
        table = Table(title=f"{self.title} — {elapsed}, tasks done {done}/{self.tasks}", title_justify="left")
        table.add_column("")
        table.add_column("total", justify="right")
        table.add_column("per second", justify="right")
        for field, label in _FIELDS:
            table.add_row(label, _fmt(getattr(sample, field) if sample else None), _fmt(rate(timeline, field)))
        return table

    def start(self) -> None:
        self._live.start()

    def update(self, sample: Sample, timeline: list[Sample]) -> None:
        self._live.update(self._table(sample, timeline))

    def stop(self) -> None:
        self._live.stop()


class PlainDisplay(Display):
    """One line every few seconds (not a terminal)."""

    def __init__(self, title: str, tasks: int, write: Callable[[str], None], every: float = PLAIN_INTERVAL) -> None:
        super().__init__(title, tasks)
        self._write = write
        self._every = every
        self._last = -every
        self._finished = False

    def update(self, sample: Sample, timeline: list[Sample]) -> None:
        finished = sample.tasks_done >= self.tasks
        if sample.t - self._last < self._every and (self._finished or not finished):
            return
        self._last = sample.t
        self._finished = finished
        parts = [f"{label} {_fmt(getattr(sample, field))} ({_fmt(rate(timeline, field))}/s)"
                 for field, label in _FIELDS]
        self._write(f"[{self.title} {sample.t:5.1f}s] tasks done {sample.tasks_done}/{self.tasks} | "
                    + " | ".join(parts))

    def stop(self) -> None:
        pass


def make_display(title: str, tasks: int, console: Console, quiet: bool) -> Display:
    if quiet:
        return Display(title, tasks)
    if console.is_terminal:
        return RichDisplay(title, tasks, console)
    return PlainDisplay(title, tasks, lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True))
