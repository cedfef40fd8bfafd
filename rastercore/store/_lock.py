"""One writer per output: a lock file beside it, naming the host and process that hold it.

``<output>.lock`` is created exclusively (``O_EXCL``) before any work on
the output and removed when the writer finishes, fails or is interrupted.
A second writer finds it and refuses with the holder's host, process and
start time.  A lock whose process is gone (same host, no such process) is
stale: the next writer takes it over with a notice.  Locks of other hosts
cannot be checked and are never taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from rastercore.errors import OutputLockedError

__all__ = ["output_lock", "lock_path"]


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``<path>.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``path`` for the enclosed work.

    Raises
    ------
    OutputLockedError
        Another live process holds it.
    """
    lock = lock_path(path)
    _acquire(lock, Path(path))
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _acquire(lock: Path, path: Path) -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if not _is_stale(holder, lock):
                raise OutputLockedError(
                    f"{path} is being written by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                    f"(since {holder.get('started', '?')}); wait for it to finish, or delete {lock} if that "
                    "process is gone.") from None
            warnings.warn(f"{lock} was left by process {holder.get('pid', '?')}, which is gone; taking it over.",
                          UserWarning, stacklevel=4)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        return
    raise OutputLockedError(f"{path}: another process took the lock {lock} at the same moment; try again.")


def _holder(lock: Path) -> dict:
    try:
        value = json.loads(lock.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict, lock: Path) -> bool:
    """A lock of this host whose process is gone, or an unreadable one older than a minute."""
    if not holder:
        try:
            return time.time() - lock.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    if pid == os.getpid():  # this very process writes it already (another thread)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False
