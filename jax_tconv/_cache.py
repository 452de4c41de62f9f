"""Files that remember measurements between processes, and measuring outside a trace.

`method="tune"`'s choices (`jax_tconv._tune`) and the machine's calibrated
rates that "auto" decides from (`jax_tconv._calibrate`) live in one folder:
``$JAX_TCONV_TUNE_CACHE``'s if set, else ``$XDG_CACHE_HOME/jax_tconv``, else
``~/.cache/jax_tconv``. Each file is JSON, written under a lock file
(``fcntl.flock`` where available) and replaced atomically (a temporary file
in the same folder, then `os.replace`), so that concurrent processes never
read half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax

__all__ = ["CACHE_ENV", "cache_path", "file_lock", "outside_traces", "write_json"]

#: Environment variable naming the tune cache file (read at call time); the
#: calibration lives beside it.
CACHE_ENV = "JAX_TCONV_TUNE_CACHE"

_T = TypeVar("_T")


def cache_path() -> pathlib.Path:
    """Where the cache lives: ``$JAX_TCONV_TUNE_CACHE``, else the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg and os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return base / "jax_tconv" / "tune.json"


@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """Hold ``PATH.lock`` exclusively (``fcntl.flock``); a no-op where fcntl is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic replace still holds
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def write_json(path: pathlib.Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, atomically (hold `file_lock` around read-merge-write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def outside_traces(fn: Callable[[], _T]) -> _T:
    """`fn()` on a fresh thread: JAX's trace state is per thread, so no tracer leaks in.

    The caller's x64 mode, which can be thread-local (``jax.enable_x64``), is
    carried over, so a float64 configuration is measured in float64.
    """
    x64 = bool(jax.config.read("jax_enable_x64"))
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with jax.enable_x64(x64):
                result["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    worker = threading.Thread(target=work, name="jax_tconv-tune")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
