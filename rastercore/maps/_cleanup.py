"""Seamless clean-up of class maps: a majority filter and a sieve (minimum mapping unit), tile by tile.

Both equal the whole-image computation for any tile size:

* :func:`majority_filter` needs only a halo of ``size // 2`` pixels, so it
  runs on the tile engine (:func:`rastercore.engine.map_tiles`);
* :func:`sieve` needs whole regions, which may cross any number of tiles.
  It makes three passes over the tiles, each labelling a tile's regions
  (:mod:`rastercore.maps._labels`): (1) the fragments of regions along
  tile edges, joined into shared regions by a union-find over the edges;
  (2) with the shared regions' true sizes, each fragment's largest
  neighbour in its tile, and where the chain of largest neighbours of the
  tile's own small regions leads; (3) after the chains through shared
  regions are followed globally, the new class of every pixel.  Only
  fragments and shared regions are held in memory, never a per-pixel table.

:func:`clean` applies them to a class mosaic and writes a new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import numba
import numpy as np
import xarray as xr

from rastercore.checks import check_int
from rastercore.engine import Tile, map_tiles
from rastercore.errors import ParameterError
from rastercore.predict import class_layer_of
from rastercore.progress import Progress, ProgressMode
from rastercore.scheduler import compute_bounded
from rastercore.store import DEFAULT_CODEC, check_output, open_stack, write_tiles

from ._labels import (
    DEPENDS,
    FAIL,
    NODATA_CODE,
    SUCCESS,
    ClassMap,
    Regions,
    check_connectivity,
    class_codes,
    codes_to_values,
    find_regions,
    lazy_tiles,
    resolve_chains,
    tile_regions,
)

__all__ = ["majority_filter", "sieve", "clean", "check_clean_options"]

_GOTO = 3  # a fragment's largest neighbour is a shared region: the chain goes on there


def check_clean_options(majority=None, sieve=None, connectivity=4) -> tuple[int | None, int | None, int]:
    """The clean-up options, checked before any work: ``(majority, sieve, connectivity)``.

    Raises
    ------
    ParameterError
        ``majority`` is not an odd integer of at least 3, ``sieve`` is below 1,
        ``connectivity`` is not 4 or 8, or neither filter is asked for.
    """
    majority = None if majority is None else _check_window(majority, "majority (--majority)")
    sieve = None if sieve is None else check_int(sieve, "sieve (--sieve), the smallest region kept in pixels,", 1)
    connectivity = check_connectivity(connectivity)
    if majority is None and sieve is None:
        raise ParameterError("nothing to clean: give majority (--majority SIZE), sieve (--sieve PIXELS) or both.")
    return majority, sieve, connectivity


def _check_window(size, name: str) -> int:
    size = check_int(size, f"{name}, the window side,", 3)
    if size % 2 == 0:
        raise ParameterError(f"{name} must be odd (the window is centred on the pixel), not {size}; use {size + 1}.")
    return size


# --- majority filter ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _majority_kernel(codes, radius, top, left, height, width, n_codes):
    """The majority of each tile pixel's window (codes 0..n_codes-1, -1 nodata); see :func:`majority_filter`."""
    rows, cols = codes.shape
    out = np.empty((height, width), np.int64)
    counts = np.zeros(n_codes, np.int64)
    for y in range(height):
        wy = top + y
        y0, y1 = max(wy - radius, 0), min(wy + radius + 1, rows)
        for x in range(width):
            wx = left + x
            centre = codes[wy, wx]
            out[y, x] = centre
            if centre < 0:
                continue
            x0, x1 = max(wx - radius, 0), min(wx + radius + 1, cols)
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    if codes[yy, xx] >= 0:
                        counts[codes[yy, xx]] += 1
            most, first = 0, n_codes
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    c = codes[yy, xx]
                    if c >= 0 and (counts[c] > most or (counts[c] == most and c < first)):
                        most, first = counts[c], c
            if counts[centre] < most:
                out[y, x] = first
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    if codes[yy, xx] >= 0:
                        counts[codes[yy, xx]] = 0
    return out


def _compact(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes as 0..k-1 (-1 nodata), keeping their order, and the k original codes."""
    valid = codes != NODATA_CODE
    present = codes[valid]
    if present.size and present.min() >= 0 and present.max() < 1 << 16:
        lut = np.arange(int(present.max()) + 1, dtype=np.int64)
        small = np.where(valid, codes, -1)
    else:
        lut, inverse = np.unique(present, return_inverse=True)
        small = np.full(codes.shape, -1, np.int64)
        small[valid] = inverse.reshape(-1)
    return small, lut


class MajorityTile:
    """Per-tile function of :func:`majority_filter` (tile plus a halo of ``size // 2``)."""

    def __init__(self, size: int, nodata, dtype):
        self.size, self.nodata, self.dtype = size, nodata, np.dtype(dtype)

    def __dask_tokenize__(self):
        return ("rastercore-majority", self.size, repr(self.nodata), str(self.dtype))

    def __call__(self, window: np.ndarray, tile: Tile) -> np.ndarray:
        small, lut = _compact(class_codes(window[0], self.nodata))
        top, _, left, _ = tile.halo
        out = _majority_kernel(small, self.size // 2, top, left, *tile.shape, max(lut.shape[0], 1))
        codes = np.where(out >= 0, lut[np.maximum(out, 0)] if lut.size else out, NODATA_CODE)
        return codes_to_values(codes, self.nodata, self.dtype)[np.newaxis]


def majority_filter(classes, size: int, *, nodata=None, tile_size: int | None = None):
    """The most frequent class in each pixel's ``size`` x ``size`` window, tile by tile.

    Rules (the same on the whole image and for any tile size):

    * only valid pixels vote: nodata pixels and the part of the window
      beyond the scene edge count for nothing (scipy's
      ``generic_filter(..., mode="constant", cval=nan)`` ignoring NaN);
    * a nodata pixel stays nodata;
    * ties: the pixel keeps its class if it is among the most frequent,
      else the smallest class code among them wins.

    Parameters
    ----------
    classes : array-like or xarray.DataArray
        ``(y, x)`` integer class codes (NumPy, dask or xarray), or a
        ``(band, y, x)`` mosaic (its ``class`` or ``cluster`` layer).
    size : int
        Window side: odd, at least 3.
    nodata : number, optional
        Code of nodata pixels (default: the map's ``_FillValue``; NaN for float maps).
    tile_size : int, optional
        Square tiles of this side; default the map's chunks.

    Returns
    -------
    Same kind as ``classes`` (NumPy computed; dask and xarray lazy), same dtype.
    """
    size = _check_window(size, "size")
    class_map = ClassMap.coerce(classes, nodata=nodata, tile_size=tile_size)
    return class_map.result(_majority(class_map, size))


def _majority(class_map: ClassMap, size: int):
    per_tile = MajorityTile(size, class_map.nodata, class_map.dtype)
    return map_tiles(class_map.plan(size // 2), per_tile, n_out=1, dtype=class_map.dtype, name="majority")[0]


# --- sieve -------------------------------------------------------------------------------------------------------


class _SieveStep:
    """What every sieve pass does to a tile: its regions, their true sizes, largest neighbours and chains."""

    def __init__(self, scene_shape, connectivity: int, min_size: int):
        self.scene_shape, self.connectivity, self.min_size = scene_shape, connectivity, min_size

    def __dask_tokenize__(self):
        return (type(self).__name__, self.scene_shape, self.connectivity, self.min_size)

    def chains(self, codes: np.ndarray, tile: Tile, fragment_sizes: np.ndarray):
        """The tile's regions, each label's largest neighbour ``(label, size, key)`` and where its chain ends.

        A chain of the tile's own small regions ends at a large region
        (SUCCESS, its class), nowhere (FAIL: no neighbour, or a loop), or at
        a small shared region (DEPENDS, that fragment's label), whose chain
        goes on in other tiles.
        """
        regions = tile_regions(codes, tile, self.scene_shape, self.connectivity)
        sizes = regions.sizes.copy()
        sizes[regions.fragments] = fragment_sizes
        best = regions.neighbours(sizes, tile, self.scene_shape[1], self.connectivity == 8)
        large = sizes >= self.min_size
        following = np.where(~large & ~regions.edge, best[:, 0], -1)
        kind = np.where(large, SUCCESS, np.where(regions.edge, DEPENDS, FAIL)).astype(np.int64)
        value = np.where(large, regions.classes, np.arange(sizes.shape[0]))
        return regions, best, resolve_chains(following, kind, value)


class NeighbourTile(_SieveStep):
    """Second pass: each fragment's largest neighbour in the tile, as ``(size, key, kind, value)`` rows.

    ``kind`` is ``_GOTO`` (value: a shared region), SUCCESS (value: the class
    the chain ends in) or FAIL; size -1 when the fragment has no neighbour here.
    """

    def __call__(self, codes, tile, fragment_regions, fragment_sizes) -> np.ndarray:
        regions, best, (kind, value) = self.chains(codes, tile, fragment_sizes)
        index = regions.fragment_index()
        target = best[regions.fragments, 0]
        reached = np.maximum(target, 0)
        to_fragment = index[reached] >= 0
        goes_on = to_fragment | (kind[reached] == DEPENDS)  # straight to a fragment, or through the tile to one
        leaves_at = np.where(to_fragment, reached, np.where(goes_on, value[reached], 0))
        out = np.empty((target.shape[0], 4), np.int64)
        out[:, 0] = np.where(target >= 0, best[regions.fragments, 1], -1)
        out[:, 1] = best[regions.fragments, 2]
        out[:, 2] = np.where(goes_on, _GOTO, kind[reached])
        out[:, 3] = np.where(goes_on, fragment_regions[np.maximum(index[leaves_at], 0)], value[reached])
        return out


class SieveTile(_SieveStep):
    """Third pass: the sieved tile, given where each fragment's chain ends (a class, or NODATA_CODE: no change)."""

    def __init__(self, scene_shape, connectivity: int, min_size: int, nodata, dtype):
        super().__init__(scene_shape, connectivity, min_size)
        self.nodata, self.dtype = nodata, np.dtype(dtype)

    def __dask_tokenize__(self):
        return (*super().__dask_tokenize__(), repr(self.nodata), str(self.dtype))

    def __call__(self, codes, tile, fragment_sizes, fragment_ends) -> np.ndarray:
        regions, _, (kind, value) = self.chains(codes, tile, fragment_sizes)
        ends = np.full(regions.sizes.shape[0], NODATA_CODE, np.int64)
        ends[regions.fragments] = fragment_ends
        new = regions.classes.copy()
        new[kind == SUCCESS] = value[kind == SUCCESS]
        depends = np.flatnonzero(kind == DEPENDS)
        reached = ends[value[depends]]
        new[depends[reached != NODATA_CODE]] = reached[reached != NODATA_CODE]
        out = np.append(new, NODATA_CODE)[regions.labels]  # label -1 (nodata) takes the last entry
        return codes_to_values(out, self.nodata, self.dtype)


def _offer_all(best, owners, sizes, keys, kinds, values):
    """GDAL's rule over candidates: the largest wins; of equal sizes, the first met (smallest key)."""
    order = np.lexsort((keys, -sizes, owners))
    owners, first = owners[order], np.ones(order.shape[0], bool)
    first[1:] = owners[1:] != owners[:-1]
    pick = order[first]
    incoming = np.stack([sizes[pick], keys[pick], kinds[pick], values[pick]], axis=1)
    current = best[owners[first]]
    better = (current[:, 0] < 0) | (incoming[:, 0] > current[:, 0]) | (
        (incoming[:, 0] == current[:, 0]) & (incoming[:, 1] < current[:, 1]))
    best[owners[first][better]] = incoming[better]


def _shared_ends(regions: Regions, candidates: list[np.ndarray], min_size: int) -> np.ndarray:
    """Per shared region, the class its chain of largest neighbours ends in, or NODATA_CODE (no change)."""
    n = regions.n_shared
    best = np.full((n, 4), -1, np.int64)  # size, key, kind, value of the largest neighbour so far
    found = np.concatenate(candidates + [np.zeros((0, 4), np.int64)])
    has = found[:, 0] >= 0
    _offer_all(best, regions.fragment_region[has], *found[has].T)
    for pairs in regions.boundary_pairs():
        a, b = regions.fragment_region[pairs[:, 0]], regions.fragment_region[pairs[:, 1]]
        meet = a != b
        a, b, keys = a[meet], b[meet], pairs[meet, 2]
        goto = np.full(a.shape[0] * 2, _GOTO, np.int64)
        _offer_all(best, np.concatenate([a, b]), regions.sizes[np.concatenate([b, a])], np.concatenate([keys, keys]),
                   goto, np.concatenate([b, a]))
    large = regions.sizes >= min_size
    following = np.where(~large & (best[:, 2] == _GOTO), best[:, 3], -1)
    kind = np.where(large, SUCCESS, np.where(best[:, 0] < 0, FAIL, best[:, 2]))
    value = np.where(large, regions.classes, best[:, 3])
    kind, value = resolve_chains(following, kind.astype(np.int64), value.astype(np.int64))
    return np.where(kind == SUCCESS, value, NODATA_CODE)


def _sieve(class_map: ClassMap, min_size: int, connectivity: int, progress: ProgressMode = "none"):
    """The lazy sieved ``(y, x)`` map; the first two passes (labels, candidates) are computed here."""
    regions = find_regions(class_map, connectivity, progress)
    step = NeighbourTile(class_map.shape, connectivity, min_size)
    args = [(tile, regions.tile_fragments(t), regions.sizes[regions.tile_fragments(t)])
            for t, (tile, _) in enumerate(regions.tiles)]
    tasks = [dask.delayed(step, pure=True)(codes, *a) for (_, codes), a in zip(regions.tiles, args)]
    candidates = []
    with Progress("sieve: largest neighbours", len(tasks), mode=progress) as bar:
        for _, part in compute_bounded(tasks, per_thread=4):
            candidates.append(part)
            bar.update()
    ends = _shared_ends(regions, candidates, min_size)
    last = SieveTile(class_map.shape, connectivity, min_size, class_map.nodata, class_map.dtype)
    args = [(tile, regions.sizes[regions.tile_fragments(t)], ends[regions.tile_fragments(t)])
            for t, (tile, _) in enumerate(regions.tiles)]
    return lazy_tiles(class_map, regions.tiles, last, args, class_map.dtype, "sieve")


def sieve(classes, min_size: int, *, connectivity: int = 4, nodata=None, tile_size: int | None = None,
          progress: ProgressMode = "none"):
    """Merge connected regions smaller than ``min_size`` pixels into their largest neighbour, tile by tile.

    Equal to ``rasterio.features.sieve(whole_image, size=min_size,
    connectivity=connectivity, mask=valid)`` (GDAL's ``GDALSieveFilter``) for
    any tile size, regions crossing any number of tiles included:

    * a region is a connected set of same-class pixels; one with fewer than
      ``min_size`` pixels takes the class of its largest neighbour (sizes
      as in the input; of equal neighbours, the first met scanning row by
      row, GDAL's order); if that neighbour is small too, its own largest
      neighbour is followed, and so on, until a region of ``min_size``
      pixels or more is reached; a chain that loops, or a region without
      neighbours, is left unchanged;
    * nodata pixels never change, belong to no region and neighbour none.

    The regions and their neighbours are found tile by tile; only regions
    that touch tile edges are kept in memory (see :mod:`rastercore.maps._labels`).

    Parameters
    ----------
    classes : array-like or xarray.DataArray
        ``(y, x)`` integer class codes (NumPy, dask or xarray), or a
        ``(band, y, x)`` mosaic (its ``class`` or ``cluster`` layer).
    min_size : int
        Smallest region kept, in pixels (at least 1; 1 changes nothing).
    connectivity : {4, 8}, default 4
        Pixels sharing a side (4) or also a corner (8) connect, and neighbour.
    nodata : number, optional
        Code of nodata pixels (default: the map's ``_FillValue``; NaN for float maps).
    tile_size : int, optional
        Square tiles of this side; default the map's chunks.
    progress : {"auto", "bar", "json", "none"}, default "none"
        Progress of the two passes made before returning.

    Returns
    -------
    Same kind as ``classes`` (NumPy computed; dask and xarray lazy), same dtype.
    Two passes over the tiles run before it returns; the third is the result's.
    """
    min_size = check_int(min_size, "min_size, the smallest region kept in pixels,", 1)
    connectivity = check_connectivity(connectivity)
    class_map = ClassMap.coerce(classes, nodata=nodata, tile_size=tile_size)
    return class_map.result(_sieve(class_map, min_size, connectivity, progress))


# --- a class mosaic in, a cleaned class mosaic out ---------------------------------------------------------------


def _class_layer(mosaic: xr.DataArray, source: str) -> int:
    """Index of the mosaic's class layer, or one clear error."""
    if mosaic.ndim != 3:
        raise ParameterError(f"{source} is not a class mosaic (dims {tuple(mosaic.dims)}); give a mosaic from "
                             "`rastercore predict` or `rastercore cluster`.")
    layers = [str(b) for b in mosaic[mosaic.dims[0]].values]
    return layers.index(class_layer_of(mosaic, source))


def clean(
    mosaic_or_path,
    output: str | os.PathLike,
    *,
    majority: int | None = None,
    sieve: int | None = None,
    connectivity: int = 4,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressMode = "auto",
    codec: str = DEFAULT_CODEC,
) -> xr.DataArray:
    """Clean the class layer of a mosaic: a majority filter, then a sieve; write a new class mosaic.

    Parameters
    ----------
    mosaic_or_path : path-like or xarray.DataArray
        A mosaic from ``rastercore predict`` or ``cluster`` (its ``class``,
        else ``cluster``, layer is cleaned; NaN is nodata), or its path.
    output : path-like
        The ``.zarr`` class mosaic to write: that one layer, on the same
        grid and tiles, with the mosaic's attributes (``class_names``,
        ``class_colors``, ...) and ``rastercore_clean`` recording the options.
    majority : int, optional
        Window side of :func:`majority_filter` (odd, at least 3).
    sieve : int, optional
        ``min_size`` of :func:`sieve`: regions smaller than this many pixels
        are merged into their largest neighbour (after the majority filter).
    connectivity : {4, 8}, default 4
        Connectivity of the sieve's regions.
    overwrite, resume : bool, default False
        As in :func:`rastercore.store.write_tiles`.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the tiles.

    Returns
    -------
    xarray.DataArray
        The cleaned mosaic, opened lazily from ``output``.

    Raises
    ------
    ParameterError
        A bad option (:func:`check_clean_options`), or a mosaic without a class layer.
    StoreExistsError
        ``output`` exists and neither ``overwrite`` nor ``resume`` was asked.
    """
    majority, sieve, connectivity = check_clean_options(majority, sieve, connectivity)
    source = str(mosaic_or_path) if isinstance(mosaic_or_path, (str, Path)) else "the mosaic"
    mosaic = open_stack(mosaic_or_path) if isinstance(mosaic_or_path, (str, Path)) else mosaic_or_path
    band = _class_layer(mosaic, source)
    if resume and not overwrite and Path(output).exists():  # an earlier run finished
        return open_stack(output)
    check_output(output, overwrite=overwrite)
    class_map = ClassMap.coerce(mosaic, what=source)
    data = None
    if majority is not None:
        data = _majority(class_map, majority)
        class_map = ClassMap(xr.DataArray(data[np.newaxis], dims=("band", "y", "x")), 0, class_map.nodata, None, data)
    if sieve is not None:
        data = _sieve(class_map, sieve, connectivity, progress)
    layer = mosaic.isel({mosaic.dims[0]: [band]})
    cleaned = layer.copy(data=data[np.newaxis])
    cleaned.encoding = {}
    cleaned.attrs["rastercore_clean"] = json.dumps({"majority": majority, "sieve": sieve, "connectivity": connectivity})
    tile = (layer.chunks[1][0], layer.chunks[2][0]) if layer.chunks else None
    write_tiles(cleaned, output, tile_chunks=tile, overwrite=overwrite, resume=resume,
                progress=progress, stage="clean", codec=codec)
    return open_stack(output)
