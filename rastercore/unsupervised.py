"""Clustering and dimension reduction without labels, out of core.

:func:`fit_unsupervised` fits a clusterer (k-means) or a projection (PCA) on
the features of a stack, either on an exact uniform random sample of its
valid pixels (default: a pure function of the seed, whatever the tiling) or
by streaming every valid pixel, tile by tile, through ``partial_fit``
(``MiniBatchKMeans``, ``IncrementalPCA``).  The fitted model is an ordinary
scikit-learn estimator; saved with :func:`rastercore.models.save_model` and
the feature spec, it is applied tile by tile like any trained model:
:func:`rastercore.predict.predict` writes a ``cluster`` layer for clusterers
and ``component[i]`` layers for projections.

Pixels whose features are not all finite (nodata in the window) are neither
used for fitting nor labelled (NaN in the mosaic).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore._deprecated import renamed, renamed_keywords
from rastercore.errors import SamplingError
from rastercore.features import FeatureSpec
from rastercore.progress import ProgressMode
from rastercore.sampling import TRAIN, PixelPlan, SpatialSplit, fit_streaming, plan_pixels, select_pixels
from rastercore.store import DEFAULT_CODEC, check_output

__all__ = ["UNSUPERVISED_METHODS", "DEFAULT_SPEC", "build_unsupervised", "fit_unsupervised", "map_unsupervised",
           "save_unsupervised", "unsupervised_metadata"]

UNSUPERVISED_METHODS = {
    "kmeans": "k-means clusters: KMeans on a sample, MiniBatchKMeans when streaming every pixel",
    "pca": "principal components: PCA on a sample, IncrementalPCA when streaming every pixel",
}

DEFAULT_SPEC = [{"name": "window", "r": 0}]
"""Without a spec, the bands' own values are the features."""

_MIN_BATCH = 1024  # rows per partial_fit call at least (tiles with few valid pixels are pooled)
_DEFAULT_SIZE = 8  # clusters or components when not given


def build_unsupervised(method: str, n_components: int | None = None, *, n_clusters: int | None = None,
                       stream: bool = False, seed: int = 0):
    """A new estimator for one of :data:`UNSUPERVISED_METHODS`.

    Parameters
    ----------
    method : {"kmeans", "pca"}
    n_components : int, default 8
        Components (PCA).  For k-means, the old name of ``n_clusters``
        (deprecated; it still works for one release).
    n_clusters : int, default 8
        Clusters (k-means).
    stream : bool, default False
        The variant with ``partial_fit`` (``MiniBatchKMeans``, ``IncrementalPCA``).
    seed : int, default 0
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.decomposition import PCA, IncrementalPCA

    if method not in UNSUPERVISED_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: "
                         + "; ".join(f"{k} ({v})" for k, v in UNSUPERVISED_METHODS.items()))
    name, size = _size(method, n_clusters, n_components)
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name} must be a positive integer, not {size!r}")
    if method == "kmeans":
        if stream:
            return MiniBatchKMeans(n_clusters=size, random_state=seed, n_init=3, batch_size=4096)
        return KMeans(n_clusters=size, random_state=seed, n_init="auto")
    return IncrementalPCA(n_components=size) if stream else PCA(size, random_state=seed)


def _size(method: str, n_clusters: int | None, n_components: int | None) -> tuple[str, int]:
    """The keyword that sizes ``method`` and its value: ``n_clusters`` for k-means, ``n_components`` for PCA."""
    if method == "pca":
        if n_clusters is not None:
            raise ValueError("n_clusters is for k-means; give PCA n_components")
        return "n_components", _DEFAULT_SIZE if n_components is None else n_components
    if n_components is not None:
        if n_clusters is not None:
            raise TypeError("give k-means n_clusters only; n_components is its old name")
        renamed("n_components", "n_clusters", "k-means")
        n_clusters = n_components
    return "n_clusters", _DEFAULT_SIZE if n_clusters is None else n_clusters


@renamed_keywords({"sample_size": "n"})
def fit_unsupervised(
    stack: xr.DataArray,
    spec=None,
    method="kmeans",
    *,
    n_clusters: int | None = None,
    n_components: int | None = None,
    n: int = 100_000,
    stream: bool = False,
    epochs: int = 1,
    seed: int = 0,
    progress: ProgressMode = "auto",
):
    """Fit a clusterer or projection on the features of ``stack``, out of core.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` stack, e.g. from :func:`rastercore.open_stack`.
    spec : FeatureSpec, list of dict or dict, optional
        Features to fit on; default :data:`DEFAULT_SPEC` (the band values).
    method : {"kmeans", "pca"} or estimator
        A name of :data:`UNSUPERVISED_METHODS`, or an unfitted estimator
        (with ``fit``, or ``partial_fit`` when streaming), e.g.
        ``sklearn.mixture.GaussianMixture(4)``.
    n_clusters : int, default 8
        Clusters (``"kmeans"``).
    n_components : int, default 8
        Components (``"pca"``); for k-means, the old name of ``n_clusters``
        (deprecated; it still works for one release).
    n : int, default 100000
        Pixels to fit on: an exact uniform random sample of the valid pixels
        (all of them if there are fewer).  Ignored when streaming.  The old
        name ``sample_size`` still works for one release.
    stream : bool, default False
        Fit ``partial_fit`` on every valid pixel instead, tile by tile
        (tiles in a seeded random order, rows shuffled within a tile).
    epochs : int, default 1
        Passes over the pixels when streaming.
    seed : int, default 0
        Fixes the sample, the tile order and the estimator's randomness.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting (streaming: one unit per tile per epoch).

    Returns
    -------
    estimator
        Fitted, with ``n_pixels_seen_`` (pixels it was fitted on) set.

    Raises
    ------
    SamplingError
        Fewer valid pixels than clusters or components.
    """
    spec = FeatureSpec.coerce(DEFAULT_SPEC if spec is None else spec)
    estimator = method
    if isinstance(method, str):
        estimator = build_unsupervised(method, n_components, n_clusters=n_clusters, stream=stream, seed=seed)
    if stream and not hasattr(estimator, "partial_fit"):
        raise TypeError(f"{type(estimator).__name__} has no partial_fit, so it cannot stream every pixel; "
                        "fit it on a sample (stream=False)")
    plan = _plan(stack, spec, seed)
    available = int(plan.counts.sum())
    needed = _min_rows(estimator)
    if available < needed:
        raise SamplingError(f"the stack has {available} pixels with valid inputs; {type(estimator).__name__} "
                            f"needs at least {needed}. Check the nodata value, or ask for fewer clusters or components.")
    if stream:
        seen = fit_streaming(estimator, plan, epochs=epochs, seed=seed, labelled=False,
                             batch_rows=max(needed, _MIN_BATCH), min_rows=needed, progress=progress)
    else:
        X = _sample(plan, min(n, available))
        if len(X) < needed:
            raise SamplingError(f"only {len(X)} sampled pixels have finite features (nodata within the feature "
                                f"window); {type(estimator).__name__} needs at least {needed}.")
        estimator.fit(X)
        seen = len(X)
    estimator.n_pixels_seen_ = seen
    return estimator


def unsupervised_metadata(stack: xr.DataArray, spec, estimator, *, method: str, stream: bool, seed: int) -> dict:
    """What :func:`rastercore.models.save_model` keeps with an unsupervised model (for ``predict``)."""
    from rastercore.grid import grid_of
    from rastercore.stack import band_names

    spec = FeatureSpec.coerce(DEFAULT_SPEC if spec is None else spec)
    grid = grid_of(stack)
    return {
        "feature_spec": spec.to_dict(),
        "bands": spec.input_bands(band_names(stack)),
        "feature_names": spec.feature_names(band_names(stack)),
        "unsupervised": {"method": method, "estimator": type(estimator).__name__, "stream": stream,
                         "pixels": int(estimator.n_pixels_seen_), "seed": seed},
        "training": {"crs": grid.crs.to_wkt() if grid.crs else None, "transform": list(grid.transform)[:6],
                     "shape": [grid.height, grid.width], "seed": seed},
    }


def _plan(stack: xr.DataArray, spec: FeatureSpec, seed: int) -> PixelPlan:
    """The pixel plan with one stratum: every pixel whose inputs are valid, all in training."""
    first = stack.isel(band=0, drop=True)
    everywhere = xr.zeros_like(first, dtype=np.float32)
    return plan_pixels(stack, everywhere, spec, split=SpatialSplit(validation_fraction=0.0, gap=0), seed=seed)


def _sample(plan: PixelPlan, n: int) -> np.ndarray:
    """Features of the ``n`` valid pixels with the smallest random keys (rows in scene order)."""
    quotas = np.zeros_like(plan.counts)
    quotas[0, 0] = n
    try:
        return select_pixels(plan, quotas)["X"]
    except SamplingError:  # fewer pixels with finite features than asked: take them all
        return plan.candidates(plan.cutoff_all(TRAIN))["X"]


def _min_rows(estimator) -> int:
    """Rows the estimator needs in its first fit (clusters or components)."""
    for name in ("n_clusters", "n_components"):
        value = getattr(estimator, name, None)
        if isinstance(value, (int, np.integer)):
            return int(value)
    return 1


def save_unsupervised(estimator, path: str | os.PathLike, stack: xr.DataArray, spec=None, *, method: str,
                      stream: bool, seed: int, overwrite: bool = False) -> Path:
    """Save a fitted unsupervised model with its feature spec and grid (see :func:`unsupervised_metadata`)."""
    from rastercore.models import save_model

    meta = unsupervised_metadata(stack, spec, estimator, method=method, stream=stream, seed=seed)
    return save_model(estimator, path, metadata=meta, overwrite=overwrite)


@renamed_keywords({"sample_size": "n"})
def map_unsupervised(
    stack: xr.DataArray,
    path: str | os.PathLike,
    spec=None,
    method: str = "kmeans",
    *,
    n_clusters: int | None = None,
    n_components: int | None = None,
    n: int = 100_000,
    stream: bool = False,
    epochs: int = 1,
    seed: int = 0,
    model_path: str | os.PathLike | None = None,
    cog: str | os.PathLike | None = None,
    overwrite: bool = False,
    codec: str = DEFAULT_CODEC,
    progress: ProgressMode = "auto",
):
    """Fit (:func:`fit_unsupervised`) and write the map of every pixel: ``cluster`` or ``component[i]`` layers.

    What ``rastercore cluster`` / ``reduce`` and the pipeline's ``cluster`` /
    ``reduce`` steps run.  ``n_clusters``, ``n_components``, ``n``,
    ``stream``, ``epochs`` and ``seed`` are those of :func:`fit_unsupervised`
    (``sample_size``, the old name of ``n``, still works for one release).
    ``model_path`` also saves the fitted model with
    its spec (for ``rastercore predict`` on other stacks); ``cog`` also
    writes a Cloud-Optimized GeoTIFF (a cluster map as uint8).  Every output
    is checked before any work: an existing one needs ``overwrite``.

    Returns
    -------
    (xarray.DataArray, estimator)
        The mosaic (opened lazily from ``path``) and the fitted model.
    """
    from rastercore.predict import predict

    check_output(path, model_path, cog, overwrite=overwrite)
    spec = DEFAULT_SPEC if spec is None else spec
    fitted = fit_unsupervised(stack, spec, method, n_clusters=n_clusters, n_components=n_components, n=n,
                              stream=stream, epochs=epochs, seed=seed, progress=progress)
    if model_path is not None:
        save_unsupervised(fitted, model_path, stack, spec, method=str(method), stream=stream, seed=seed,
                          overwrite=overwrite)
    mosaic = predict(fitted, stack, path, spec=spec, cog=cog, overwrite=overwrite, codec=codec, progress=progress)
    return mosaic, fitted
