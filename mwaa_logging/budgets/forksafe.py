"""Run an object's ``after-fork`` method in forked children, without keeping the object alive."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def after_fork_in_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in every child forked after this, while its object lives."""
    ref = weakref.WeakMethod(method)

    def hook() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=hook)
