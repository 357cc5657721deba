"""Watchtower shim: make code that builds ``watchtower.CloudWatchLogHandler`` use mwaa-logging instead.

For places where the logging config cannot be changed (Amazon MWAA sets ``logging_config_class``
itself): :func:`patch_watchtower` swaps the class on the ``watchtower`` module and in every loaded
module that imported it by name (``from watchtower import CloudWatchLogHandler``). With
``MWAA_LOGGING_PATCH_WATCHTOWER=1`` the installed package does this at interpreter start (see
:func:`install_from_environment`, run from a ``.pth`` file): it waits for ``watchtower`` to be
imported, so processes that never use it pay nothing.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

ENV_VAR = "MWAA_LOGGING_PATCH_WATCHTOWER"
_ORIGINAL_ATTR = "_mwaa_logging_original_handler"
_TRUE = frozenset({"1", "true", "yes", "on"})
_lock = threading.RLock()


def _replacement() -> type:
    return _shim_class()


@functools.cache
def _shim_class() -> type:
    """mwaa-logging's handler, built so that a bad setting falls back to watchtower instead of raising.

    On MWAA a handler that fails to construct breaks Airflow's logging config (and with it every
    process): a ``MWAA_LOGGING_*`` typo must cost the speed-up, never the logs.
    """
    from mwaa_logging.handler import CloudWatchLogHandler

    class WatchtowerCompatibleHandler(CloudWatchLogHandler):
        __doc__ = CloudWatchLogHandler.__doc__
        _compat_initialized: bool  # set by __new__ when it ran __init__ itself, removed by __init__

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            self = super().__new__(cls)
            if cls is not WatchtowerCompatibleHandler:  # a subclass: its own __init__ decides the arguments
                return self
            try:
                CloudWatchLogHandler.__init__(self, *args, **kwargs)
            except Exception as exc:
                original = getattr(sys.modules["watchtower"], _ORIGINAL_ATTR, None)
                if original is None:
                    raise
                warnings.warn(f"mwaa-logging: using watchtower for this handler: {exc}", stacklevel=2)
                return original(*args, **kwargs)
            self._compat_initialized = True  # an attribute, never self.__dict__ (see CloudWatchLogHandler)
            return self

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if getattr(self, "_compat_initialized", False):
                del self._compat_initialized
            else:
                super().__init__(*args, **kwargs)

    WatchtowerCompatibleHandler.__module__ = __name__
    return WatchtowerCompatibleHandler


def is_patched() -> bool:
    """Whether ``watchtower.CloudWatchLogHandler`` is currently mwaa-logging's handler."""
    watchtower = sys.modules.get("watchtower")
    return watchtower is not None and getattr(watchtower, "CloudWatchLogHandler", None) is _replacement()


def patch_watchtower() -> type:
    """Replace watchtower's handler class with mwaa-logging's, everywhere it is referenced by name.

    Idempotent (modules imported since the last call are patched too). Handlers built before the
    patch keep running on watchtower. Returns the original class.
    """
    import watchtower

    with _lock:
        original: type = getattr(watchtower, _ORIGINAL_ATTR, None) or watchtower.CloudWatchLogHandler
        _swap(original, _replacement())
        setattr(watchtower, _ORIGINAL_ATTR, original)
    _airflow2_write_ahead()
    return original


def _airflow2_write_ahead() -> None:
    """Inside Airflow 2, a killed task's unsent lines are kept for its supervisor (``mwaa_logging.airflow.shim_wal``);
    a failure there leaves the shim in place without that protection."""
    if "airflow" not in sys.modules:
        return
    try:
        from mwaa_logging.airflow import shim_wal

        shim_wal.install()
    except Exception as exc:
        print(f"mwaa-logging: no write-ahead log for Airflow 2 task lines: {exc!r}", file=sys.stderr)


def unpatch_watchtower() -> None:
    """Undo :func:`patch_watchtower` where it replaced the class (for tests)."""
    watchtower = sys.modules.get("watchtower")
    with _lock:
        original = getattr(watchtower, _ORIGINAL_ATTR, None)
        if original is None:
            return
        for namespace, name in _patched:
            if namespace.get(name) is _replacement():
                namespace[name] = original
        _patched.clear()
        delattr(watchtower, _ORIGINAL_ATTR)


#: Every (module namespace, attribute name) the patch changed, for :func:`unpatch_watchtower`.
_patched: list[tuple[dict[str, Any], str]] = []


def _swap(old: type, new: type) -> None:
    """Point every module attribute that is ``old`` at ``new``."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if value is old:
                namespace[name] = new
                _patched.append((namespace, name))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Meta path finder that patches ``watchtower`` right after it is first imported."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "watchtower":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            patch_watchtower()
        except Exception as exc:  # never break the import of watchtower itself
            print(f"mwaa-logging: could not patch watchtower: {exc!r}", file=sys.stderr)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


def install_from_environment(environ: Any = None) -> bool:
    """Patch watchtower (now, or when it is imported) if ``MWAA_LOGGING_PATCH_WATCHTOWER`` is true.

    Called at interpreter start by the package's ``.pth`` file; never raises. Returns whether the
    patch is armed or applied.
    """
    environ = os.environ if environ is None else environ
    try:
        if str(environ.get(ENV_VAR, "")).strip().lower() not in _TRUE:
            return False
        if "watchtower" in sys.modules:
            patch_watchtower()
        elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
            sys.meta_path.insert(0, _PatchOnImport())
        return True
    except Exception as exc:
        print(f"mwaa-logging: {ENV_VAR} is set but the watchtower patch failed: {exc!r}", file=sys.stderr)
        return False
