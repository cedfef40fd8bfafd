"""Write a feature store: :func:`compute_features` through the tiled writer.

A feature store is an ordinary rastercore store whose ``data`` array has
dims ``(feature, y, x)`` (float32, a ``feature`` coordinate of names, the
stack's y/x/spatial_ref), written by :func:`rastercore.tiles.write_tiles`
(atomic, resumable).  The spec it was computed with -- including fitted
normalisation statistics -- is kept as JSON in the array's
``rastercore_feature_spec`` attribute, so ``open_stack(path).attrs`` carries
it to training and prediction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import StoreExistsError
from ..progress import ProgressMode
from ._spec import FeatureSpec
from ..stack import _store_of
from ..tiles import DEFAULT_CODEC
from ._buffers import release_buffers
from ._tiling import _features_array
from ._windows import CACHE

__all__ = ["write_features", "stored_spec", "SPEC_ATTR"]

SPEC_ATTR = "rastercore_feature_spec"
"""Attribute of a feature store's ``data`` array holding the spec as JSON."""


def write_features(
    stack: xr.DataArray,
    spec: Any,
    path: str | os.PathLike,
    *,
    normalize: str | None = None,
    tile_size: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressMode = "auto",
    codec: str = DEFAULT_CODEC,
) -> xr.DataArray:
    """Compute ``spec`` on ``stack`` and store it tile by tile as a ``(feature, y, x)`` zarr store.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` stack, e.g. from :func:`rastercore.open_stack`.
    spec : FeatureSpec, list of dict or dict
        The features.  A normalisation it asks for but has not fitted is
        fitted on ``stack`` first (two out-of-core passes).
    path : path-like
        The ``.zarr`` store to write.
    normalize : {"zscore", "minmax", "percentile", "zca"}, optional
        Ask for this normalisation (fitted on ``stack``); refused if ``spec``
        already holds fitted statistics, which are then used as they are.
    tile_size : int, optional
        Side of the stored tiles; default the stack's tile side, reduced if
        the features of one tile would not fit the memory budget.
    overwrite, resume : bool
        As in :func:`rastercore.tiles.write_tiles`.  On resume, fitted
        statistics are read back from the interrupted store.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the stored tiles (:data:`rastercore.tiles.CODECS`).

    Returns
    -------
    xarray.DataArray
        The feature store, opened lazily (:func:`rastercore.open_stack`).
    """
    from ..errors import FeatureSpecError
    from ..stack import band_names, open_stack
    from ..tiles import choose_tile_size, partial_path, write_tiles

    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    spec = FeatureSpec.coerce(spec)
    if normalize is not None:
        if spec.normalizer is not None:
            raise FeatureSpecError(
                f"the spec already holds fitted {spec.normalizer.method!r} statistics (of bands "
                f"{spec.normalizer.band_names}); drop --normalize to apply them as they are, or remove "
                "'normalize' from the spec to fit new ones")
        spec = spec.with_normalizer(normalize)
    names = band_names(stack)
    n_out = len(spec.feature_names(names))  # validate before any pass over the data
    spec.input_bands(names)
    if not spec.is_fitted:
        previous = stored_spec(partial_path(path)) if resume else None
        if previous is not None and previous.features == spec.features \
                and previous.normalize_options == spec.normalize_options:
            spec = previous
        else:
            spec = spec.fit_normalizer(stack)
    tile = tile_size or _default_tile(stack, n_out, choose_tile_size)
    feats = _features_array(stack, spec, tile=tile)
    if _misaligned(feats, tile):
        feats = feats.chunk({"y": tile, "x": tile})
    feats.attrs[SPEC_ATTR] = json.dumps(spec.to_dict())
    try:
        write_tiles(feats, path, tile_chunks=(tile, tile), overwrite=overwrite, resume=resume,
                    progress=progress, stage="features", codec=codec)
    finally:
        release_buffers()
        source = _store_of(stack)
        if source is not None:  # its decompressed chunks are of no use once the store is written
            CACHE.drop((str(Path(source).resolve()),))
    return open_stack(path)


def _default_tile(stack: xr.DataArray, n_out: int, choose_tile_size) -> int:
    """The stack's tile side, or less if ``n_out`` float32 features per pixel need it."""
    stored = int(stack.chunks[-1][0]) if stack.chunks else 1024
    return min(stored, choose_tile_size(n_out, np.float32, expansion=4))


def _misaligned(data: xr.DataArray, tile: int) -> bool:
    """Whether some dask block along y/x does not start on a multiple of ``tile``."""
    for chunks in data.chunks[-2:]:
        if len(chunks) > 1 and (np.cumsum(chunks)[:-1] % tile).any():
            return True
    return False


def stored_spec(path: str | os.PathLike) -> FeatureSpec | None:
    """The spec saved in a feature store (complete or ``.partial``), or None."""
    import zarr

    try:
        attrs = zarr.open_array(store=str(path), path="data", mode="r").attrs
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None
    text = attrs.get(SPEC_ATTR)
    return FeatureSpec.from_dict(json.loads(text)) if text else None
