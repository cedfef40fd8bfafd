"""Apply a feature spec to one NumPy block, or lazily to a whole stack.

:func:`features_for_block` is the pure per-tile function.
:func:`compute_features` runs it (as :class:`FeatureTile`) on every tile
extended by ``spec.halo`` pixels through the tile engine
(:func:`rastercore.engine.map_tiles`): read straight from the store for a
stack :func:`rastercore.open_stack` returned, else through
``dask.array.overlap`` with ``boundary="none"``.  Nothing is invented at the
scene edge: there the kernels' own edge rule applies (scipy ``'reflect'``),
exactly as on the whole image.  Tile-by-tile therefore equals whole-image
for any chunking, on either path.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import xarray as xr

from .._memory import output_array, plain_pages
from ..engine import Tile, map_tiles
from ..errors import BandNameError, FeatureSpecError
from ..stack import band_names as names_of
from ._catalogue import BlockContext
from ._kernels import all_finite, clean_plane
from ._spec import FeatureSpec

__all__ = ["features_for_block", "compute_features", "FeatureTile"]


def features_for_block(block: np.ndarray, spec: Any, band_names: Sequence[str], *,
                       nodata: float | None = None, crop: Sequence[int] | None = None,
                       origin: Sequence[int] | None = None) -> np.ndarray:
    """Compute the features of one ``(band, y, x)`` block.

    This is exactly what :func:`compute_features` runs on every tile (plus
    halo), so a caller holding a tile and its halo -- e.g. prediction --
    gets the same numbers.

    Parameters
    ----------
    block : numpy.ndarray
        Pixels of a tile plus its halo, shape ``(band, y, x)``.  Values are
        taken as float32; NaN, +/-inf and ``nodata`` are nodata.
    spec : FeatureSpec or list of dict
        What to compute.  Its normalisation, if any, is applied to the bands
        first (the spec must be fitted: :meth:`FeatureSpec.fit_normalizer`).
    band_names : sequence of str
        Name of each entry along ``block``'s first axis.  It must hold the
        bands ``spec.input_bands(...)`` names; others are ignored.
    nodata : float, optional
        Raw value standing for nodata (the stack's ``_FillValue``).
    crop : (top, bottom, left, right), optional
        Halo pixels to drop from each side of the result (e.g. ``spec.halo``
        where the block has a neighbour).  Cheaper than slicing afterwards:
        only the kept pixels are allocated, and the result is contiguous.
    origin : (row, col), optional
        Scene position of ``block[:, 0, 0]``.  Only features whose values
        depend on the position need it -- an ``onnx`` network with
        ``stride`` > 1, whose coarse grid is anchored to the scene -- and
        they refuse a cropped block without it.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_features, y, x)`` (less ``crop``).  Block edges
        are treated as scene edges, so the outer ``spec.halo`` pixels of an
        interior tile are not meaningful; crop or trim them.  The array may
        be one this thread returned before and that nothing references any
        more (see ``rastercore.features.release_buffers``).
    """
    with plain_pages():
        return _features_for_block(block, spec, band_names, nodata, crop, origin)


def _features_for_block(block, spec, band_names, nodata, crop, origin) -> np.ndarray:
    spec = FeatureSpec.coerce(spec)
    band_names = [str(b) for b in band_names]
    block = np.asarray(block)
    if block.ndim != 3 or block.shape[0] != len(band_names):
        raise BandNameError(f"block of shape {block.shape} does not match {len(band_names)} "
                            f"band names {band_names}; expected (band, y, x)")
    if crop is not None and (len(crop) != 4 or min(crop) < 0 or crop[0] + crop[1] >= block.shape[1]
                             or crop[2] + crop[3] >= block.shape[2]):
        raise ValueError(f"crop {tuple(crop)} must be 4 non-negative margins (top, bottom, left, right) "
                         f"that leave pixels of the {block.shape[1]} x {block.shape[2]} block")
    if not spec.is_fitted:
        raise FeatureSpecError(
            f"the spec asks for {spec.normalize_options['method']!r} normalisation but holds no "
            "statistics; fit them first: spec = spec.fit_normalizer(stack)")
    n_out = len(spec.feature_names(band_names))
    used = spec.input_bands(band_names)
    planes = _clean(block, [band_names.index(b) for b in used], nodata)
    if spec.normalizer is not None:
        bands = spec.feature_bands(used)
        planes, used = spec.normalizer.apply_block(planes, used, bands), bands
    ctx = BlockContext(planes, used, crop, origin)
    rows, cols = ctx.inner
    out = output_array((n_out, rows.stop - rows.start, cols.stop - cols.start))
    k = 0
    for feat in spec:
        bands = feat.input_bands(used) if feat.kind.per_band else [None]
        n_labels = len(feat.kind.labels(feat.params))
        for band in bands:
            if feat.kind.compute_into is not None:
                feat.kind.compute_into(ctx, feat.params, band, out[k:k + n_labels])
                k += n_labels
                continue
            for plane in feat.kind.compute(ctx, feat.params, band):
                out[k] = plane[ctx.inner]
                k += 1
    assert k == n_out, (k, n_out)
    return out


def _clean(block: np.ndarray, idx: list[int], nodata) -> np.ndarray:
    """Bands ``idx`` of ``block`` as float32 with nodata, +/-inf and NaN as NaN.

    ``block`` itself (or a view) when it is float32 with nothing to clean
    (no nodata value, every value finite): no copy.
    """
    fill = np.nan if nodata is None else float(nodata)
    use_fill = nodata is not None and not np.isnan(fill)
    if block.dtype == np.float32 and block.flags.c_contiguous and not use_fill \
            and all_finite(block.reshape(-1, block.shape[-1]).view(np.uint32)):
        return block[idx] if idx != list(range(block.shape[0])) else block
    out = np.empty((len(idx),) + block.shape[1:], np.float32)
    for k, i in enumerate(idx):
        plane = block[i]
        if not plane.flags.c_contiguous:
            plane = np.ascontiguousarray(plane)
        if plane.dtype == np.bool_:
            plane = plane.view(np.uint8)
        clean_plane(plane, fill, use_fill, out[k])
    return out


class FeatureTile:
    """The per-tile function of :func:`compute_features` for the tile engine (picklable, light to tokenise)."""

    def __init__(self, spec: FeatureSpec, band_names: Sequence[str], nodata: float | None = None):
        self.spec = spec
        self.band_names = list(band_names)
        self.nodata = nodata

    def __dask_tokenize__(self):
        return ("rastercore-features", repr(self.spec.to_dict()), tuple(self.band_names), repr(self.nodata))

    def __call__(self, window: np.ndarray, tile: Tile) -> np.ndarray:
        return features_for_block(window, self.spec, self.band_names, nodata=self.nodata, crop=tile.halo,
                                  origin=tile.window_origin)


def compute_features(stack: xr.DataArray, spec: Any, *, tile_size: int | None = None) -> xr.DataArray:
    """Lazy feature stack of ``spec`` on ``stack``.

    Parameters
    ----------
    stack : xarray.DataArray
        Dims ``("band", "y", "x")`` with band names; dask-backed (NumPy data
        is wrapped with dask's default chunks).  Nodata is NaN, +/-inf or
        ``attrs["_FillValue"]``.
    spec : FeatureSpec, list of dict or dict
        The features; see :class:`FeatureSpec`.  A normalisation in the spec
        must be fitted (:meth:`FeatureSpec.fit_normalizer`); it is applied
        to the bands, tile by tile from its global statistics, before the
        features.
    tile_size : int, optional
        Compute (and chunk the result) in square tiles of this side; default
        the stack's chunks.

    Returns
    -------
    xarray.DataArray
        float32, dims ``("feature", "y", "x")``, a ``feature`` coordinate of
        names, the input's other coordinates (y, x, spatial_ref, ...) and
        attrs without ``_FillValue``; chunked like the input along y and x
        (or in ``tile_size`` squares).

    Notes
    -----
    Scene edges: scipy.ndimage ``mode='reflect'`` (``multiscale_basic`` uses
    scikit-image's rules).  NaN: any output whose window touches a NaN is
    NaN.
    """
    spec = FeatureSpec.coerce(spec)
    names_all = names_of(stack)
    names = spec.feature_names(names_all)
    if not spec.is_fitted:
        raise FeatureSpecError(
            f"the spec asks for {spec.normalize_options['method']!r} normalisation but holds no "
            "statistics; fit them first: spec = spec.fit_normalizer(stack)")
    used = spec.input_bands(names_all)
    fill = stack.attrs.get("_FillValue", stack.encoding.get("_FillValue"))
    out = map_tiles(stack, FeatureTile(spec, used, fill), halo=spec.halo, bands=used, n_out=len(names),
                    tile_size=tile_size, name="rastercore-features")
    coords = {k: v.variable for k, v in stack.coords.items() if "band" not in v.dims}
    coords["feature"] = ("feature", np.array(names, dtype=object))
    attrs = {k: v for k, v in stack.attrs.items() if k != "_FillValue"}
    return xr.DataArray(out, dims=("feature", "y", "x"), coords=coords, attrs=attrs, name="features")


def load_features(stack: xr.DataArray, spec: Any, *, tile_size: int | None = None) -> xr.DataArray:
    """:func:`compute_features` computed into memory: one NumPy array, filled tile by tile in parallel.

    What ``compute_features(stack, spec).load()`` gives, without its cost
    of joining the tiles: the result is allocated once and each tile is
    written into its place by dask's threaded scheduler (always, even with
    a distributed client active: the result lives in this process).  It is
    allocated without
    NumPy's huge-page hint, as tile computations are
    (:mod:`rastercore._memory`): a result of gigabytes is written once,
    and on the 2-core benchmark machine backing fresh huge pages cost more
    than the features' arithmetic.

    Parameters
    ----------
    stack, spec, tile_size
        As in :func:`compute_features`.

    Returns
    -------
    xarray.DataArray
        As :func:`compute_features`, backed by a NumPy array.
    """
    import dask.array as da

    lazy = compute_features(stack, spec, tile_size=tile_size)
    with plain_pages():
        out = np.empty(lazy.shape, np.float32)
    da.store(lazy.data, out, lock=False, scheduler="threads")
    return lazy.copy(data=out)
