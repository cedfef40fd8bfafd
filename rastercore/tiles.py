"""Tile sizes and the tiled writer every stage stores its output with.

:func:`write_tiles` stores a lazy (dask-backed) DataArray into a zarr store
block by block.  Three guarantees follow from its shape:

* **Bounded memory**: only a few blocks (two per worker thread) are in
  flight at a time, whatever the scene size (:func:`compute_bounded`).
* **Nothing half-written looks complete**: the store is built at
  ``<path>.partial`` and renamed to ``<path>`` only after every block is
  written; ``xarray.open_zarr(path)`` cannot open an interrupted run.
* **Resumable**: each finished block leaves a marker in a ledger inside the
  partial store; ``resume=True`` skips those blocks after a crash or
  ``kill -9``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import json
import math
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

import dask
import dask.local
import dask.threaded
import numpy as np
import xarray as xr

from rastercore.errors import CodecError, IncompleteStoreError, StoreExistsError
from rastercore.progress import Progress, ProgressMode

__all__ = ["choose_tile_size", "write_tiles", "compute_bounded", "partial_path", "store_codecs", "open_tile_array", "store_stamp", "CODECS",
           "DEFAULT_CODEC", "COMPLETE_ATTR", "DATA_VAR"]

COMPLETE_ATTR = "rastercore_complete"
DATA_VAR = "data"
LEDGER_DIR = "_rastercore_ledger"
MIN_TILE, MAX_TILE, TILE_STEP = 256, 2048, 256

CODECS = ("lz4", "zstd", "none")
"""Compression of stored tiles (``bench/bench_store.py`` measures them).  ``lz4``: Blosc LZ4 with
byte shuffle (zarr-python 2's default): the fastest to write and read, and smaller than zarr 3's
default zstd on float data.  ``zstd``: Blosc Zstd level 3 with byte shuffle: smaller, writes about
2x slower.  ``none``: raw bytes."""
DEFAULT_CODEC = "lz4"


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
    cluster_memory, cluster_threads = _cluster_resources()
    budget = memory_budget if memory_budget is not None else cluster_memory
    threads = threads or cluster_threads
    per_tile = budget / (2 * threads)  # two tiles in flight per thread
    bytes_per_px = n_bands * np.dtype(dtype).itemsize * expansion
    side = int(math.sqrt(per_tile / bytes_per_px)) // TILE_STEP * TILE_STEP
    return int(min(MAX_TILE, max(MIN_TILE, side)))


def store_codecs(codec: str) -> list:
    """The zarr v3 ``compressors`` list for a name in :data:`CODECS`."""
    from zarr.codecs import BloscCodec

    if codec == "lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    if codec == "zstd":
        return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]
    if codec == "none":
        return []
    raise CodecError(f"unknown codec {codec!r} for stored tiles; choose one of {', '.join(CODECS)}")


def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`write_tiles` builds ``path`` until it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def write_tiles(
    data: xr.DataArray,
    path: str | os.PathLike,
    *,
    tile_chunks: tuple[int, int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressMode = "auto",
    stage: str = "write",
    codec: str = DEFAULT_CODEC,
) -> Path:
    """Store a lazy DataArray into a zarr store, block by block.

    Parameters
    ----------
    data : xarray.DataArray
        Dims ``(..., y, x)``, dask-backed.  Each dask block along y/x is one
        unit of work; its bounds must fall on zarr chunk bounds.
    path : path-like
        The ``.zarr`` store to create.
    tile_chunks : (int, int), optional
        Zarr chunk shape along (y, x); default the dask chunk shape.  A dask
        block may span several zarr chunks (e.g. full-width strips read from
        a JPEG) but not part of one.
    overwrite : bool, default False
        Replace ``path`` if it exists (only once the new store is complete).
    resume : bool, default False
        Continue an interrupted run of the same job from ``<path>.partial``.
    progress : {"auto", "bar", "json", "none"}, default "auto"
        How to report progress.
    stage : str, default "write"
        Name shown in progress reports.
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the stored tiles (see :data:`CODECS`).

    Returns
    -------
    pathlib.Path
        ``path``, now a complete store.

    Raises
    ------
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    IncompleteStoreError
        ``resume`` was asked but the partial store belongs to another job.
    """
    path, partial = Path(path), partial_path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    compressors = store_codecs(codec)
    data = data.chunk({dim: -1 for dim in data.dims[:-2]})
    chunks = tile_chunks or (data.chunks[-2][0], data.chunks[-1][0])
    _check_block_alignment(data, chunks)
    fingerprint = _fingerprint(data, chunks, codec)
    if partial.exists() and not (resume and _fingerprint_of(partial) == fingerprint):
        if resume:
            raise IncompleteStoreError(
                f"{partial} was left by a different job (other inputs, shape or tiling); "
                "rerun without --resume to start over."
            )
        shutil.rmtree(partial)
    if not partial.exists():
        _create_store(data, partial, chunks, fingerprint, compressors)
    _write_blocks(data, partial, stage=stage, progress=progress)
    missing = [idx for idx, _ in _block_regions(data) if not (partial / LEDGER_DIR / _marker_name(idx)).exists()]
    if missing:
        raise IncompleteStoreError(f"{partial}: tiles {missing[:5]} were not written; rerun with --resume.")
    _finalise(partial, path)
    return path


def _check_block_alignment(data: xr.DataArray, chunks: tuple[int, int]) -> None:
    for axis, size in zip((-2, -1), chunks):
        bounds = np.cumsum(data.chunks[axis])[:-1]
        if np.any(bounds % size):
            raise ValueError(f"dask blocks along {data.dims[axis]} ({data.chunks[axis]}) "
                             f"do not fall on zarr chunk bounds of {size}")


def _fingerprint(data: xr.DataArray, chunks, codec: str) -> str:
    """Identify the job: same graph name, shape, dtype, tiling and codec means same output."""
    return json.dumps({"name": data.data.name, "shape": list(data.shape),
                       "dtype": str(data.dtype), "chunks": list(chunks), "codec": codec})


def _fingerprint_of(partial: Path) -> str | None:
    marker = partial / LEDGER_DIR / "job.json"
    return marker.read_text() if marker.exists() else None


def _create_store(data: xr.DataArray, partial: Path, chunks, fingerprint: str, compressors: list) -> None:
    """Write metadata and coordinates; no pixel data yet.

    The template holds one empty dask chunk, so xarray builds no per-tile
    store graph for data it is not going to write.
    """
    import dask.array as da

    template = data.copy(data=da.empty(data.shape, dtype=data.dtype, chunks=-1))
    # Fixed-width NumPy strings have no stable zarr v3 encoding; variable-length strings do.
    template = template.assign_coords({name: coord.astype(object) for name, coord in template.coords.items()
                                       if coord.dtype.kind == "U"})
    ds = template.to_dataset(name=DATA_VAR)
    ds.attrs["coordinates"] = " ".join(c for c in data.coords if c not in data.dims)
    encoding = {DATA_VAR: {"chunks": tuple(data.shape[:-2]) + tuple(chunks), "compressors": compressors}}
    if "_FillValue" not in data.attrs:  # no nodata: do not let xarray invent one
        encoding[DATA_VAR]["_FillValue"] = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        ds.to_zarr(partial, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=encoding)
    ledger = partial / LEDGER_DIR
    ledger.mkdir()
    (ledger / "job.json").write_text(fingerprint)


def _block_regions(data: xr.DataArray):
    """Yield ``(block index, (row slice, col slice))`` for every y/x dask block."""
    row_bounds = np.concatenate([[0], np.cumsum(data.chunks[-2])])
    col_bounds = np.concatenate([[0], np.cumsum(data.chunks[-1])])
    for i, j in itertools.product(range(len(data.chunks[-2])), range(len(data.chunks[-1]))):
        yield (i, j), (slice(int(row_bounds[i]), int(row_bounds[i + 1])),
                       slice(int(col_bounds[j]), int(col_bounds[j + 1])))


def open_tile_array(store: str | os.PathLike, mode: str = "r"):
    """The ``data`` array of a rastercore store, for tile reads and writes.

    Opened with the `zarrs <https://github.com/zarrs/zarrs-python>`_ codec
    pipeline (Rust; encodes and decodes without the GIL): with two threads a
    feature store was written 1.3x as fast as with zarr-python's own
    pipeline (``bench/bench_store.py``).  Only arrays opened here use it; zarr's
    global configuration is left as the user set it (the pipeline is fixed
    when an array is opened).  Opened arrays are kept per process (keyed by
    the store's metadata stamp, so a rewritten store is reopened): opening
    costs milliseconds, a tile write about ten.
    """
    import zarr

    path = str(Path(store).resolve())
    key = (path, mode, *store_stamp(path))
    with _ZARR_CONFIG_LOCK:
        array = _OPEN_ARRAYS.get(key)
        if array is None:
            with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
                array = zarr.open_array(store=path, path=DATA_VAR, mode=mode)
            _OPEN_ARRAYS[key] = array
            while len(_OPEN_ARRAYS) > 32:
                _OPEN_ARRAYS.pop(next(iter(_OPEN_ARRAYS)))
    return array


_ZARR_CONFIG_LOCK = threading.Lock()
_OPEN_ARRAYS: dict = {}


def store_stamp(store: str | os.PathLike) -> tuple[int, int, int]:
    """Identity of a store's current ``data`` array: (inode, mtime in ns, size) of its metadata file.

    Changes when the store is rewritten, so caches and dask names keyed on it
    never serve a previous store's chunks.
    """
    meta = os.stat(Path(store) / DATA_VAR / "zarr.json")
    return meta.st_ino, meta.st_mtime_ns, meta.st_size


def _store_block(block: np.ndarray, store: str, region: tuple[slice, slice], marker: str) -> int:
    """Write one block into the zarr array, then record it as done (runs in a task)."""
    target = open_tile_array(store, mode="r+")
    target[(Ellipsis, *region)] = block
    Path(marker).touch()
    return 1


def _write_blocks(data: xr.DataArray, partial: Path, *, stage: str, progress: ProgressMode) -> None:
    ledger = partial / LEDGER_DIR
    regions = list(_block_regions(data))
    todo = [(idx, region) for idx, region in regions if not (ledger / _marker_name(idx)).exists()]
    tasks = _tile_tasks(data.data, partial, ledger)
    with Progress(stage, len(regions), mode=progress, initial=len(regions) - len(todo)) as bar:
        for _ in compute_bounded(todo, tasks):
            bar.update()


def _tile_tasks(array, partial: Path, ledger: Path):
    """``item -> Delayed`` storing one block: the block's task culled from the graph, then the write.

    The graph is materialised once and each tile's subgraph culled from it
    (microseconds), instead of slicing the dask array per tile (milliseconds
    of graph building per tile in the driver, competing with the workers).
    The materialised graph is metadata, a few kB per tile (about 2.5 kB for
    an ingest, more for overlap graphs): it grows with the number of tiles,
    the pixels in flight do not.
    """
    from dask.delayed import Delayed
    from dask.optimization import cull

    graph = dict(array.__dask_graph__())
    lead = (0,) * (array.ndim - 2)
    token = "rastercore-store-" + dask.base.tokenize(array.name, str(partial))

    def task(item):
        idx, region = item
        block = (array.name, *lead, *idx)
        sub, _ = cull(graph, [block])
        done = (token, *idx)
        sub = dict(sub)
        sub[done] = (_store_block, block, str(partial), region, str(ledger / _marker_name(idx)))
        return Delayed(done, sub)

    return task


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
    threads = _worker_threads()
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
    scheduler = dask.base.get_scheduler()
    client = _client_of(scheduler)
    if client is not None:  # futures: only the caller's window holds them, so results are released as used
        yield client.compute
    elif scheduler is dask.threaded.get and threads > 1:
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="rastercore") as pool:
            yield lambda task: pool.submit(_compute_sync, task)
    else:
        yield lambda task: _Done(dask.compute(task)[0])


def _compute_sync(task):
    return dask.compute(task, scheduler="sync")[0]


def _client_of(scheduler):
    """The ``distributed.Client`` whose ``get`` ``scheduler`` is, else None."""
    if "distributed" not in sys.modules:
        return None
    from distributed import Client

    owner = getattr(scheduler, "__self__", None)
    return owner if isinstance(owner, Client) else None


class _Done:
    """An already computed result with a future's ``result()``."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def cancel(self) -> bool:
        return False


def _marker_name(idx: tuple[int, int]) -> str:
    return f"{idx[0]}_{idx[1]}.done"


def _cluster_resources() -> tuple[int, int]:
    """(memory budget in bytes, threads) of the active dask cluster, else of this machine."""
    client = _client_of(dask.base.get_scheduler())
    if client is not None:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
        threads = sum(w.get("nthreads", 1) for w in workers)
        if memory and threads:
            return memory, threads
    import psutil

    return psutil.virtual_memory().total // 2, os.cpu_count() or 1


def _worker_threads() -> int:
    """Threads the active dask scheduler runs at once."""
    scheduler = dask.base.get_scheduler()
    client = _client_of(scheduler)
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    if scheduler is dask.local.get_sync:
        return 1
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def _finalise(partial: Path, path: Path) -> None:
    """Mark the store complete, drop the ledger, and move it into place."""
    import zarr

    group = zarr.open_group(store=str(partial), mode="r+")
    group.attrs[COMPLETE_ATTR] = True
    shutil.rmtree(partial / LEDGER_DIR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata(str(partial))
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(partial, path)
