"""The dask scheduler rastercore runs on: which one, how many threads, and a bounded window of work.

One notion of "the cluster" for the whole package:

* :func:`client` starts or connects to a scheduler (the CLI's
  ``--scheduler``; a local cluster by default) for the enclosed work.
* :func:`active_client` is the ``distributed.Client`` whose ``get`` is the
  active dask scheduler, else None; everything that submits work or sizes
  itself to the cluster asks it.
* :func:`compute_bounded` computes items with a bounded number in flight:
  what bounds every stage's memory.
* :func:`choose_tile_size` is the tile-size policy (memory budget per thread).

rastercore itself calls plain dask, so any scheduler the caller has set up
(a ``distributed.Client``, ``dask.config.set(scheduler=...)``) is used as is.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

import dask
import dask.local
import dask.threaded
import numpy as np

from rastercore.checks import check_scheduler
from rastercore.errors import SchedulerUnreachableError

__all__ = ["client", "SCHEDULER_ENV", "resolve_scheduler", "active_client", "cluster_error", "worker_threads", "cluster_resources",
           "compute_bounded", "choose_tile_size", "MIN_TILE", "MAX_TILE"]

SCHEDULER_ENV = "RASTERCORE_SCHEDULER"
MIN_TILE, MAX_TILE, TILE_STEP = 256, 2048, 256


def resolve_scheduler(scheduler: str | None = None) -> str:
    """The scheduler to use: the argument, else ``$RASTERCORE_SCHEDULER``, else ``"local"``."""
    return scheduler or os.environ.get(SCHEDULER_ENV) or "local"


@contextlib.contextmanager
def client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    processes: bool = True,
    connect_timeout: str = "10s",
    quiet: bool = False,
    progress: str = "bar",
) -> Iterator[object | None]:
    """Run the enclosed work on a dask scheduler; yield its client (or ``None``).

    Parameters
    ----------
    scheduler : str, optional
        ``"local"``: start a ``distributed.LocalCluster`` sized to this
        machine (the default); an address such as ``"tcp://host:8786"``:
        connect to an existing cluster; ``"threads"``: dask's threaded
        scheduler, no distributed; ``"sync"``: everything in this thread
        (debugging, tests).  Default: ``$RASTERCORE_SCHEDULER``, else ``"local"``.
    n_workers, threads_per_worker, memory_limit, processes
        LocalCluster sizing; default one worker process per four cores,
        each with all its cores as threads (the kernels release the GIL),
        sharing 80 % of the machine's memory.  Its workers run without
        distributed's profiler and malloc trimming (:data:`LOCAL_WORKER_CONFIG`)
        and log only critical messages: errors reach the caller as exceptions.
        Worker processes also keep their warnings to themselves (a library's
        warning in a task would print raw, once per worker); rastercore's own
        notices come from this process, where the inputs are opened and checked.
    connect_timeout : str, default "10s"
        How long to try to reach a scheduler given by address.
    quiet : bool, default False
        Do not print the dashboard address.
    progress : {"bar", "json", "none", "auto"}, default "bar"
        How the enclosed work reports progress; the line announcing a
        cluster (threads, dashboard) is part of it: a line of text with
        ``"bar"``, a JSON object with ``"json"`` (``{"event": "cluster",
        ...}``, so stderr holds only JSON lines), nothing with ``"none"``;
        ``"auto"`` is ``"bar"`` on a terminal and ``"none"`` otherwise.

    Yields
    ------
    distributed.Client or None
        ``None`` for ``"threads"`` and ``"sync"``.

    Raises
    ------
    rastercore.errors.ParameterError
        ``scheduler`` is neither a known name nor a scheduler address (before anything starts).
    SchedulerUnreachableError
        No scheduler answers at the address.
    """
    scheduler = check_scheduler(resolve_scheduler(scheduler))
    if scheduler in ("threads", "sync"):
        with dask.config.set(scheduler="synchronous" if scheduler == "sync" else "threads"):
            yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        # Worker processes started while SIGINT is ignored ignore it too: on Ctrl-C (sent to the whole process
        # group) this process stops the work and closes the cluster, and no worker prints a traceback.
        on_main_thread = threading.current_thread() is threading.main_thread()
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if on_main_thread else None
        try:
            with dask.config.set(LOCAL_WORKER_CONFIG):
                cluster = LocalCluster(**_local_sizing(n_workers, threads_per_worker, memory_limit),
                                       processes=processes, dashboard_address=":0", silence_logs=logging.CRITICAL)
        finally:
            if on_main_thread:
                signal.signal(signal.SIGINT, handler)
        with cluster, Client(cluster) as dask_client:
            if processes:
                dask_client.run(warnings.simplefilter, "ignore")
            _announce(dask_client, "local dask cluster", quiet, progress)
            yield dask_client
        return
    try:
        dask_client = Client(scheduler, timeout=connect_timeout)
    except OSError as err:
        raise SchedulerUnreachableError(
            f"could not reach the dask scheduler at {scheduler} ({err}); check the address "
            f"(--scheduler or ${SCHEDULER_ENV}) or leave it unset to start a local cluster."
        ) from err
    with dask_client:
        _announce(dask_client, f"dask cluster at {scheduler}", quiet, progress)
        yield dask_client


def _without_malloc_trim() -> dict:
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


LOCAL_WORKER_CONFIG = {
    # The statistical profiler samples every worker thread's stack every 10 ms; on 2 cores it cost a
    # third of the tile time (sampling a 25-Mpx scene: 5.2 s of task time with it, 3.8 s without).
    "distributed.worker.profile.enabled": False,
    # distributed sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's adaptive mmap
    # threshold: every large temporary array is then a fresh mmap, paid in page faults (about 10 %).
    "distributed.nanny.pre-spawn-environ": _without_malloc_trim(),
}
"""dask configuration of the local cluster :func:`client` starts (``bench/bench_stages.py`` measures it)."""


def _local_sizing(n_workers, threads_per_worker, memory_limit) -> dict:
    import psutil

    cores = os.cpu_count() or 1
    n_workers = n_workers or max(1, cores // 4)
    threads_per_worker = threads_per_worker or max(1, cores // n_workers)
    memory_limit = memory_limit or int(psutil.virtual_memory().total * 0.8 / n_workers)
    return {"n_workers": n_workers, "threads_per_worker": threads_per_worker, "memory_limit": memory_limit}


def _announce(dask_client, what: str, quiet: bool, progress: str) -> None:
    """One line on stderr: the cluster's threads and dashboard (a JSON object with ``progress="json"``)."""
    if quiet or progress == "none" or (progress == "auto" and not sys.stderr.isatty()):
        return
    threads, dashboard = sum(dask_client.nthreads().values()), dask_client.dashboard_link
    if progress == "json":
        line = json.dumps({"event": "cluster", "cluster": what, "threads": threads, "dashboard": dashboard})
    else:
        line = f"{what}: {threads} threads, dashboard {dashboard}"
    print(line, file=sys.stderr, flush=True)


def cluster_error(error: BaseException) -> Exception | None:
    """What a failure of the dask cluster means to the user, as one clear error; None for any other error.

    A scheduler that went away (``CommClosedError``, cancelled futures,
    timeouts talking to it) becomes :class:`rastercore.errors.ClusterLostError`,
    saying that finished tiles are kept and ``--resume`` goes on; a worker
    that cannot find a file becomes a :class:`rastercore.errors.WorkerError`
    noting that workers on other machines need paths they can see.
    """
    if "distributed" not in sys.modules:
        return None
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError

    from rastercore.errors import ClusterLostError, RasterCoreError, WorkerError

    if isinstance(error, (CommClosedError, CancelledError)) or (
            isinstance(error, (OSError, TimeoutError)) and "scheduler" in str(error).lower()):
        return ClusterLostError(
            f"lost the dask cluster ({type(error).__name__}: {error or 'connection closed'}); the tiles already "
            "written are kept: rerun the same command with --resume (on a running cluster, or --scheduler "
            "threads) to finish.")
    if isinstance(error, FileNotFoundError) and not isinstance(error, RasterCoreError):
        return WorkerError(
            f"a worker could not find a file ({error}); workers on other machines need absolute paths on a file "
            "system they share with this one.")
    return None


def active_client():
    """The ``distributed.Client`` that runs dask's work now, else None.

    That is the client whose ``get`` is the active dask scheduler (a client
    set as default, or ``dask.config.set(scheduler=client)``); with the
    threaded or synchronous scheduler active there is none, even if a
    client exists.  ``distributed`` is not imported when nothing has
    imported it.
    """
    if "distributed" not in sys.modules:
        return None
    from distributed import Client

    owner = getattr(dask.base.get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


def worker_threads() -> int:
    """Threads the active dask scheduler runs at once."""
    dask_client = active_client()
    if dask_client is not None:
        return max(1, sum(dask_client.nthreads().values()))
    if dask.base.get_scheduler() is dask.local.get_sync:
        return 1
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def cluster_resources() -> tuple[int, int]:
    """(memory budget in bytes, threads) of the active dask cluster, else of this machine."""
    dask_client = active_client()
    if dask_client is not None:
        workers = dask_client.scheduler_info(n_workers=-1)["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
        threads = sum(w.get("nthreads", 1) for w in workers)
        if memory and threads:
            return memory, threads
    import psutil

    return psutil.virtual_memory().total // 2, os.cpu_count() or 1


def choose_tile_size(
    n_bands: int,
    dtype,
    *,
    memory_budget: int | None = None,
    threads: int | None = None,
    expansion: int = 64,
) -> int:
    """Side of a square tile that keeps every worker thread within a memory budget.

    Parameters
    ----------
    n_bands : int
        Bands per pixel in the stack.
    dtype : numpy dtype
        Pixel type of the stack.
    memory_budget : int, optional
        Bytes the whole job may use; default the summed memory limit of the
        active dask cluster's workers, else half the machine's memory.
    threads : int, optional
        Tiles processed at once; default the active cluster's threads, else
        the number of CPU cores.
    expansion : int, default 64
        Working bytes per stored byte of a tile (features, halos,
        temporaries), so that later stages fit too.

    Returns
    -------
    int
        A multiple of 256 between 256 and 2048.
    """
    cluster_memory, cluster_threads = cluster_resources()
    budget = memory_budget if memory_budget is not None else cluster_memory
    threads = threads or cluster_threads
    per_tile = budget / (2 * threads)  # two tiles in flight per thread
    bytes_per_px = n_bands * np.dtype(dtype).itemsize * expansion
    side = int(math.sqrt(per_tile / bytes_per_px)) // TILE_STEP * TILE_STEP
    return int(min(MAX_TILE, max(MIN_TILE, side)))


def compute_bounded(items, make_task=None, *, per_thread: int = 2):
    """Yield ``(item, result)`` for every item, in order, with a bounded number of tasks in flight.

    This is what bounds every stage's memory: at most ``per_thread`` items
    per worker thread of the active scheduler are submitted or held at a
    time, each computed from its own culled subgraph, whatever the number
    of tiles.  It is a sliding window, not a sequence of batches: as soon as
    the oldest item is yielded the next one starts, so no thread waits for
    the slowest tile of a batch.

    With a ``distributed`` client the items run as futures on the cluster;
    with the threaded scheduler, one item per thread (each item's graph on
    that thread); with ``"sync"`` (or another scheduler), one item after
    another.

    Parameters
    ----------
    items : iterable
        Work units, in order.
    make_task : callable, optional
        Turns an item into a dask collection or delayed; default: the item is one.
        Called just before the item is submitted.
    per_thread : int, default 2
        Items per worker thread in flight.
    """
    items = list(items)
    threads = worker_threads()
    window = max(2, per_thread * threads)
    pending: collections.deque = collections.deque()
    with _task_runner(threads) as submit:
        try:
            for item in items:
                pending.append((item, submit(make_task(item) if make_task is not None else item)))
                if len(pending) >= window:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:  # an error or an abandoned loop: drop what has not started (or, on a cluster, not finished)
            for _, future in pending:
                future.cancel()


@contextlib.contextmanager
def _task_runner(threads: int):
    """A ``submit(task) -> future`` for the active dask scheduler (see :func:`compute_bounded`)."""
    dask_client = active_client()
    if dask_client is not None:  # futures: only the caller's window holds them, so results are released as used
        yield dask_client.compute
    elif dask.base.get_scheduler() is dask.threaded.get and threads > 1:
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="rastercore") as pool:
            yield lambda task: pool.submit(_compute_sync, task)
    else:
        yield lambda task: _Done(dask.compute(task)[0])


def _compute_sync(task):
    return dask.compute(task, scheduler="sync")[0]


class _Done:
    """An already computed result with a future's ``result()``."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def cancel(self) -> bool:
        return False
