"""Tile sizes and the tiled writer every stage stores its output with.

:func:`write_tiles` stores a lazy (dask-backed) DataArray into a zarr store
block by block.  Three guarantees follow from its shape:

* **Bounded memory**: only a batch of blocks (about two per worker thread)
  is in flight at a time, whatever the scene size.
* **Nothing half-written looks complete**: the store is built at
  ``<path>.partial`` and renamed to ``<path>`` only after every block is
  written; ``xarray.open_zarr(path)`` cannot open an interrupted run.
* **Resumable**: each finished block leaves a marker in a ledger inside the
  partial store; ``resume=True`` skips those blocks after a crash or
  ``kill -9``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import warnings
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from rastercore.errors import IncompleteStoreError, StoreExistsError
from rastercore.progress import Progress, ProgressMode

__all__ = ["choose_tile_size", "write_tiles", "compute_in_batches", "partial_path", "COMPLETE_ATTR", "DATA_VAR"]

COMPLETE_ATTR = "rastercore_complete"
DATA_VAR = "data"
LEDGER_DIR = "_rastercore_ledger"
MIN_TILE, MAX_TILE, TILE_STEP = 256, 2048, 256


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
    data = data.chunk({dim: -1 for dim in data.dims[:-2]})
    chunks = tile_chunks or (data.chunks[-2][0], data.chunks[-1][0])
    _check_block_alignment(data, chunks)
    fingerprint = _fingerprint(data, chunks)
    if partial.exists() and not (resume and _fingerprint_of(partial) == fingerprint):
        if resume:
            raise IncompleteStoreError(
                f"{partial} was left by a different job (other inputs, shape or tiling); "
                "rerun without --resume to start over."
            )
        shutil.rmtree(partial)
    if not partial.exists():
        _create_store(data, partial, chunks, fingerprint)
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


def _fingerprint(data: xr.DataArray, chunks) -> str:
    """Identify the job: same graph name, shape, dtype and tiling means same output."""
    return json.dumps({"name": data.data.name, "shape": list(data.shape),
                       "dtype": str(data.dtype), "chunks": list(chunks)})


def _fingerprint_of(partial: Path) -> str | None:
    marker = partial / LEDGER_DIR / "job.json"
    return marker.read_text() if marker.exists() else None


def _create_store(data: xr.DataArray, partial: Path, chunks, fingerprint: str) -> None:
    """Write metadata and coordinates; no pixel data yet.

    The template holds one empty dask chunk, so xarray builds no per-tile
    store graph for data it is not going to write.
    """
    import dask.array as da

    template = data.copy(data=da.empty(data.shape, dtype=data.dtype, chunks=-1))
    ds = template.to_dataset(name=DATA_VAR)
    ds.attrs["coordinates"] = " ".join(c for c in data.coords if c not in data.dims)
    encoding = {DATA_VAR: {"chunks": tuple(data.shape[:-2]) + tuple(chunks)}}
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


def _store_block(block: np.ndarray, store: str, region: tuple[slice, slice], marker: str) -> int:
    """Write one block into the zarr array, then record it as done (runs in a task)."""
    import zarr

    target = zarr.open_array(store=store, path=DATA_VAR, mode="r+")
    target[(Ellipsis, *region)] = block
    Path(marker).touch()
    return 1


def _write_blocks(data: xr.DataArray, partial: Path, *, stage: str, progress: ProgressMode) -> None:
    ledger = partial / LEDGER_DIR
    regions = list(_block_regions(data))
    todo = [(idx, region) for idx, region in regions if not (ledger / _marker_name(idx)).exists()]
    lead = (0,) * (data.ndim - 2)
    store_block = dask.delayed(_store_block, pure=False)

    def task(item):
        idx, region = item
        return store_block(data.data.blocks[lead + idx], str(partial), region, str(ledger / _marker_name(idx)))

    with Progress(stage, len(regions), mode=progress, initial=len(regions) - len(todo)) as bar:
        for _ in compute_in_batches(todo, task):
            bar.update()


def compute_in_batches(items, make_task=None, *, per_thread: int = 2):
    """Yield ``(item, result)`` for every item, computing a bounded batch of dask tasks at a time.

    This is what bounds every stage's memory: at most ``per_thread`` tasks per
    worker thread of the active scheduler are in flight, each computed from
    its own culled subgraph, whatever the number of tiles.

    Parameters
    ----------
    items : iterable
        Work units, in order.
    make_task : callable, optional
        Turns an item into a dask collection or delayed; default: the item is one.
    per_thread : int, default 2
        Tasks per worker thread in one batch.
    """
    items = list(items)
    size = max(2, per_thread * _worker_threads())
    for start in range(0, len(items), size):
        batch = items[start:start + size]
        tasks = [make_task(item) if make_task else item for item in batch]
        yield from zip(batch, dask.compute(*tasks))


def _marker_name(idx: tuple[int, int]) -> str:
    return f"{idx[0]}_{idx[1]}.done"


def _cluster_resources() -> tuple[int, int]:
    """(memory budget in bytes, threads) of the active dask cluster, else of this machine."""
    try:
        from distributed import default_client

        workers = default_client().scheduler_info(n_workers=-1)["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
        threads = sum(w.get("nthreads", 1) for w in workers)
        if memory and threads:
            return memory, threads
    except (ImportError, ValueError, TypeError):
        pass
    import psutil

    return psutil.virtual_memory().total // 2, os.cpu_count() or 1


def _worker_threads() -> int:
    """Threads the active dask scheduler runs at once."""
    try:
        from distributed import default_client

        return max(1, sum(default_client().nthreads().values()))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


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
