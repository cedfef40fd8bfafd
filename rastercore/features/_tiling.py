"""Apply a feature spec to one NumPy block, or lazily to a whole stack.

:func:`features_for_block` is the pure per-tile function.
:func:`compute_features` runs it on every tile extended by ``spec.halo``
pixels taken from its neighbours -- read straight from the store for a
stack :func:`rastercore.open_stack` returned (``_windows``), else through
``dask.array.map_overlap`` with ``boundary="none"`` -- so nothing is
invented at the scene edge: there the kernels' own edge rule applies (scipy
``'reflect'``), exactly as on the whole image.  Tile-by-tile therefore
equals whole-image for any chunking, on either path.
"""

from __future__ import annotations

from typing import Any, Sequence

import dask.array as da
import numpy as np
import xarray as xr
from dask.array.core import normalize_chunks
from dask.array.overlap import ensure_minimum_chunksize
from dask.base import tokenize

from .._memory import plain_pages
from ..errors import BandNameError, FeatureSpecError
from ..stack import _store_of, as_float, band_names as names_of
from ._buffers import output_array
from ._catalogue import BlockContext
from ._kernels import all_finite, clean_plane
from ._spec import FeatureSpec
from ._windows import ZarrWindows

__all__ = ["features_for_block", "compute_features"]


def features_for_block(block: np.ndarray, spec: Any, band_names: Sequence[str], *,
                       nodata: float | None = None, crop: Sequence[int] | None = None) -> np.ndarray:
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
        return _features_for_block(block, spec, band_names, nodata, crop)


def _features_for_block(block, spec, band_names, nodata, crop) -> np.ndarray:
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
    ctx = BlockContext(planes, used, crop)
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


def _plan_axis(chunks: tuple[int, ...], depth: int) -> tuple[tuple[int, ...], int]:
    """Chunks fit for ``depth`` (each >= depth) and the depth actually needed."""
    size = sum(chunks)
    if len(chunks) == 1 or depth == 0:
        return chunks, 0
    if depth >= size:
        return (size,), 0
    new = ensure_minimum_chunksize(depth, chunks)
    return new, (depth if len(new) > 1 else 0)


def map_features(data: da.Array, spec: FeatureSpec, band_names: Sequence[str], *,
                 nodata: float | None = None) -> da.Array:
    """Lazy ``(feature, y, x)`` float32 array of ``spec`` on a raw ``(band, y, x)`` array."""
    n_out = len(spec.feature_names(band_names))
    data = data.rechunk({0: -1})
    (cy, dy), (cx, dx) = (_plan_axis(data.chunks[ax], spec.halo) for ax in (1, 2))
    data = data.rechunk((data.chunks[0], cy, cx))
    block_fn = _OverlapFn(_BlockFn(spec, list(band_names), nodata), (dy, dx))
    return da.map_overlap(
        block_fn, data, depth={0: 0, 1: dy, 2: dx}, boundary="none", trim=False,
        chunks=((n_out,), cy, cx), dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32), align_arrays=False, allow_rechunk=False,
        token="rastercore-features",
    )


class _BlockFn:
    """Picklable per-block callable (keeps dask graphs light)."""

    def __init__(self, spec: FeatureSpec, band_names: list[str], nodata: float | None = None):
        self.spec = spec
        self.band_names = band_names
        self.nodata = nodata

    def __dask_tokenize__(self):
        return ("rastercore-features", repr(self.spec.to_dict()), tuple(self.band_names), repr(self.nodata))

    def __call__(self, block: np.ndarray, crop=None) -> np.ndarray:
        return features_for_block(block, self.spec, self.band_names, nodata=self.nodata, crop=crop)


class _OverlapFn:
    """Per-block function of ``map_overlap(trim=False)``: crops the halo the block got."""

    def __init__(self, block_fn: _BlockFn, depth: tuple[int, int]):
        self.block_fn, self.depth = block_fn, depth

    def __dask_tokenize__(self):
        return ("rastercore-overlap", self.block_fn.__dask_tokenize__(), self.depth)

    def __call__(self, block: np.ndarray, block_info=None) -> np.ndarray:
        (_, i, j), (_, ni, nj) = block_info[0]["chunk-location"], block_info[0]["num-chunks"]
        dy, dx = self.depth
        crop = (dy * (i > 0), dy * (i < ni - 1), dx * (j > 0), dx * (j < nj - 1))
        return self.block_fn(block, crop)


def compute_features(stack: xr.DataArray, spec: Any) -> xr.DataArray:
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

    Returns
    -------
    xarray.DataArray
        float32, dims ``("feature", "y", "x")``, a ``feature`` coordinate of
        names, the input's other coordinates (y, x, spatial_ref, ...) and
        attrs without ``_FillValue``; chunked like the input along y and x
        (merged where a chunk is thinner than the halo).

    Notes
    -----
    Scene edges: scipy.ndimage ``mode='reflect'`` (``multiscale_basic`` uses
    scikit-image's rules).  NaN: any output whose window touches a NaN is
    NaN.
    """
    return _features_array(stack, spec)


def _features_array(stack: xr.DataArray, spec: Any, *, tile: int | None = None) -> xr.DataArray:
    """:func:`compute_features`, optionally with square output blocks of side ``tile``."""
    spec = FeatureSpec.coerce(spec)
    names_all = names_of(stack)
    names = spec.feature_names(names_all)
    if not spec.is_fitted:
        raise FeatureSpecError(
            f"the spec asks for {spec.normalize_options['method']!r} normalisation but holds no "
            "statistics; fit them first: spec = spec.fit_normalizer(stack)")
    used = spec.input_bands(names_all)
    idx = [names_all.index(b) for b in used]
    fill = stack.attrs.get("_FillValue", stack.encoding.get("_FillValue"))
    reader = _windows_of(stack)
    if reader is not None:
        chunks = stack.chunks[1:] if tile is None else normalize_chunks((tile, tile), stack.shape[1:])
        out = window_features(reader, idx, spec, used, chunks, nodata=fill)
    else:
        raw = stack.data if isinstance(stack.data, da.Array) else da.from_array(np.asarray(stack.data))
        if tile is not None:
            raw = raw.rechunk((raw.chunks[0], tile, tile))
        out = map_features(raw[idx], spec, used, nodata=fill)
    coords = {k: v.variable for k, v in stack.coords.items() if "band" not in v.dims}
    coords["feature"] = ("feature", np.array(names, dtype=object))
    attrs = {k: v for k, v in stack.attrs.items() if k != "_FillValue"}
    return xr.DataArray(out, dims=("feature", "y", "x"), coords=coords, attrs=attrs, name="features")


def _windows_of(stack: xr.DataArray) -> ZarrWindows | None:
    """A window reader when ``stack`` is an unchanged :func:`rastercore.open_stack` result."""
    path = _store_of(stack)
    if path is None:
        return None
    try:
        reader = ZarrWindows(path)
    except (OSError, ValueError, KeyError):
        return None
    return reader if reader.shape == tuple(stack.shape) and reader.dtype == stack.dtype else None


def window_features(reader: ZarrWindows, band_idx: list[int], spec: FeatureSpec, band_names: Sequence[str],
                    chunks, *, nodata: float | None = None) -> da.Array:
    """Lazy ``(feature, y, x)`` array: one task per block, reading its window (block + halo)."""
    n_out = len(spec.feature_names(band_names))
    fn = _WindowFn(reader, list(band_idx), spec, list(band_names), nodata)
    name = "rastercore-features-" + tokenize(reader.key, band_idx, fn.__dask_tokenize__(), chunks)
    return da.map_blocks(fn, chunks=((n_out,), *chunks), dtype=np.float32,
                         meta=np.empty((0, 0, 0), np.float32), name=name)


class _WindowFn:
    """Per-block task of :func:`window_features` (picklable)."""

    def __init__(self, reader, band_idx, spec, band_names, nodata):
        self.reader, self.band_idx = reader, band_idx
        self.block_fn = _BlockFn(spec, band_names, nodata)

    def __dask_tokenize__(self):
        return ("rastercore-window-features", self.reader.key, tuple(self.band_idx),
                self.block_fn.__dask_tokenize__())

    def __call__(self, block_info=None) -> np.ndarray:
        (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        halo = self.block_fn.spec.halo
        ny, nx = self.reader.shape[-2:]
        y0, y1, x0, x1 = max(r0 - halo, 0), min(r1 + halo, ny), max(c0 - halo, 0), min(c1 + halo, nx)
        window = self.reader.read(self.band_idx, (y0, y1), (x0, x1))
        return self.block_fn(window, (r0 - y0, y1 - r1, c0 - x0, x1 - c1))
