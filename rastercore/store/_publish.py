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
  whatever the scene size.  An interrupted run's partial store is never
  discarded unasked: without ``resume`` or ``overwrite`` the writer refuses.

Every writer holds the output's lock (:func:`rastercore.store.output_lock`)
while it works, so a second writer of the same output refuses instead of
deleting the first one's work.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from rastercore.errors import IncompleteStoreError, OutputNotWritableError, StoreExistsError
from rastercore.progress import Progress, ProgressMode
from rastercore.scheduler import compute_bounded

from ._layout import COMPLETE_ATTR, DATA_VAR, DEFAULT_CODEC, READER_ENCODING, open_tile_array, partial_path, store_codecs
from ._lock import output_lock

__all__ = ["check_output", "publish", "writing", "write_tiles", "block_regions", "LEDGER_DIR"]

LEDGER_DIR = "_rastercore_ledger"


def check_output(*paths: str | os.PathLike | None, overwrite: bool = False) -> None:
    """The one check every writer makes before any work: each output may be written.

    ``None`` entries (outputs not asked for) are skipped.  A missing parent
    directory is created.

    Raises
    ------
    StoreExistsError
        An output exists and ``overwrite`` is false.
    OutputNotWritableError
        An output's directory cannot be created or written (read-only,
        not a directory).
    """
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise OutputNotWritableError(f"cannot write {path}: {parent} is not a directory.") from None
        except OSError as err:
            raise OutputNotWritableError(f"cannot write {path}: its directory {parent} cannot be created "
                                         f"({err.strerror or err}).") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputNotWritableError(f"cannot write {path}: {parent} is read-only; choose another output "
                                         "directory.")


def publish(partial: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished ``partial`` (file or directory) to ``path``, replacing what is there.

    A file replaces a file atomically.  A directory is swapped in by two
    renames (the old one aside, the new one in place) before the old one
    is deleted, so a reader sees the old store, no store, or the new one,
    and readers of the old store notice the change
    (:class:`rastercore.errors.StoreChangedError`) instead of mixing tiles.
    """
    partial, path = Path(partial), Path(path)
    if partial.is_dir() and path.exists():
        aside = path.with_name(f"{path.name}.replaced-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(path, aside)
        os.replace(partial, path)
        _remove(aside)
    else:
        os.replace(partial, path)
    return path


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def writing(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a single-file output at ``<path>.partial``; publish it as ``path`` when the block succeeds.

    Checks the output first (:func:`check_output`) and holds its lock
    (:func:`rastercore.store.output_lock`) throughout.  If the block raises,
    the partial file is removed and ``path`` is untouched.

    Examples
    --------
    >>> with writing("table.h5", overwrite=False) as tmp:
    ...     write_everything_to(tmp)
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    with output_lock(path):
        partial = partial_path(path)
        if partial.exists():  # left by an interrupted run: a single file cannot be resumed
            _remove(partial)
        try:
            yield partial
        except BaseException:
            if partial.exists():
                _remove(partial)
            raise
        check_output(path, overwrite=overwrite)  # it may have appeared meanwhile
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
        Replace ``path`` if it exists (only once the new store is complete),
        and start over rather than resume an interrupted run.
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
        An interrupted run left ``<path>.partial`` and neither ``resume``
        (finish it) nor ``overwrite`` (start over) was asked; or ``resume``
        was asked but the partial store belongs to another job.
    OutputLockedError
        Another process is writing ``path``.
    OutputNotWritableError
        The output directory is read-only, or the disk filled up.
    """
    path, partial = Path(path), partial_path(path)
    check_output(path, overwrite=overwrite)
    compressors = store_codecs(codec)
    data = data.chunk({dim: -1 for dim in data.dims[:-2]})
    chunks = tile_chunks or (data.chunks[-2][0], data.chunks[-1][0])
    _check_block_alignment(data, chunks)
    fingerprint = _fingerprint(data, chunks, codec)
    with output_lock(path):
        if partial.exists():
            _reuse_or_clear(partial, data, fingerprint, resume=resume, overwrite=overwrite)
        if not partial.exists():
            _create_store(data, partial, chunks, fingerprint, compressors)
        _write_blocks(data, partial, stage=stage, progress=progress)
        missing = [idx for idx, _ in block_regions(data) if not (partial / LEDGER_DIR / _marker_name(idx)).exists()]
        if missing:
            raise IncompleteStoreError(f"{partial}: tiles {missing[:5]} were not written; rerun with --resume.")
        _finalise(partial, path)
    return path


def _reuse_or_clear(partial: Path, data: xr.DataArray, fingerprint: str, *, resume: bool, overwrite: bool) -> None:
    """Keep an interrupted run's partial store to resume it, remove it to start over, or refuse to guess."""
    same_job = _fingerprint_of(partial) == fingerprint
    if resume and same_job:
        return
    if resume:
        raise IncompleteStoreError(
            f"{partial} was left by a different job (other inputs, shape, tiling or codec); "
            "rerun with --overwrite instead of --resume to start over.")
    if not overwrite:
        if not same_job:
            raise IncompleteStoreError(f"an interrupted run of another job (other inputs, shape, tiling or codec) "
                                       f"left {partial}; pass --overwrite to start over.")
        done = len(list((partial / LEDGER_DIR).glob("*.done")))
        total = len(data.chunks[-2]) * len(data.chunks[-1])
        raise IncompleteStoreError(
            f"an interrupted run left {partial} with {done} of {total} tiles; pass --resume to finish it "
            "or --overwrite to start over.")
    shutil.rmtree(partial)


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
    try:
        target = open_tile_array(store, mode="r+")
        target[(Ellipsis, *region)] = block
        Path(marker).touch()
    except (OSError, RuntimeError) as err:
        if not _disk_full(err):
            raise
        failure = OutputNotWritableError(
            f"the disk holding {Path(store).parent} is full ({shutil.disk_usage(Path(store).parent).free // 2**20} "
            f"MiB free) while writing {store}; free some space and rerun with --resume.")
    else:
        return 1
    raise failure  # nothing chained: it reaches the client as itself


def _disk_full(err: BaseException) -> bool:
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)


def _write_blocks(data: xr.DataArray, partial: Path, *, stage: str, progress: ProgressMode) -> None:
    ledger = partial / LEDGER_DIR
    regions = list(block_regions(data))
    todo = [(idx, region) for idx, region in regions if not (ledger / _marker_name(idx)).exists()]
    tasks = _tile_tasks(data.data, partial, ledger)
    with Progress(stage, len(regions), mode=progress, initial=len(regions) - len(todo)) as bar:
        for _ in compute_bounded(todo, tasks):
            bar.update()


BAND_TILES = 1024
"""Tiles whose tasks the driver holds materialised at once: the planning of a store is done by bands of
whole tile rows of about this many tiles, so its memory does not grow with the scene."""


def _tile_tasks(array, partial: Path, ledger: Path):
    """``item -> Delayed`` storing one block: the block's task culled from its band's graph, then the write.

    The graph is materialised one band of tile rows at a time (about
    :data:`BAND_TILES` tiles, culled from the high-level graph, which is
    lazy) and each tile's subgraph culled from its band (microseconds),
    instead of slicing the dask array per tile (milliseconds of graph
    building per tile in the driver, competing with the workers) or
    materialising the whole scene's graph (about 2 kB per tile: 50 MB for
    the 24,025 tiles of a 100-Gpx scene, ``bench/bench_plan.py``).  Items
    arrive in row-major order, so each band is materialised once.
    """
    from dask.delayed import Delayed
    from dask.optimization import cull

    graph = array.__dask_graph__()
    lead = (0,) * (array.ndim - 2)
    n_rows, n_cols = array.numblocks[-2:]
    band_rows = max(1, BAND_TILES // n_cols)
    token = "rastercore-store-" + dask.base.tokenize(array.name, str(partial))
    band: dict = {}

    def band_graph(row: int) -> dict:
        index = row // band_rows
        if index not in band:
            rows = range(index * band_rows, min((index + 1) * band_rows, n_rows))
            band.clear()
            band[index] = dict(graph.cull({(array.name, *lead, i, j) for i in rows for j in range(n_cols)}))
        return band[index]

    def task(item):
        idx, region = item
        block = (array.name, *lead, *idx)
        sub, _ = cull(band_graph(idx[0]), [block])
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
