"""How a rastercore store is laid out on disk, and how it is opened.

A store is a zarr v3 group holding one array ``data`` with dims
``(band, y, x)`` (``(feature, y, x)`` for feature stores, ``(y, x)`` for
single-layer outputs), its coordinates (names, pixel centres, rioxarray's
CF ``spatial_ref``) and the attribute :data:`COMPLETE_ATTR` once every tile
is written.  Plain ``xarray.open_zarr(path)["data"]`` reads it.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from rastercore.errors import CodecError, IncompleteStoreError, NotAStackError, SourceNotFoundError, StoreChangedError

__all__ = ["DATA_VAR", "COMPLETE_ATTR", "CODECS", "DEFAULT_CODEC", "store_codecs", "partial_path", "open_stack",
           "open_tile_array", "store_stamp", "check_stamp", "read_checked", "store_reader", "CheckedArray"]

DATA_VAR = "data"
COMPLETE_ATTR = "rastercore_complete"
READER_ENCODING = "rastercore_reader"
"""Key of ``DataArray.encoding`` under which :func:`open_stack` leaves the store's window reader."""

CODECS = ("lz4", "zstd", "none")
"""Compression of stored tiles (``bench/bench_store.py`` measures them).  ``lz4``: Blosc LZ4 with
byte shuffle (zarr-python 2's default): the fastest to write and read, and smaller than zarr 3's
default zstd on float data.  ``zstd``: Blosc Zstd level 3 with byte shuffle: smaller, writes about
2x slower.  ``none``: raw bytes."""
DEFAULT_CODEC = "lz4"


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
    """Where an output is built until it is complete: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def open_stack(path: str | os.PathLike, *, chunks: dict | None = None) -> xr.DataArray:
    """Open a stack written by :func:`rastercore.ingest` (or any rastercore store), lazily.

    Parameters
    ----------
    path : path-like
        The ``.zarr`` store.
    chunks : dict, optional
        Dask chunks to use instead of the stored tiles.

    Returns
    -------
    xarray.DataArray
        Dims ``(band, y, x)`` (``(feature, y, x)`` for a feature store,
        ``(y, x)`` for single-layer outputs), raw stored values (no masking:
        the nodata value is ``.rio.nodata``).  Unchanged, it carries the
        store's window reader (:func:`store_reader`), so the tile engine
        reads each tile plus halo straight from the store.

    Raises
    ------
    IncompleteStoreError
        Only the partial store of an interrupted run exists.
    NotAStackError
        ``path`` is not a rastercore store.
    """
    path = Path(path)
    if not path.exists():
        if partial_path(path).exists():
            raise IncompleteStoreError(
                f"{path} was never completed: an interrupted run left {partial_path(path)}. "
                "Rerun the same command with --resume to finish it, or with --overwrite to start over."
            )
        raise SourceNotFoundError(f"{path} does not exist; create it with `rastercore ingest`.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(path, mask_and_scale=False, chunks={} if chunks is None else chunks)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as err:
        raise NotAStackError(f"{path} is not a zarr store rastercore can open: {err}") from err
    if DATA_VAR not in ds:
        raise NotAStackError(f"{path} holds no '{DATA_VAR}' array; it was not written by rastercore.")
    if not ds.attrs.get(COMPLETE_ATTR, False):
        raise IncompleteStoreError(f"{path} is not marked complete; rerun the command that made it with --overwrite.")
    stack = _with_tile_reader(ds[DATA_VAR], path)
    for dim in ("band", "feature"):  # names as str, whatever zarr's string type
        if dim in stack.dims:
            stack = stack.assign_coords({dim: np.array([str(b) for b in stack[dim].values], dtype=object)})
    return stack


def _with_tile_reader(stack: xr.DataArray, path: Path) -> xr.DataArray:
    """``stack`` reading its chunks through :func:`open_tile_array`, with its window reader in ``encoding``.

    Same values and chunks as xarray's own reader (the store is opened
    without masking), with fewer layers per chunk and the zarrs pipeline.
    The dask name is a function of the store's path, metadata stamp and
    chunks, so a resumed job recognises its input, and any operation on the
    array renames it: that is how :func:`store_reader` knows the reader
    still describes the array.
    """
    from ._windows import StoreWindows

    stamp = store_stamp(path)
    chunks = stack.data.chunks
    name = "rastercore-stack-" + tokenize(str(path.resolve()), stamp, chunks)
    data = da.from_array(CheckedArray(path, stamp), chunks=chunks, name=name, lock=False, asarray=True,
                         inline_array=True)
    stack = stack.copy(data=data)
    stack.encoding[READER_ENCODING] = StoreWindows(path, name=name)
    return stack


def store_reader(stack: xr.DataArray):
    """The :class:`StoreWindows` reader of an unchanged :func:`open_stack` result, else None.

    The reader travels in ``stack.encoding``; it is used only while the
    array is still the one it was opened with (same dask name, shape and
    dtype), so a selection, a rechunk or arithmetic falls back to reading
    through dask.
    """
    reader = stack.encoding.get(READER_ENCODING)
    if reader is None or getattr(stack.data, "name", None) != reader.name:
        return None
    return reader if reader.shape == tuple(stack.shape) and reader.dtype == stack.dtype else None


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


class CheckedArray:
    """A store's ``data`` array for ``dask.array.from_array`` that refuses to mix tiles of two stores.

    Every read checks, after reading, that the store is still the one it
    was opened as (:func:`check_stamp`): a store replaced (``--overwrite``)
    or removed while a job reads it ends the job with
    :class:`rastercore.errors.StoreChangedError` rather than giving it some
    old and some new tiles.  Picklable (the zarr array is reopened per process).
    """

    def __init__(self, path, stamp: tuple[int, int, int]):
        self.path, self.stamp = str(Path(path).resolve()), tuple(stamp)
        array = open_tile_array(self.path)
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), array.ndim

    def __getitem__(self, key):
        return read_checked(self.path, self.stamp, key)


def read_checked(store: str, stamp: tuple[int, int, int], key):
    """``data[key]`` of ``store``, read and then checked to come from the store opened as ``stamp``."""
    try:
        values = np.asarray(open_tile_array(store)[key])
    except FileNotFoundError:  # removed meanwhile: check_stamp says so
        values = None
    check_stamp(store, stamp)
    return values


def check_stamp(store: str | os.PathLike, stamp: tuple[int, int, int]) -> None:
    """Raise :class:`rastercore.errors.StoreChangedError` unless ``store`` still has ``stamp``."""
    try:
        same = store_stamp(store) == tuple(stamp)
    except FileNotFoundError:
        same = False
    if not same:
        raise StoreChangedError(f"{store} was replaced or removed while it was being read (e.g. by an ingest "
                                "with --overwrite); nothing was written from it. Rerun once it is complete.")


def store_stamp(store: str | os.PathLike) -> tuple[int, int, int]:
    """Identity of a store's current ``data`` array: (inode, mtime in ns, size) of its metadata file.

    Changes when the store is rewritten, so caches and dask names keyed on it
    never serve a previous store's chunks.
    """
    meta = os.stat(Path(store) / DATA_VAR / "zarr.json")
    return meta.st_ino, meta.st_mtime_ns, meta.st_size
