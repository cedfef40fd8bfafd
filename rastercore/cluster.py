"""Getting a dask scheduler: a local cluster, an existing one, or none.

One entry point, :func:`client`, used by the CLI and available to library
users.  rastercore itself calls plain ``dask.compute``, so any scheduler the
caller has set up (a ``distributed.Client``, ``dask.config.set(scheduler=...)``)
is used as is.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import dask

from rastercore.errors import SchedulerUnreachableError

__all__ = ["client", "SCHEDULER_ENV", "resolve_scheduler"]

SCHEDULER_ENV = "RASTERCORE_SCHEDULER"
LOCAL_MODES = ("local", "threads", "sync")


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
        sharing 80 % of the machine's memory.
    connect_timeout : str, default "10s"
        How long to try to reach a scheduler given by address.
    quiet : bool, default False
        Do not print the dashboard address.

    Yields
    ------
    distributed.Client or None
        ``None`` for ``"threads"`` and ``"sync"``.
    """
    scheduler = resolve_scheduler(scheduler)
    if scheduler in ("threads", "sync"):
        with dask.config.set(scheduler="synchronous" if scheduler == "sync" else "threads"):
            yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(**_local_sizing(n_workers, threads_per_worker, memory_limit),
                               processes=processes, dashboard_address=":0")
        with cluster, Client(cluster) as dask_client:
            _announce(dask_client, "local dask cluster", quiet)
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
        _announce(dask_client, f"dask cluster at {scheduler}", quiet)
        yield dask_client


def _local_sizing(n_workers, threads_per_worker, memory_limit) -> dict:
    import psutil

    cores = os.cpu_count() or 1
    n_workers = n_workers or max(1, cores // 4)
    threads_per_worker = threads_per_worker or max(1, cores // n_workers)
    memory_limit = memory_limit or int(psutil.virtual_memory().total * 0.8 / n_workers)
    return {"n_workers": n_workers, "threads_per_worker": threads_per_worker, "memory_limit": memory_limit}


def _announce(dask_client, what: str, quiet: bool) -> None:
    if not quiet:
        threads = sum(dask_client.nthreads().values())
        print(f"{what}: {threads} threads, dashboard {dask_client.dashboard_link}", file=sys.stderr)

