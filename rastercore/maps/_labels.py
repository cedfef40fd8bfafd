"""Connected regions of a class map, found tile by tile and joined exactly across tile edges.

A region is a maximal set of same-class pixels connected through their 4
(or 8) neighbours; nodata pixels belong to no region.  Each tile is
labelled on its own by a numba kernel (two-pass union-find labelling, the
labels numbered in raster order of their first pixel).  Only the regions
that touch a tile side facing another tile -- *fragments* -- can continue
elsewhere: the labels along those sides are kept, and a union-find over the
pixel pairs that straddle tile edges joins the fragments into shared
regions, the way :func:`dask_image.ndmeasure.label` merges the labels of
its chunks.  The global tables therefore hold only the fragments and shared
regions (they grow with the length of the tile edges, not with the number
of pixels); a region inside one tile is known only to that tile's task.

:func:`label_regions` gives the lazy global label map and the table of
shared regions; the sieve (:func:`rastercore.maps.sieve`) builds on the
same passes (:class:`Regions`, :func:`tile_regions`, :func:`boundary_pairs`,
:func:`resolve_chains`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dask
import dask.array as da
import numba
import numpy as np
import xarray as xr
from dask.base import tokenize

from rastercore.checks import check_choice
from rastercore.engine import Tile, plan_tiles, tile_tasks
from rastercore.errors import ParameterError
from rastercore.predict import categorical_layer
from rastercore.progress import Progress, ProgressMode
from rastercore.scheduler import compute_bounded
from rastercore.stack import nodata_of

__all__ = ["label_regions", "find_regions", "Regions", "ClassMap", "TileRegions", "tile_regions", "class_codes",
           "codes_to_values", "boundary_pairs", "lazy_tiles", "resolve_chains", "check_connectivity", "NODATA_CODE",
           "FAIL", "SUCCESS", "DEPENDS"]

NODATA_CODE = np.iinfo(np.int64).min
"""The int64 code of a nodata pixel inside the kernels."""

FAIL, SUCCESS, DEPENDS = 0, 1, 2
"""Outcomes of following a chain of pointers (:func:`resolve_chains`)."""

def check_connectivity(connectivity) -> int:
    """4 or 8, else a :class:`ParameterError` naming the option."""
    return int(check_choice(connectivity, "connectivity (--connectivity)", (4, 8)))


def class_codes(values: np.ndarray, nodata=None) -> np.ndarray:
    """Class values as int64 codes, :data:`NODATA_CODE` where they are nodata (NaN, ±inf or ``nodata``)."""
    values = np.asarray(values)
    valid = np.isfinite(values) if values.dtype.kind in "fc" else np.ones(values.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= values != nodata
    codes = np.full(values.shape, NODATA_CODE, np.int64)
    codes[valid] = values[valid].astype(np.int64)
    return codes


def codes_to_values(codes: np.ndarray, nodata, dtype) -> np.ndarray:
    """Codes back to class values of ``dtype``, ``nodata`` (else 0) where :data:`NODATA_CODE`."""
    fill = nodata if nodata is not None else 0
    return np.where(codes == NODATA_CODE, fill, codes).astype(dtype)


# --- kernels ---------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def _union(parent, a, b):
    """Join the sets of ``a`` and ``b``; the smaller root stays root (so roots are first appearances)."""
    a, b = _find(parent, a), _find(parent, b)
    if b < a:
        a, b = b, a
    parent[b] = a
    return a


@numba.njit(cache=True, nogil=True)
def _join(parent, label, other):
    return other if label < 0 else _union(parent, label, other)


@numba.njit(cache=True, nogil=True)
def _label_kernel(codes, eight):
    """Two-pass union-find labelling of same-code pixels: labels (-1 nodata), sizes and codes per label."""
    height, width = codes.shape
    labels = np.empty((height, width), np.int32)
    parent = np.empty(height * width + 1, np.int32)
    n = 0
    for y in range(height):
        for x in range(width):
            c = codes[y, x]
            label = -1
            if c != NODATA_CODE:
                if x > 0 and codes[y, x - 1] == c:
                    label = labels[y, x - 1]
                if y > 0:
                    if codes[y - 1, x] == c:
                        label = _join(parent, label, labels[y - 1, x])
                    if eight and x > 0 and codes[y - 1, x - 1] == c:
                        label = _join(parent, label, labels[y - 1, x - 1])
                    if eight and x + 1 < width and codes[y - 1, x + 1] == c:
                        label = _join(parent, label, labels[y - 1, x + 1])
                if label < 0:
                    parent[n] = n
                    label = n
                    n += 1
            labels[y, x] = label
    final = np.empty(n, np.int32)
    k = 0
    for i in range(n):  # a root is its set's smallest label, so roots come in raster order of first pixels
        root = _find(parent, i)
        if root == i:
            final[i] = k
            k += 1
        else:
            final[i] = final[root]
    sizes = np.zeros(k, np.int64)
    classes = np.zeros(k, np.int64)
    for y in range(height):
        for x in range(width):
            if labels[y, x] >= 0:
                label = final[labels[y, x]]
                labels[y, x] = label
                sizes[label] += 1
                classes[label] = codes[y, x]
    return labels, sizes, classes


@numba.njit(cache=True, nogil=True)
def _sides_kernel(labels, n, top, bottom, left, right):
    """True for the labels on the tile sides that face another tile."""
    height, width = labels.shape
    edge = np.zeros(n, np.bool_)
    for x in range(width):
        if top and labels[0, x] >= 0:
            edge[labels[0, x]] = True
        if bottom and labels[height - 1, x] >= 0:
            edge[labels[height - 1, x]] = True
    for y in range(height):
        if left and labels[y, 0] >= 0:
            edge[labels[y, 0]] = True
        if right and labels[y, width - 1] >= 0:
            edge[labels[y, width - 1]] = True
    return edge


@numba.njit(cache=True, nogil=True)
def _offer(best, owner, size, key, target):
    """GDAL's "largest neighbour": a larger region wins; of equal ones, the first met (smallest key)."""
    if best[owner, 0] < 0 or size > best[owner, 1] or (size == best[owner, 1] and key < best[owner, 2]):
        best[owner, 0] = target
        best[owner, 1] = size
        best[owner, 2] = key


@numba.njit(cache=True, nogil=True)
def _neighbour_kernel(labels, sizes, eight, row0, col0, scene_width):
    """Each label's largest neighbour within the tile: rows ``(label or -1, its size, key of first meeting)``.

    Pixels are met in GDAL's order (``GDALSieveFilter``): row by row, each
    pixel against the one above, above-left, above-right (8-connectivity)
    and to its left.  The key of a meeting is that order over the whole
    scene, so meetings in different tiles compare as on the whole image.
    """
    height, width = labels.shape
    best = np.full((sizes.shape[0], 3), -1, np.int64)
    for y in range(height):
        base = ((row0 + y) * scene_width + col0) * 4
        for x in range(width):
            a = labels[y, x]
            if a < 0:
                continue
            key = base + x * 4
            for step in range(4):
                if step == 0 and y > 0:
                    b = labels[y - 1, x]
                elif step == 1 and eight and y > 0 and x > 0:
                    b = labels[y - 1, x - 1]
                elif step == 2 and eight and y > 0 and x + 1 < width:
                    b = labels[y - 1, x + 1]
                elif step == 3 and x > 0:
                    b = labels[y, x - 1]
                else:
                    continue
                if b >= 0 and b != a:
                    _offer(best, a, sizes[b], key + step, b)
                    _offer(best, b, sizes[a], key + step, a)
    return best


@numba.njit(cache=True, nogil=True)
def resolve_chains(following, kind, value):
    """Follow pointers to their end: the outcome ``(kind, value)`` of arriving at each node.

    Node ``i`` either points on (``following[i] >= 0``) or ends a chain with
    its own ``(kind[i], value[i])``.  A chain that comes back on itself ends
    in :data:`FAIL`, as ``GDALSieveFilter`` gives up on a loop of small
    polygons.
    """
    n = following.shape[0]
    out_kind = kind.copy()
    out_value = value.copy()
    state = np.zeros(n, np.int8)  # 0 unseen, 1 on the current walk, 2 resolved
    path = np.empty(n, np.int64)
    for start in range(n):
        depth = 0
        node = start
        while True:
            if state[node] == 2:
                k, v = out_kind[node], out_value[node]
                break
            if state[node] == 1:
                k, v = FAIL, 0
                break
            if following[node] < 0:
                k, v = kind[node], value[node]
                break
            state[node] = 1
            path[depth] = node
            depth += 1
            node = following[node]
        for i in range(depth):
            out_kind[path[i]] = k
            out_value[path[i]] = v
            state[path[i]] = 2
    return out_kind, out_value


@numba.njit(cache=True, nogil=True)
def _union_pairs(parent, classes, a, b):
    for i in range(a.shape[0]):
        if classes[a[i]] == classes[b[i]]:
            _union(parent, a[i], b[i])


@numba.njit(cache=True, nogil=True)
def _roots(parent):
    out = np.empty(parent.shape[0], np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


@numba.njit(cache=True, nogil=True)
def _row_pairs(above, below, row, scene_width, eight):
    """Meetings across a horizontal tile edge: ``below`` is scene row ``row``, ``above`` the row before.

    Pixel ``(row, x)`` meets, in GDAL's order, the pixel above it and (8-connectivity)
    the ones above-left and above-right.
    """
    n = below.shape[0]
    out = np.empty((3 * n, 3), np.int64)
    m = 0
    for x in range(n):
        if below[x] < 0:
            continue
        key = (row * scene_width + x) * 4
        for step in range(3 if eight else 1):
            other = x if step == 0 else (x - 1 if step == 1 else x + 1)
            if 0 <= other < n and above[other] >= 0:
                out[m, 0], out[m, 1], out[m, 2] = below[x], above[other], key + step
                m += 1
    return out[:m]


@numba.njit(cache=True, nogil=True)
def _column_pairs(left, right, col, scene_width, eight, first_row):
    """Meetings across a vertical tile edge at column ``col`` (``left`` is column ``col - 1``)."""
    n = left.shape[0]
    out = np.empty((3 * n, 3), np.int64)
    m = 0
    for y in range(n):
        key = (y * scene_width + col) * 4
        if right[y] >= 0 and left[y] >= 0:  # (y, col) meets (y, col - 1) on its left
            out[m, 0], out[m, 1], out[m, 2] = right[y], left[y], key + 3
            m += 1
        if not eight or first_row[y]:  # meetings with the row above across a tile row edge belong to the rows
            continue
        if right[y] >= 0 and left[y - 1] >= 0:  # (y, col) meets (y - 1, col - 1) above-left
            out[m, 0], out[m, 1], out[m, 2] = right[y], left[y - 1], key + 1
            m += 1
        if left[y] >= 0 and right[y - 1] >= 0:  # (y, col - 1) meets (y - 1, col) above-right
            out[m, 0], out[m, 1], out[m, 2] = left[y], right[y - 1], key - 4 + 2
            m += 1
    return out[:m]


# --- one tile ----------------------------------------------------------------------------------------------------


@dataclass
class TileRegions:
    """The regions of one tile.

    Attributes
    ----------
    labels : ndarray of int32, (height, width)
        Local labels, numbered in raster order of their first pixel; -1 at nodata.
    sizes, classes : ndarray of int64
        Pixels and class code of each local label.
    edge : ndarray of bool
        Labels that touch a tile side facing another tile (fragments).
    fragments : ndarray of int32
        Labels of the fragments, ascending: fragment ``i`` of the tile is ``fragments[i]``.
    """

    labels: np.ndarray
    sizes: np.ndarray
    classes: np.ndarray
    edge: np.ndarray
    fragments: np.ndarray

    def fragment_index(self) -> np.ndarray:
        """Per label: its fragment number, or -1 inside the tile."""
        index = np.full(self.sizes.shape[0], -1, np.int64)
        index[self.fragments] = np.arange(self.fragments.shape[0])
        return index

    def neighbours(self, sizes: np.ndarray, tile: Tile, scene_width: int, eight: bool) -> np.ndarray:
        """Each label's largest neighbour in the tile, by ``sizes``: rows ``(label or -1, size, key)``."""
        return _neighbour_kernel(self.labels, sizes, eight, tile.rows.start, tile.cols.start, scene_width)


def tile_regions(codes: np.ndarray, tile: Tile, scene_shape: tuple[int, int], connectivity: int) -> TileRegions:
    """Label the same-class regions of one tile of codes (:func:`class_codes`) and find its fragments."""
    labels, sizes, classes = _label_kernel(codes, connectivity == 8)
    height, width = scene_shape
    edge = _sides_kernel(labels, sizes.shape[0], tile.rows.start > 0, tile.rows.stop < height,
                         tile.cols.start > 0, tile.cols.stop < width)
    return TileRegions(labels, sizes, classes, edge, np.flatnonzero(edge).astype(np.int32))


# --- the class map on the tile engine ----------------------------------------------------------------------------


class CodesTile:
    """Per-tile function: the tile's classes as int64 codes (:func:`class_codes`)."""

    def __init__(self, nodata):
        self.nodata = nodata

    def __dask_tokenize__(self):
        return ("rastercore-class-codes", repr(self.nodata))

    def __call__(self, window: np.ndarray, tile: Tile) -> np.ndarray:
        return class_codes(tile.interior(window)[0], self.nodata)


@dataclass
class ClassMap:
    """A class map ready for the tile engine, and how to give results back in the caller's form.

    Build it with :meth:`coerce`.

    Attributes
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` holding the class layer.
    band : int
        Index of the class layer in ``stack``.
    nodata : number or None
        Nodata value (NaN for float maps).
    tile_size : int or None
        Square tiles of this side; default the map's own chunks.
    given : object
        The caller's array (NumPy, dask or xarray), for :meth:`result`.
    """

    stack: xr.DataArray
    band: int
    nodata: object
    tile_size: int | None
    given: object

    @classmethod
    def coerce(cls, classes, *, nodata=None, tile_size: int | None = None, what: str = "classes") -> ClassMap:
        """Accept a ``(y, x)`` NumPy, dask or xarray class map, or a ``(band, y, x)`` mosaic.

        A mosaic's class layer is ``class`` (else ``cluster``, see
        :func:`rastercore.predict.categorical_layer`), or its only layer.
        """
        band = 0
        if isinstance(classes, xr.DataArray):
            stack = classes
            if stack.ndim == 2:
                stack = stack.expand_dims("band")
            elif stack.ndim == 3 and stack.shape[0] > 1:
                name = categorical_layer([str(b) for b in stack[stack.dims[0]].values])
                if name is None:
                    raise ParameterError(f"{what} has layers {list(map(str, stack[stack.dims[0]].values))} but no "
                                         "class layer ('class' or 'cluster'); give a class map.")
                band = [str(b) for b in stack[stack.dims[0]].values].index(name)
            if nodata is None:
                nodata = nodata_of(stack)
        else:
            data = classes if isinstance(classes, da.Array) else np.asarray(classes)
            if data.ndim != 2:
                raise ParameterError(f"{what} must be a (y, x) class map, got an array of shape {data.shape}.")
            stack = xr.DataArray(data[np.newaxis], dims=("band", "y", "x"))
        if stack.ndim != 3 or stack.dtype.kind not in "iuf":
            raise ParameterError(f"{what} must be a (y, x) map of integer class codes, got {stack.dtype} with dims "
                                 f"{tuple(stack.dims)}.")
        if nodata is None and stack.dtype.kind == "f":
            nodata = np.nan
        return cls(stack, band, nodata, tile_size, classes)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the map."""
        return int(self.stack.shape[1]), int(self.stack.shape[2])

    @property
    def dtype(self) -> np.dtype:
        """The class map's type, kept by every result."""
        return self.stack.dtype

    def plan(self, halo: int = 0):
        """The tiles (:func:`rastercore.engine.plan_tiles`) of the class layer for ``halo``."""
        return plan_tiles(self.stack, halo=halo, bands=[self.band], tile_size=self.tile_size)

    def codes(self) -> list[tuple[Tile, object]]:
        """One delayed task per tile giving its codes (:func:`class_codes`), in row-major order."""
        return tile_tasks(self.plan(0), CodesTile(self.nodata))

    def result(self, data: da.Array):
        """``data`` ``(y, x)`` (lazy) in the form the caller gave: NumPy (computed), dask or xarray."""
        given = self.given
        if isinstance(given, xr.DataArray):
            out = given.copy(data=data) if given.ndim == 2 else given.isel({given.dims[0]: [self.band]}).copy(
                data=data[np.newaxis])
            out.encoding = {k: v for k, v in given.encoding.items() if k in ("_FillValue", "dtype")}
            return out
        return data if isinstance(given, da.Array) else data.compute()


def lazy_tiles(class_map: ClassMap, tiles: list[tuple[Tile, object]], func: Callable, args: list, dtype,
               name: str) -> da.Array:
    """A lazy ``(y, x)`` array of ``func(codes, *args[t])`` per tile: each task carries only its own tile's args."""
    plan = class_map.plan(0)
    ny, nx = plan.grid
    token = tokenize(name, func, [t.key for _, t in tiles], args)
    blocks = [[None] * nx for _ in range(ny)]
    for (tile, codes), extra in zip(tiles, args):
        i, j = tile.index
        task = dask.delayed(func, pure=True)(codes, *extra, dask_key_name=f"{name}-{token}-{i}-{j}")
        blocks[i][j] = da.from_delayed(task, tile.shape, dtype=dtype, name=f"{name}-block-{token}-{i}-{j}")
    return da.block(blocks)


# --- the whole map -----------------------------------------------------------------------------------------------


class SummaryTile:
    """First pass over a tile: its regions, reduced to what other tiles need (its fragments and their sides)."""

    def __init__(self, scene_shape, connectivity):
        self.scene_shape, self.connectivity = scene_shape, connectivity

    def __dask_tokenize__(self):
        return ("rastercore-region-summary", self.scene_shape, self.connectivity)

    def __call__(self, codes: np.ndarray, tile: Tile) -> dict:
        regions = tile_regions(codes, tile, self.scene_shape, self.connectivity)
        index = np.append(regions.fragment_index(), -1)  # label -1 (nodata) indexes the last entry
        height, width = self.scene_shape
        lines = {"top": (tile.rows.start > 0, regions.labels[0]),
                 "bottom": (tile.rows.stop < height, regions.labels[-1]),
                 "left": (tile.cols.start > 0, regions.labels[:, 0]),
                 "right": (tile.cols.stop < width, regions.labels[:, -1])}
        return {"sizes": regions.sizes[regions.fragments], "classes": regions.classes[regions.fragments],
                "n_inside": int(regions.sizes.shape[0] - regions.fragments.shape[0]),
                "sides": {side: index[labels].astype(np.int32) for side, (faces, labels) in lines.items() if faces}}


@dataclass
class Regions:
    """The connected regions of a class map, found tile by tile (:func:`label_regions`).

    Regions inside one tile are known only to their tile (``n_inside``);
    the tables here hold the regions that touch a tile side facing another
    tile (*shared* regions), and the fragment numbers along those sides, so
    they grow with the tile edges, not with the pixels.

    Attributes
    ----------
    class_map : ClassMap
        The map and its tiles.
    connectivity : int
        4 or 8.
    tiles : list of (Tile, Delayed)
        Per tile, in row-major order, the task giving its codes.
    grid : (int, int)
        Tiles along y and x.
    offsets : ndarray of int64
        Per tile, the number of its first fragment among all fragments (and the total last).
    sides : list of dict
        Per tile, its fragment numbers (-1: none) along each side facing another tile.
    fragment_region : ndarray of int64
        Per fragment, its shared region.
    sizes, classes : ndarray of int64
        Per shared region: its pixels (over every tile) and class code.
    n_inside : ndarray of int64
        Per tile, its regions that touch no facing side.
    """

    class_map: ClassMap
    connectivity: int
    tiles: list
    grid: tuple
    offsets: np.ndarray
    sides: list
    fragment_region: np.ndarray
    sizes: np.ndarray
    classes: np.ndarray
    n_inside: np.ndarray

    @property
    def n_shared(self) -> int:
        """Regions that cross or touch a tile edge (numbered first, from 0)."""
        return int(self.sizes.shape[0])

    @property
    def n_regions(self) -> int:
        """All regions of the map."""
        return self.n_shared + int(self.n_inside.sum())

    def tile_fragments(self, t: int) -> np.ndarray:
        """Shared region of each fragment of tile number ``t``."""
        return self.fragment_region[self.offsets[t]:self.offsets[t + 1]]

    def boundary_pairs(self):
        """Fragment meetings across tile edges, edge by edge (see :func:`boundary_pairs`)."""
        return boundary_pairs(self.sides, [tile for tile, _ in self.tiles], self.grid, self.class_map.shape,
                              self.offsets, self.connectivity == 8)

    @property
    def labels(self) -> da.Array:
        """Lazy ``(y, x)`` int64 map of region ids (-1 at nodata): shared regions first, then each tile's own."""
        first = self.n_shared + np.concatenate([[0], np.cumsum(self.n_inside)[:-1]])
        args = [(tile, self.class_map.shape, self.connectivity, self.tile_fragments(t), int(first[t]))
                for t, (tile, _) in enumerate(self.tiles)]
        return lazy_tiles(self.class_map, self.tiles, _global_labels, args, np.int64, "region-labels")


def _global_labels(codes, tile, scene_shape, connectivity, shared, first_inside):
    regions = tile_regions(codes, tile, scene_shape, connectivity)
    ids = np.empty(regions.sizes.shape[0] + 1, np.int64)
    ids[-1] = -1  # label -1 (nodata) indexes the last entry
    inside = ~regions.edge
    ids[:-1][inside] = first_inside + np.arange(int(inside.sum()))
    ids[:-1][regions.fragments] = shared
    return ids[regions.labels]


def boundary_pairs(sides: list[dict], tiles: list[Tile], grid: tuple[int, int], scene_shape, offsets, eight: bool):
    """Yield, edge by edge, the meetings of fragments across tile edges: int64 rows ``(fragment, fragment, key)``.

    The key orders meetings as ``GDALSieveFilter`` scans the whole image
    (the first fragment is the pixel it visits, the second the one it
    looks at).
    """
    ny, nx = grid
    height, width = scene_shape

    def line(i, j, side):
        t = i * nx + j
        ids = sides[t][side].astype(np.int64)
        return np.where(ids >= 0, ids + offsets[t], -1)

    for i in range(ny - 1):  # the edge between tile rows i and i + 1
        above = np.concatenate([line(i, j, "bottom") for j in range(nx)])
        below = np.concatenate([line(i + 1, j, "top") for j in range(nx)])
        yield _row_pairs(above, below, tiles[(i + 1) * nx].rows.start, width, eight)
    first_row = np.zeros(height, bool)
    first_row[[tiles[i * nx].rows.start for i in range(ny)]] = True
    for j in range(nx - 1):  # the edge between tile columns j and j + 1
        left = np.concatenate([line(i, j, "right") for i in range(ny)])
        right = np.concatenate([line(i, j + 1, "left") for i in range(ny)])
        yield _column_pairs(left, right, tiles[j + 1].cols.start, width, eight, first_row)


def label_regions(classes, *, connectivity: int = 4, nodata=None, tile_size: int | None = None,
                  progress: ProgressMode = "none") -> Regions:
    """Connected regions of same-class pixels, tile by tile, joined exactly across tile edges.

    Equal, as a partition of the pixels, to labelling each class of the
    whole image with :func:`scipy.ndimage.label` (4-connectivity: its
    default structure; 8: a 3 x 3 block of ones), for any tile size.

    Parameters
    ----------
    classes : array-like or xarray.DataArray
        ``(y, x)`` integer class codes (NumPy, dask or xarray), or a
        ``(band, y, x)`` mosaic (its ``class`` or ``cluster`` layer).
    connectivity : {4, 8}, default 4
        Pixels sharing a side (4) or also a corner (8) connect.
    nodata : number, optional
        Code of nodata pixels (default: the map's ``_FillValue``; NaN for
        float maps).  Nodata pixels belong to no region.
    tile_size : int, optional
        Square tiles of this side; default the map's chunks.
    progress : {"auto", "bar", "json", "none"}, default "none"
        Progress of the labelling pass.

    Returns
    -------
    Regions
        ``.labels`` is the lazy global label map (int64, -1 at nodata);
        ``.sizes`` and ``.classes`` describe the regions shared by tiles.
        Building it reads every tile once; ``.labels`` reads them again.
    """
    connectivity = check_connectivity(connectivity)
    return find_regions(ClassMap.coerce(classes, nodata=nodata, tile_size=tile_size), connectivity, progress)


def find_regions(class_map: ClassMap, connectivity: int, progress: ProgressMode = "none") -> Regions:
    """:func:`label_regions` of a :class:`ClassMap`: one labelling pass, then the union-find over tile edges."""
    tiles = class_map.codes()
    summary = SummaryTile(class_map.shape, connectivity)
    tasks = [dask.delayed(summary, pure=True)(codes, tile) for tile, codes in tiles]
    summaries = []
    with Progress("label regions", len(tasks), mode=progress) as bar:
        for _, part in compute_bounded(tasks, per_thread=4):
            summaries.append(part)
            bar.update()
    return _join_fragments(class_map, connectivity, tiles, summaries)


def _join_fragments(class_map: ClassMap, connectivity: int, tiles: list, summaries: list[dict]) -> Regions:
    """The union-find over tile edges: fragments that meet with the same class are one region."""
    empty = np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum([s["sizes"].shape[0] for s in summaries])]).astype(np.int64)
    frag_sizes = np.concatenate([s["sizes"] for s in summaries] + [empty])
    frag_classes = np.concatenate([s["classes"] for s in summaries] + [empty])
    n_inside = np.array([s["n_inside"] for s in summaries], np.int64)
    sides = [s["sides"] for s in summaries]
    grid = class_map.plan(0).grid
    regions = Regions(class_map, connectivity, tiles, grid, offsets, sides, empty, empty, empty, n_inside)
    parent = np.arange(frag_sizes.shape[0], dtype=np.int64)
    for pairs in regions.boundary_pairs():
        _union_pairs(parent, frag_classes, pairs[:, 0], pairs[:, 1])
    firsts, fragment_region = np.unique(_roots(parent), return_inverse=True)
    regions.fragment_region = fragment_region.astype(np.int64).reshape(-1)
    regions.sizes = np.bincount(regions.fragment_region, weights=frag_sizes, minlength=firsts.shape[0]).astype(np.int64)
    regions.classes = frag_classes[firsts]
    return regions
