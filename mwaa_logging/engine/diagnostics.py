"""The library's own messages, from any thread, without ever waiting on ``logging``'s module lock.

The sender must not block on that lock: ``dictConfig`` holds it while it flushes handlers. A message goes
through the ``mwaa_logging`` logger when the lock is free (our handler filters these records out, so they
never loop back), else straight to stderr. Repeats of one message are muted for a minute.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time

logger = logging.getLogger("mwaa_logging")
_last_said: dict[str, float] = {}
_MUTE_SECONDS = 60.0
#: The password of a URL (``scheme://user:password@host``), as botocore's errors repeat an endpoint URL.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:\"'?#]*):[^\s/@\"'?#]*@")


def redact_urls(text: str) -> str:
    """``text`` with the password of each URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text) if "@" in text else text


def report(message: str, level: int = logging.WARNING, *, key: str | None = None) -> None:
    """Say ``message`` once a minute at most per ``key`` (default: its text; give one when the text names what
    changes every time, such as a temporary file's path)."""
    message = redact_urls(message)
    now = time.monotonic()
    key = message[:200] if key is None else key
    if now - _last_said.get(key, -_MUTE_SECONDS) < _MUTE_SECONDS:
        return
    if len(_last_said) > 1000:
        _last_said.clear()
    _last_said[key] = now
    lock = getattr(logging, "_lock", None)
    if lock is not None and lock.acquire(blocking=False):
        try:
            logger.log(level, message)
        finally:
            lock.release()
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"mwaa_logging: {message}\n")
