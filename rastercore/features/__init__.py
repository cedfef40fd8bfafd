"""Per-pixel features of a raster stack, computed tile by tile.

Build a spec, then call :func:`compute_features`::

    from rastercore.features import compute_features
    feats = compute_features(stack, [
        {"name": "gaussian", "sigma": 2, "bands": ["HH"]},
        {"name": "ratio", "a": "HH", "b": "HV"},
    ])

The result is a lazy float32 ``(feature, y, x)`` DataArray whose
``feature`` coordinate holds names such as ``gaussian(sigma=2)[HH]``;
:func:`load_features` computes it into one NumPy array.
:func:`write_features` stores it tile by tile (atomic, resumable) with the
spec in the store's attributes.

Normalisation
    ``FeatureSpec(features, normalize="zscore").fit_normalizer(stack)``
    (or ``spec.fit_normalizer(stack, "zca")``) computes global band
    statistics out of core and keeps them in the spec; both
    :func:`compute_features` and :func:`features_for_block` then normalise
    the bands from them before every feature, and ``spec.to_dict()``
    carries them (JSON) to prediction.

Behaviour
---------
Scene edges
    Handled like scipy.ndimage's default ``mode='reflect'`` (the edge pixel
    is repeated: ``d c b a | a b c d``).  The ``multiscale_basic`` preset
    instead reproduces scikit-image exactly (Gaussian ``'nearest'``, Sobel
    ``'reflect'``, ``numpy.gradient`` one-sided differences).
Tiles
    Each tile is extended by ``spec.halo`` pixels from its neighbours by the
    tile engine (:func:`rastercore.engine.map_tiles`), so tile-by-tile
    results equal whole-image results for any chunking.
NaN (nodata)
    ``attrs["_FillValue"]`` and +/-inf are turned into NaN first.  An output
    pixel is NaN when the window of any filter that produced it touches a
    NaN -- what scipy.ndimage's linear filters do.  ``box_min``
    and ``box_max`` follow the same rule (scipy's would not).  Band
    arithmetic and ``cv`` give NaN where the denominator is 0.
"""

from __future__ import annotations

from ._registry import REGISTRY, REQUIRED
from .._memory import release_buffers
from ._spec import Feature, FeatureSpec, files_relative_to
from ._store import SPEC_ATTR, stored_spec, write_features
from ._tiling import FeatureTile, compute_features, features_for_block, load_features

__all__ = [
    "Feature",
    "FeatureSpec",
    "FeatureTile",
    "SPEC_ATTR",
    "available_features",
    "compute_features",
    "features_for_block",
    "load_features",
    "release_buffers",
    "stored_spec",
    "write_features",
]


def available_features() -> dict[str, dict]:
    """Feature names with their parameters and a one-line description.

    Returns
    -------
    dict
        ``{name: {"doc": str, "params": {param: default or "required"},
        "per_band": bool}}``.
    """
    out = {}
    for name in sorted(REGISTRY):
        kind = REGISTRY[name]
        params = {p.name: ("required" if p.default is REQUIRED else p.default) for p in kind.params}
        out[name] = {"doc": kind.doc, "params": params, "per_band": kind.per_band}
    return out
