"""Waiting for a condition that other threads or processes bring about, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, state: Callable[[], Any] | None = None) -> None:
    """Poll ``condition`` every 10 ms; fail the test if it is not true within ``timeout`` seconds (the failure
    shows ``state()``, what the test says explains it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s" + (f": {state()!r}" if state else ""))
        time.sleep(0.01)
