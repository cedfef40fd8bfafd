"""Publishing outputs: nothing half-written looks complete, an existing output is never replaced unasked.

Every output is built beside its final name and moved into place only when
complete:

* :func:`check_output` is the one "exists and no overwrite" rule, checked
  before any work starts;
* :func:`writing` builds a single-file output (a table, a GeoTIFF, a
  report) at ``<path>.partial`` and publishes it with one rename;
* :func:`write_tiles` stores a lazy DataArray into a zarr store block by
  block at ``<path>.partial``, with a **ledger** of finished blocks (a
  marker file per block, plus the job's fingerprint), so ``resume=True``
  computes only the missing blocks after a crash or ``kill -9``.  Only a
  few blocks are in flight at a time (:func:`rastercore.scheduler.compute_bounded`),
  whatever the scene size.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from rastercore.errors import IncompleteStoreError, StoreExistsError
from rastercore.progress import Progress, ProgressMode
from rastercore.scheduler import compute_bounded

from ._layout import COMPLETE_ATTR, DATA_VAR, DEFAULT_CODEC, READER_ENCODING, open_tile_array, partial_path, store_codecs

__all__ = ["check_output", "publish", "writing", "write_tiles", "block_regions", "LEDGER_DIR"]

LEDGER_DIR = "_rastercore_ledger"


def check_output(*paths: str | os.PathLike | None, overwrite: bool = False) -> None:
    """Refuse outputs that exist unless ``overwrite``: the one check every writer makes before any work.

    ``None`` entries (outputs not asked for) are skipped.

    Raises
    ------
    StoreExistsError
        One of ``paths`` exists and ``overwrite`` is false.
    """
    for path in paths:
        if path is not None and Path(path).exists() and not overwrite:
            raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")


def publish(partial: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished ``partial`` (file or directory) to ``path``, replacing what is there."""
    partial, path = Path(partial), Path(path)
    if path.exists() and partial.is_dir():
        _remove(path)
    os.replace(partial, path)
    return path


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def writing(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a single-file output at ``<path>.partial``; publish it as ``path`` when the block succeeds.

    Checks :func:`check_output` first and creates the parent directory.  If
    the block raises, the partial file is removed and ``path`` is untouched.

    Examples
    --------
    >>> with writing("table.h5", overwrite=False) as tmp:
    ...     write_everything_to(tmp)
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    if partial.exists():
        _remove(partial)
    try:
        yield partial
    except BaseException:
        if partial.exists():
            _remove(partial)
        raise
    publish(partial, path)


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
    check_output(path, overwrite=overwrite)
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
    missing = [idx for idx, _ in block_regions(data) if not (partial / LEDGER_DIR / _marker_name(idx)).exists()]
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
    template.encoding.pop(READER_ENCODING, None)
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


def block_regions(data: xr.DataArray):
    """Yield ``(block index, (row slice, col slice))`` for every y/x dask block."""
    row_bounds = np.concatenate([[0], np.cumsum(data.chunks[-2])])
    col_bounds = np.concatenate([[0], np.cumsum(data.chunks[-1])])
    for i, j in itertools.product(range(len(data.chunks[-2])), range(len(data.chunks[-1]))):
        yield (i, j), (slice(int(row_bounds[i]), int(row_bounds[i + 1])),
                       slice(int(col_bounds[j]), int(col_bounds[j + 1])))


def _store_block(block: np.ndarray, store: str, region: tuple[slice, slice], marker: str) -> int:
    """Write one block into the zarr array, then record it as done (runs in a task)."""
    target = open_tile_array(store, mode="r+")
    target[(Ellipsis, *region)] = block
    Path(marker).touch()
    return 1


def _write_blocks(data: xr.DataArray, partial: Path, *, stage: str, progress: ProgressMode) -> None:
    ledger = partial / LEDGER_DIR
    regions = list(block_regions(data))
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


def _marker_name(idx: tuple[int, int]) -> str:
    return f"{idx[0]}_{idx[1]}.done"


def _finalise(partial: Path, path: Path) -> None:
    """Mark the store complete, drop the ledger, and move it into place."""
    import zarr

    group = zarr.open_group(store=str(partial), mode="r+")
    group.attrs[COMPLETE_ATTR] = True
    shutil.rmtree(partial / LEDGER_DIR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata(str(partial))
    publish(partial, path)
