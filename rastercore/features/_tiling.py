"""Apply a feature spec to one NumPy block, or lazily to a whole stack.

:func:`features_for_block` is the pure per-tile function.
:func:`compute_features` wraps it in the one ``dask.array.map_overlap``
call of the package: each tile is extended by ``spec.halo`` pixels taken
from its neighbours, with ``boundary="none"`` so nothing is invented at the
scene edge; there the kernels' own edge rule applies (scipy ``'reflect'``),
exactly as on the whole image.  Tile-by-tile therefore equals whole-image
for any chunking.
"""

from __future__ import annotations

from typing import Any, Sequence

import dask.array as da
import numpy as np
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

from ..errors import BandNameError
from ._catalogue import BlockContext
from ._spec import FeatureSpec

__all__ = ["features_for_block", "compute_features"]


def features_for_block(block: np.ndarray, spec: Any, band_names: Sequence[str]) -> np.ndarray:
    """Compute the features of one ``(band, y, x)`` block.

    Parameters
    ----------
    block : numpy.ndarray
        Pixels of a tile plus its halo, shape ``(band, y, x)``, NaN for nodata.
    spec : FeatureSpec or list of dict
        What to compute.
    band_names : sequence of str
        Name of each entry along ``block``'s first axis.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_features, y, x)``.  Block edges are treated as
        scene edges, so the outer ``spec.halo`` pixels of an interior tile
        are not meaningful; trim them.
    """
    spec = FeatureSpec.coerce(spec)
    band_names = [str(b) for b in band_names]
    if block.ndim != 3 or block.shape[0] != len(band_names):
        raise BandNameError(f"block of shape {block.shape} does not match {len(band_names)} "
                            f"band names {band_names}; expected (band, y, x)")
    n_out = len(spec.feature_names(band_names))
    out = np.empty((n_out,) + block.shape[1:], np.float32)
    ctx = BlockContext(block, band_names)
    k = 0
    for feat in spec:
        bands = feat.input_bands(band_names) if feat.kind.per_band else [None]
        for band in bands:
            for plane in feat.kind.compute(ctx, feat.params, band):
                out[k] = plane
                k += 1
    assert k == n_out, (k, n_out)
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


def _grown(chunks: tuple[int, ...], depth: int) -> tuple[int, ...]:
    n = len(chunks)
    return tuple(c + depth * (i > 0) + depth * (i < n - 1) for i, c in enumerate(chunks))


def map_features(data: da.Array, spec: FeatureSpec, band_names: Sequence[str]) -> da.Array:
    """Lazy ``(feature, y, x)`` float32 array of ``spec`` on a ``(band, y, x)`` array."""
    n_out = len(spec.feature_names(band_names))
    data = data.rechunk({0: -1})
    (cy, dy), (cx, dx) = (_plan_axis(data.chunks[ax], spec.halo) for ax in (1, 2))
    data = data.rechunk((data.chunks[0], cy, cx))
    block_fn = _BlockFn(spec, list(band_names))
    return da.map_overlap(
        block_fn, data, depth={0: 0, 1: dy, 2: dx}, boundary="none", trim=True,
        chunks=((n_out,), _grown(cy, dy), _grown(cx, dx)), dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32), align_arrays=False, allow_rechunk=False,
        token="rastercore-features",
    )


class _BlockFn:
    """Picklable per-block callable (keeps dask graphs light)."""

    def __init__(self, spec: FeatureSpec, band_names: list[str]):
        self.spec = spec
        self.band_names = band_names

    def __dask_tokenize__(self):
        return ("rastercore-features", repr(self.spec.to_dict()), tuple(self.band_names))

    def __call__(self, block: np.ndarray) -> np.ndarray:
        return features_for_block(block, self.spec, self.band_names)


def _band_names(stack: xr.DataArray) -> list[str]:
    if tuple(stack.dims) != ("band", "y", "x") or "band" not in stack.coords:
        raise BandNameError(f"expected a stack with dims ('band', 'y', 'x') and a 'band' "
                            f"coordinate of names, got dims {tuple(stack.dims)}")
    return [str(b) for b in stack.coords["band"].values]


def as_float_nan(stack: xr.DataArray, dtype=np.float32) -> da.Array:
    """Stack data as a float (``dtype``) dask array; nodata becomes NaN.

    Nodata is ``attrs["_FillValue"]`` (or the encoding's) and, for float
    data, +/-inf.
    """
    data = stack.data if isinstance(stack.data, da.Array) else da.from_array(np.asarray(stack.data))
    fill = stack.attrs.get("_FillValue", stack.encoding.get("_FillValue"))
    if fill is not None and not np.isnan(fill):
        data = da.where(data == fill, np.nan, data)
    data = data.astype(dtype)
    return da.where(da.isinf(data), dtype(np.nan), data)


def compute_features(stack: xr.DataArray, spec: Any) -> xr.DataArray:
    """Lazy feature stack of ``spec`` on ``stack``.

    Parameters
    ----------
    stack : xarray.DataArray
        Dims ``("band", "y", "x")`` with band names; dask-backed (NumPy data
        is wrapped with dask's default chunks).  Nodata is NaN, +/-inf or
        ``attrs["_FillValue"]``.
    spec : FeatureSpec, list of dict or dict
        The features; see :class:`FeatureSpec`.

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
    spec = FeatureSpec.coerce(spec)
    names_all = _band_names(stack)
    names = spec.feature_names(names_all)
    used = spec.input_bands(names_all)
    idx = [names_all.index(b) for b in used]
    data = as_float_nan(stack)[idx]
    out = map_features(data, spec, used)
    coords = {k: v.variable for k, v in stack.coords.items() if "band" not in v.dims}
    coords["feature"] = ("feature", np.array(names, dtype=object))
    attrs = {k: v for k, v in stack.attrs.items() if k != "_FillValue"}
    return xr.DataArray(out, dims=("feature", "y", "x"), coords=coords, attrs=attrs, name="features")
