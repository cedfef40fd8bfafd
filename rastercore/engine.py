"""The tile engine: every per-tile computation with a halo goes through here.

A stage that needs each pixel's neighbourhood -- features, fused
prediction, sampling candidates, unsupervised maps, and any per-tile work
added later -- writes one function::

    def per_tile(window, tile, *extra_blocks) -> result

``window`` holds the bands asked for over the tile plus up to ``halo``
pixels on each side (fewer at the scene edge: nothing is invented there, so
a kernel's own edge rule applies exactly as on the whole image); ``tile``
says where the tile is and how much halo the window has on each side
(:class:`Tile`).  The engine plans the tiles once from the halo and feeds
the function in one of two ways, with identical windows:

* **from a store**: for an unchanged :func:`rastercore.open_stack` result,
  each task reads its window straight from the zarr store through the
  store's reader (:func:`rastercore.store.store_reader`), decompressing
  every chunk once;
* **through dask**: for any other dask- or NumPy-backed ``(band, y, x)``
  array, ``dask.array.overlap`` with ``boundary="none"`` adds the halo.

Hence tile by tile equals whole image, for any chunking and either path.
:func:`map_tiles` returns a lazy array of the per-tile results;
:func:`tile_tasks` returns one delayed task per tile for results that are
not pixels (e.g. the rows of a sample).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.array.core import normalize_chunks
from dask.array.overlap import ensure_minimum_chunksize
from dask.base import tokenize

from rastercore.checks import check_tile_size
from rastercore.errors import run_portably
from rastercore.store import store_reader

__all__ = ["Tile", "TilePlan", "LazyWindow", "plan_tiles", "map_tiles", "tile_tasks", "map_located"]

# Older dask unifies the chunks of map_blocks' inputs unless told not to; newer dask never does.
_MAP_BLOCKS_ALIGNS = "align_arrays" in inspect.signature(da.map_blocks).parameters


@dataclass(frozen=True)
class Tile:
    """Where a tile is, and how much halo its window carries.

    Attributes
    ----------
    index : (int, int)
        Block index along (y, x).
    rows, cols : slice
        The tile's pixels in scene coordinates (no halo).
    halo : (int, int, int, int)
        Pixels of halo in the window above, below, left and right of the
        tile (0 at the scene edge): ``window[:, top:top + height, left:left + width]``
        is the tile itself.  It is the ``crop`` argument of
        :func:`rastercore.features.features_for_block`.
    """

    index: tuple[int, int]
    rows: slice
    cols: slice
    halo: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the tile."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    @property
    def origin(self) -> tuple[int, int]:
        """Scene ``(row, column)`` of the tile's first pixel."""
        return self.rows.start, self.cols.start

    @property
    def window_origin(self) -> tuple[int, int]:
        """Scene ``(row, column)`` of the window's first pixel (the tile's origin less its halo)."""
        top, _, left, _ = self.halo
        return self.rows.start - top, self.cols.start - left

    def interior(self, window: np.ndarray) -> np.ndarray:
        """The tile's own pixels of ``window`` (a view, no halo)."""
        top, _, left, _ = self.halo
        height, width = self.shape
        return window[..., top:top + height, left:left + width]


class _Geometry:
    """Tile bounds and windows of a plan: what each task needs (small, picklable)."""

    def __init__(self, shape, halo, chunks, bands, reader):
        self.shape, self.halo, self.chunks, self.bands, self.reader = shape, halo, chunks, bands, reader

    def __dask_tokenize__(self):
        return ("rastercore-tile-geometry", self.reader.key if self.reader is not None else None, self.shape,
                self.halo, self.chunks, self.bands)

    def tile(self, i: int, j: int) -> Tile:
        r0, r1 = _bounds(self.chunks[0], i)
        c0, c1 = _bounds(self.chunks[1], j)
        height, width = self.shape
        # On the overlap path every block is at least ``halo`` thick (or alone on its
        # axis), so its halo is exactly this too: ``halo`` wherever there is a neighbour.
        halo = (min(self.halo, r0), min(self.halo, height - r1), min(self.halo, c0), min(self.halo, width - c1))
        return Tile((i, j), slice(r0, r1), slice(c0, c1), halo)

    def window(self, tile: Tile) -> np.ndarray:
        top, bottom, left, right = tile.halo
        rows = (tile.rows.start - top, tile.rows.stop + bottom)
        cols = (tile.cols.start - left, tile.cols.stop + right)
        return self.reader.read(self.bands, rows, cols)


class TilePlan:
    """The tiles of a ``(band, y, x)`` stack for a given halo: chunks, reader and windows.

    Build it with :func:`plan_tiles`.

    Attributes
    ----------
    chunks : (tuple, tuple)
        Chunks of the per-tile results along y and x: the asked tiles; on
        the overlap path, merged where a tile is thinner than the halo (a
        block can borrow its halo from its direct neighbours only).
    requested : (tuple, tuple)
        The asked tiles (what :func:`map_tiles` returns its result in).
    halo : int
    bands : list of int
    reader : rastercore.store.StoreWindows or None
        Set when windows are read straight from a store.
    """

    def __init__(self, stack: xr.DataArray, *, halo: int, bands: Sequence[int] | None = None,
                 chunks: tuple[tuple[int, ...], tuple[int, ...]] | None = None):
        if stack.ndim != 3:
            raise ValueError(f"the tile engine needs a (band, y, x) array, got dims {tuple(stack.dims)}")
        self.halo = int(halo)
        self.bands = list(range(stack.shape[0])) if bands is None else [int(b) for b in bands]
        shape = tuple(int(n) for n in stack.shape[1:])
        if chunks is None:
            chunks = stack.chunks[1:] if stack.chunks else normalize_chunks("auto", shape, dtype=stack.dtype)
        self.requested = tuple(tuple(int(c) for c in axis) for axis in chunks)
        self.reader = store_reader(stack)
        # Read from a store, a window may span any number of tiles; through dask.array.overlap,
        # a block may only borrow from its direct neighbours, so thin blocks are merged first.
        self.chunks = self.requested if self.reader is not None else tuple(
            _plan_axis(axis, self.halo) for axis in self.requested)
        self.geometry = _Geometry(shape, self.halo, self.chunks, self.bands, self.reader)
        self._stack = stack
        self._padded = None

    @property
    def grid(self) -> tuple[int, int]:
        """Number of tiles along (y, x)."""
        return len(self.chunks[0]), len(self.chunks[1])

    def tile(self, i: int, j: int) -> Tile:
        """Geometry of tile ``(i, j)``."""
        return self.geometry.tile(i, j)

    def tiles(self) -> list[Tile]:
        """Every tile, in row-major order."""
        ny, nx = self.grid
        return [self.tile(i, j) for i in range(ny) for j in range(nx)]

    def padded(self) -> da.Array | None:
        """The bands with their halo as overlapping dask blocks (the overlap path), else None."""
        if self.reader is not None:
            return None
        if self._padded is None:
            data = self._stack.data
            if not isinstance(data, da.Array):
                data = da.from_array(np.asarray(data), chunks=(-1, *self.chunks))
            if self.bands != list(range(data.shape[0])):
                data = data[self.bands]
            data = data.rechunk((-1, *self.chunks))
            depth = {0: 0, 1: _depth(self.chunks[0], self.halo), 2: _depth(self.chunks[1], self.halo)}
            self._padded = da.overlap.overlap(data, depth=depth, boundary="none") if depth[1] or depth[2] else data
        return self._padded

    def aligned(self, array) -> da.Array:
        """A ``(y, x)`` array (xarray, dask or NumPy) chunked like the plan's tiles, for per-tile extras."""
        array = array.data if isinstance(array, xr.DataArray) else array
        array = array if isinstance(array, da.Array) else da.from_array(np.asarray(array))
        return array.rechunk(self.chunks)


def plan_tiles(stack: xr.DataArray, *, halo: int, bands: Sequence[int] | Sequence[str] | None = None,
               tile_size: int | None = None) -> TilePlan:
    """Plan the tiles of ``stack`` for per-tile work that needs ``halo`` pixels of context.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)``, dask- or NumPy-backed; an unchanged
        :func:`rastercore.open_stack` result is read straight from its store.
    halo : int
        Pixels of context the per-tile function needs on each side.
    bands : sequence of int or str, optional
        Bands (indices, or names of the ``band`` coordinate) the windows
        hold, in this order; default all.
    tile_size : int, optional
        Square tiles of this side; default the stack's chunks.

    Returns
    -------
    TilePlan
    """
    if bands is not None and any(isinstance(b, str) for b in bands):
        names = [str(b) for b in stack[stack.dims[0]].values]
        bands = [names.index(str(b)) for b in bands]
    tile_size = check_tile_size(tile_size, "tile_size")
    chunks = None if tile_size is None else normalize_chunks((tile_size, tile_size), stack.shape[1:])
    return TilePlan(stack, halo=halo, bands=bands, chunks=chunks)


def map_tiles(stack: xr.DataArray | TilePlan, per_tile: Callable, *, halo: int = 0, n_out: int,
              dtype=np.float32, bands=None, tile_size: int | None = None, extras: Sequence = (),
              name: str = "rastercore-tiles", token=None) -> da.Array:
    """Lazy ``(n_out, y, x)`` array of ``per_tile`` applied to every tile plus halo.

    Parameters
    ----------
    stack : xarray.DataArray or TilePlan
        The ``(band, y, x)`` stack (then ``halo``, ``bands`` and ``tile_size``
        plan its tiles, see :func:`plan_tiles`), or a plan made before.
    per_tile : callable
        ``per_tile(window, tile, *extra_blocks) -> ndarray (n_out, height, width)``
        for the tile's own pixels.  It must be picklable and, to keep dask
        graphs light, should define ``__dask_tokenize__``.
    n_out : int
        Layers per pixel of the result.
    dtype : numpy dtype, default float32
        Type of the result.
    extras : sequence of (y, x) arrays
        Arrays on the stack's grid passed to ``per_tile`` as their tile's
        block (no halo), e.g. a target.
    name : str
        Prefix of the dask name.
    token : hashable, optional
        Identity of ``per_tile`` for the dask name (default: tokenised).

    Returns
    -------
    dask.array.Array
        Chunked like the asked tiles (the stack's chunks, or ``tile_size``).
    """
    plan = stack if isinstance(stack, TilePlan) else plan_tiles(stack, halo=halo, bands=bands, tile_size=tile_size)
    call = _TileCall(plan, per_tile)
    inputs = [plan.aligned(e) for e in extras]
    padded = plan.padded()
    if padded is not None:
        inputs.insert(0, padded)
    key = tokenize(call.geometry, per_tile if token is None else token, [e.name for e in inputs], n_out, dtype)
    options = {}
    if inputs and padded is None:
        options["new_axis"] = 0
    if inputs and _MAP_BLOCKS_ALIGNS:  # blocks pair up by index (padded blocks are larger than the tiles)
        options["align_arrays"] = False
    out = da.map_blocks(call, *inputs, chunks=((n_out,), *plan.chunks), dtype=dtype,
                        meta=np.empty((0, 0, 0), dtype), name=f"{name}-{key}", **options)
    return out.rechunk(((n_out,), *plan.requested)) if plan.chunks != plan.requested else out


def tile_tasks(stack: xr.DataArray | TilePlan, per_tile: Callable, *, halo: int = 0, bands=None,
               tile_size: int | None = None, extras: Sequence = (),
               tile_args: Mapping[tuple[int, int], tuple] | None = None,
               lazy: bool = False) -> list[tuple[Tile, object]]:
    """One delayed task per tile computing ``per_tile(window, tile, *extra_blocks)``; any result type.

    Same windows as :func:`map_tiles`; for results that are not pixel
    blocks (rows of a sample, statistics).  Compute them a few at a time
    with :func:`rastercore.scheduler.compute_bounded`.

    Parameters
    ----------
    tile_args : mapping of (i, j) to tuple, optional
        Only the tiles with these indices, each called as
        ``per_tile(window, tile, *extra_blocks, *tile_args[i, j])``: what one
        tile needs (e.g. the pixels to compute there) travels with its task only.
    lazy : bool, default False
        On a stored stack, give ``per_tile`` a :class:`LazyWindow` that reads
        only what it slices, instead of the whole window (an array otherwise).

    Returns
    -------
    list of (Tile, dask.delayed.Delayed)
        In row-major tile order.
    """
    plan = stack if isinstance(stack, TilePlan) else plan_tiles(stack, halo=halo, bands=bands, tile_size=tile_size)
    call = _TileCall(plan, per_tile, lazy)
    # Unoptimised: optimising each extra's graph on its own would fuse a read they share (the target under
    # both a sample's classes and its values) into each of them, reading it twice per tile.
    extra_blocks = [plan.aligned(e).to_delayed(optimize_graph=False) for e in extras]
    padded = plan.padded()
    windows = padded.to_delayed() if padded is not None else None
    tasks = []
    for tile in plan.tiles():
        i, j = tile.index
        if tile_args is not None and (i, j) not in tile_args:
            continue
        window = windows[0, i, j] if windows is not None else None
        own = () if tile_args is None else tuple(tile_args[i, j])
        tasks.append((tile, dask.delayed(call.run, pure=True)(tile, window, *[b[i, j] for b in extra_blocks], *own)))
    return tasks


def map_located(func: Callable, *args, chunks, dtype, name: str | None = None) -> da.Array:
    """Lazy array of ``func(*args, location=...)`` per block, made from nothing but the block's place.

    ``location`` is the block's ``(start, stop)`` along every axis of the
    result (``chunks``, normalised), worked out as each task runs from
    dask's lazy ``block_id``.  Dask's ``block_info`` would give the same,
    but dask builds it for every block when the graph is made, about 1 kB
    per tile held by the driver (``bench/bench_plan.py``).

    Parameters
    ----------
    func : callable
        ``func(*args, location=[(start, stop), ...]) -> ndarray`` of the block's shape; picklable.
    chunks : tuple of tuples
        Block sizes along every axis.
    dtype : numpy dtype
    name : str, optional
        The dask name (default: tokenised from ``func``, ``args`` and ``chunks``).
    """
    chunks = tuple(tuple(int(c) for c in axis) for axis in chunks)
    call = _Located(func, chunks)
    return da.map_blocks(call, *args, chunks=chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype),
                         **({"name": name} if name is not None else {}))


class _Located:
    """``func`` called with its block's location, from ``block_id`` (picklable, deterministic token)."""

    def __init__(self, func: Callable, chunks: tuple[tuple[int, ...], ...]):
        self.func, self.chunks = func, chunks
        self.bounds = [np.cumsum((0, *axis)) for axis in chunks]

    def __dask_tokenize__(self):
        return ("rastercore-located", tokenize(self.func), self.chunks)

    def __call__(self, *args, block_id=None):
        location = [(int(b[i]), int(b[i + 1])) for b, i in zip(self.bounds, block_id)]
        return self.func(*args, location=location)


class LazyWindow:
    """A tile's window on a stored stack, read only where it is sliced.

    Slicing it (``window[:, r0:r1, c0:c1]``, the last two axes as slices)
    reads those pixels through the store's chunk cache, decompressing only
    the chunks they touch; ``numpy.asarray(window)`` reads it all.  For
    per-tile work that needs a few small parts of a window, e.g. the patches
    around sparse pixels (:func:`tile_tasks` with ``lazy=True``).
    """

    def __init__(self, geometry: _Geometry, tile: Tile):
        self.geometry, self.tile = geometry, tile
        top, bottom, left, right = tile.halo
        height, width = tile.shape
        self.shape = (len(geometry.bands), height + top + bottom, width + left + right)
        self.dtype = geometry.reader.dtype

    def __getitem__(self, key):
        band, rows, cols = (*key, slice(None)) if len(key) == 2 else key
        if band != slice(None) or not isinstance(rows, slice) or not isinstance(cols, slice):
            raise TypeError("a LazyWindow is sliced as window[:, rows, cols], with slices")
        r0, r1, _ = rows.indices(self.shape[1])
        c0, c1, _ = cols.indices(self.shape[2])
        y, x = self.tile.window_origin
        return self.geometry.reader.read(self.geometry.bands, (y + r0, y + r1), (x + c0, x + c1))

    def __array__(self, dtype=None, copy=None):
        window = self.geometry.window(self.tile)
        return window if dtype is None else window.astype(dtype, copy=False)


class _TileCall:
    """The one task body: find the tile, get its window, call the per-tile function (picklable)."""

    def __init__(self, plan: TilePlan, per_tile: Callable, lazy: bool = False):
        self.per_tile, self.geometry, self.lazy = per_tile, plan.geometry, lazy

    def __dask_tokenize__(self):
        return ("rastercore-tile-call", self.geometry.__dask_tokenize__(), tokenize(self.per_tile), self.lazy)

    def run(self, tile: Tile, window: np.ndarray | None, *extras):
        """``per_tile`` on ``tile``: ``window`` is its overlapped block, or None to read it from the store."""
        return run_portably(self._run, tile, window, *extras)

    def _run(self, tile, window, *extras):
        if window is None:
            window = LazyWindow(self.geometry, tile) if self.lazy else self.geometry.window(tile)
        return self.per_tile(window, tile, *extras)

    def __call__(self, *blocks, block_id=None):
        # block_id, not block_info: dask builds block_info for every block when the graph is made (about
        # 1 kB per tile in the driver), block_id lazily as each task runs.
        tile = self.geometry.tile(*block_id[-2:])
        if self.geometry.reader is None:
            return self.run(tile, blocks[0], *blocks[1:])
        return self.run(tile, None, *blocks)


def _plan_axis(chunks: tuple[int, ...], halo: int) -> tuple[int, ...]:
    """Chunks at least ``halo`` thick (blocks merged where needed), or one chunk if the halo spans the axis."""
    if len(chunks) == 1 or halo == 0:
        return chunks
    if halo >= sum(chunks):
        return (sum(chunks),)
    return tuple(ensure_minimum_chunksize(halo, chunks))


def _depth(chunks: tuple[int, ...], halo: int) -> int:
    """Overlap depth along an axis: none when one block holds the whole axis."""
    return halo if len(chunks) > 1 else 0


def _bounds(chunks: tuple[int, ...], i: int) -> tuple[int, int]:
    start = int(sum(chunks[:i]))
    return start, start + int(chunks[i])
