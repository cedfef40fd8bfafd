"""Write a feature store: :func:`compute_features` through the tiled writer.

A feature store is an ordinary rastercore store whose ``data`` array has
dims ``(feature, y, x)`` (float32, a ``feature`` coordinate of names, the
stack's y/x/spatial_ref), written by :func:`rastercore.store.write_tiles`
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

from .._memory import release_buffers
from ..checks import check_tile_size
from ..errors import FeatureSpecError
from ..progress import ProgressMode
from ..scheduler import choose_tile_size
from ..stack import band_names
from ..store import CACHE, DEFAULT_CODEC, check_output, open_stack, partial_path, store_reader, write_tiles
from ._spec import FeatureSpec
from ._tiling import compute_features

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
        As in :func:`rastercore.store.write_tiles`.  On resume, fitted
        statistics are read back from the interrupted store.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the stored tiles (:data:`rastercore.store.CODECS`).

    Returns
    -------
    xarray.DataArray
        The feature store, opened lazily (:func:`rastercore.open_stack`).
    """
    path = Path(path)
    tile_size = check_tile_size(tile_size)
    check_output(path, overwrite=overwrite)
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
    tile = tile_size or _default_tile(stack, n_out)
    feats = compute_features(stack, spec, tile_size=tile)
    feats.attrs[SPEC_ATTR] = json.dumps(spec.to_dict())
    try:
        write_tiles(feats, path, tile_chunks=(tile, tile), overwrite=overwrite, resume=resume,
                    progress=progress, stage="features", codec=codec)
    finally:
        release_buffers()
        reader = store_reader(stack)
        if reader is not None:  # its decompressed chunks are of no use once the store is written
            CACHE.drop(reader.key[:1])
    return open_stack(path)


def _default_tile(stack: xr.DataArray, n_out: int) -> int:
    """The stack's tile side, or less if ``n_out`` float32 features per pixel need it."""
    stored = int(stack.chunks[-1][0]) if stack.chunks else 1024
    return min(stored, choose_tile_size(n_out, np.float32, expansion=4))


def stored_spec(path: str | os.PathLike) -> FeatureSpec | None:
    """The spec saved in a feature store (complete or ``.partial``), or None."""
    import zarr

    try:
        attrs = zarr.open_array(store=str(path), path="data", mode="r").attrs
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None
    text = attrs.get(SPEC_ATTR)
    return FeatureSpec.from_dict(json.loads(text)) if text else None
