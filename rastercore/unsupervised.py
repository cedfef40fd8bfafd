"""Clustering and dimension reduction without labels, out of core.

:func:`fit_unsupervised` fits a clusterer (k-means) or a projection (PCA,
RBF kernel PCA) on the features of a stack, either on an exact uniform
random sample of its valid pixels (default: a pure function of the seed,
whatever the tiling) or by streaming every valid pixel, tile by tile,
through ``partial_fit`` (``MiniBatchKMeans``, ``IncrementalPCA``).  The
fitted model is an ordinary scikit-learn estimator; saved with
:func:`rastercore.models.save_model` and the feature spec, it is applied
tile by tile like any trained model: :func:`rastercore.predict.predict`
writes a ``cluster`` layer for clusterers and ``component[i]`` layers for
projections (kernel PCA through its compiled kernel,
:class:`rastercore.models.FastKernelPCA`).

Features are standardised inside the fitted model (``standardize=True``,
the default): each named method is a ``Pipeline([StandardScaler(),
<method>])``, the scaler fitted on the same sample (when streaming, on a
sample of ``n`` pixels drawn first), so mapping applies the same scaling.
k-means distances and principal components depend on the units of each
feature; unscaled, the feature with the largest numbers (a raw band next to
an index in [-1, 1], a GLCM contrast) decides alone, silently.  The price:
a feature that carries little but noise (the local standard deviation of
log intensities is mostly speckle) weighs as much as the others once
scaled; leave such features out of the spec, or pass ``standardize=False``
for the raw features.  An estimator passed in instead of a name is fitted
as it is.

Without a feature spec the features are :data:`DEFAULT_SPEC`: each band
smoothed by Gaussians at two scales.  Raw SAR intensities are speckle (one
pixel's standard deviation equals its mean), so clustering them gives a
speckle map.

t-SNE and UMAP are views of a sample, not maps of every pixel: see
:func:`rastercore.views.embedding_view` (``rastercore view``).

Pixels whose features are not all finite (nodata in the window) are neither
used for fitting nor labelled (NaN in the mosaic).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore._deprecated import renamed, renamed_keywords
from rastercore.errors import ParameterError, SamplingError
from rastercore.features import FeatureSpec
from rastercore.progress import ProgressMode
from rastercore.sampling import TRAIN, PixelPlan, SpatialSplit, fit_streaming, plan_pixels, select_pixels
from rastercore.store import DEFAULT_CODEC, check_output

__all__ = ["UNSUPERVISED_METHODS", "PROJECTION_METHODS", "VIEW_METHODS", "DEFAULT_SPEC", "DEFAULT_N",
           "KPCA_DEFAULT_N", "KPCA_MAX_N", "build_unsupervised", "check_method", "check_sample_size", "default_n",
           "fit_unsupervised", "final_estimator", "map_unsupervised", "sample_pixels", "save_unsupervised",
           "unsupervised_metadata"]

UNSUPERVISED_METHODS = {
    "kmeans": "k-means clusters: KMeans on a sample, MiniBatchKMeans when streaming every pixel",
    "pca": "principal components: PCA on a sample, IncrementalPCA when streaming every pixel",
    "kpca": "kernel principal components (RBF KernelPCA) on a sample of at most 20 000 pixels",
}

PROJECTION_METHODS = ("pca", "kpca")
"""The methods of ``rastercore reduce`` (and a pipeline's reduce step)."""

VIEW_METHODS = {
    "tsne": "t-SNE (openTSNE)",
    "umap": "UMAP (umap-learn)",
}
"""Embeddings of a sample drawn as views (:func:`rastercore.views.embedding_view`), not maps of every pixel."""

DEFAULT_SPEC = [{"name": "gaussian", "sigma": 1.0}, {"name": "gaussian", "sigma": 3.0}]
"""Without a spec: every band smoothed by Gaussians of sigma 1 and 3 pixels (halo 12 pixels).

Smoothing averages the speckle of SAR intensities (and the noise of any
band) away while keeping region boundaries within a few pixels; two
scales let a cluster use both.  Standardisation follows inside the model.
"""

DEFAULT_N = 100_000
"""Pixels fitted on by default (k-means, PCA)."""
KPCA_DEFAULT_N = 5_000
"""Pixels kernel PCA fits on by default: a 5 000 x 5 000 kernel matrix (200 MB)."""
KPCA_MAX_N = 20_000
"""Most pixels kernel PCA fits on: its n x n kernel matrix of 20 000 rows is 3.2 GB."""

_MIN_BATCH = 1024  # rows per partial_fit call at least (tiles with few valid pixels are pooled)
_DEFAULT_SIZE = 8  # clusters or components when not given
_DENSE_EIGEN_MAX = 10  # kernel PCA components below which ARPACK beats a randomized eigensolver


def check_method(method: str, choices=tuple(UNSUPERVISED_METHODS)) -> str:
    """``method`` if it is one of ``choices`` (names of :data:`UNSUPERVISED_METHODS`); else one :class:`ParameterError`.

    t-SNE and UMAP (:data:`VIEW_METHODS`) are refused with a pointer to the
    view: they embed a sample, they do not map every pixel.  k-means, where
    only projections are asked for (``choices`` :data:`PROJECTION_METHODS`),
    points at ``rastercore cluster``.
    """
    if method in VIEW_METHODS:
        name = VIEW_METHODS[method].split(" (")[0]
        raise ParameterError(f"{name} is a view of a sample, not a map of every pixel: it places only the pixels "
                             f"it was fitted on. Draw it with `rastercore view STACK --method {method} -o view.png` "
                             f"(rastercore.views.embedding_view).")
    if method == "kmeans" and method not in choices:
        raise ParameterError("k-means gives clusters, not components: run `rastercore cluster` (a cluster step); "
                             f"the method of a projection is one of {', '.join(choices)}.")
    if method not in choices:
        raise ParameterError(f"unknown method {method!r}; choose one of: "
                             + "; ".join(f"{k} ({UNSUPERVISED_METHODS[k]})" for k in choices)
                             + f"; or for a view of a sample, {' or '.join(VIEW_METHODS)} (`rastercore view`).")
    return method


def build_unsupervised(method: str, n_components: int | None = None, *, n_clusters: int | None = None,
                       stream: bool = False, seed: int = 0, gamma: float | None = None, standardize: bool = True):
    """A new, unfitted model for one of :data:`UNSUPERVISED_METHODS`, standardising its features.

    Parameters
    ----------
    method : {"kmeans", "pca", "kpca"}
    n_components : int, default 8
        Components (PCA, kernel PCA).  For k-means, the old name of
        ``n_clusters`` (deprecated; it still works for one release).
    n_clusters : int, default 8
        Clusters (k-means).
    stream : bool, default False
        The variant with ``partial_fit`` (``MiniBatchKMeans``, ``IncrementalPCA``);
        kernel PCA has none.
    seed : int, default 0
    gamma : float, optional
        Kernel PCA's RBF ``exp(-gamma |a - b|²)`` on the standardised
        features; default ``1 / n_features`` (scikit-learn's), so that the
        mean squared distance between two pixels, ``2 n_features``, gives a
        kernel of ``exp(-2)``.
    standardize : bool, default True
        Standardise the features first (a ``StandardScaler`` in the model).

    Returns
    -------
    sklearn.pipeline.Pipeline or estimator
        ``Pipeline([("standardize", StandardScaler()), (method, estimator)])``;
        the bare estimator with ``standardize=False``.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.decomposition import PCA, IncrementalPCA, KernelPCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    check_method(method)
    name, size = _size(method, n_clusters, n_components)
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ParameterError(f"{name} must be a positive integer, not {size!r}")
    _check_kernel_options(method, stream, gamma)
    if method == "kmeans":
        estimator = (MiniBatchKMeans(n_clusters=size, random_state=seed, n_init=3, batch_size=4096) if stream
                     else KMeans(n_clusters=size, random_state=seed, n_init="auto"))
    elif method == "kpca":
        solver = "auto" if size < _DENSE_EIGEN_MAX else "randomized"
        estimator = KernelPCA(size, kernel="rbf", gamma=gamma, eigen_solver=solver, random_state=seed)
    else:
        estimator = IncrementalPCA(n_components=size) if stream else PCA(size, random_state=seed)
    return Pipeline([("standardize", StandardScaler()), (method, estimator)]) if standardize else estimator


def _check_kernel_options(method: str, stream: bool, gamma) -> None:
    if gamma is not None and method != "kpca":
        raise ParameterError(f"gamma (--gamma) is the RBF kernel's width, for kernel PCA (kpca), not {method}.")
    if gamma is not None and not (isinstance(gamma, (int, float, np.number)) and np.isfinite(gamma) and gamma > 0):
        raise ParameterError(f"gamma (--gamma) must be a positive number, not {gamma!r}.")
    if method == "kpca" and stream:
        raise ParameterError("kernel PCA fits on a sample (at most 20000 pixels): it cannot stream every pixel; "
                             "leave out stream (--stream).")


def _size(method: str, n_clusters: int | None, n_components: int | None) -> tuple[str, int]:
    """The keyword that sizes ``method`` and its value: ``n_clusters`` for k-means, ``n_components`` otherwise."""
    if method != "kmeans":
        if n_clusters is not None:
            raise ParameterError(f"n_clusters is for k-means; give {method.upper()} n_components")
        return "n_components", _DEFAULT_SIZE if n_components is None else n_components
    if n_components is not None:
        if n_clusters is not None:
            raise TypeError("give k-means n_clusters only; n_components is its old name")
        renamed("n_components", "n_clusters", "k-means")
        n_clusters = n_components
    return "n_clusters", _DEFAULT_SIZE if n_clusters is None else n_clusters


def final_estimator(model):
    """The last step of a ``Pipeline`` (the clusterer or projection), else ``model`` itself."""
    from sklearn.pipeline import Pipeline

    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def check_sample_size(method, n: int | None) -> None:
    """Refuse a kernel PCA sample above :data:`KPCA_MAX_N` pixels: its kernel matrix is n x n doubles.

    ``method`` is a method name or an estimator; ``n`` None is the default
    (always accepted).
    """
    from sklearn.decomposition import KernelPCA

    kernel_pca = method == "kpca" if isinstance(method, str) else isinstance(final_estimator(method), KernelPCA)
    if kernel_pca and n is not None and n > KPCA_MAX_N:
        gigabytes = n * n * 8 / 1e9
        raise ParameterError(f"kernel PCA keeps an n x n kernel matrix in memory ({gigabytes:.0f} GB for n = {n}); "
                             f"fit it on at most {KPCA_MAX_N} pixels: lower n (-n/--sample), e.g. "
                             f"{KPCA_DEFAULT_N}, the default.")


def _check_maps(estimator) -> None:
    """Refuse, before fitting, an estimator that cannot map new pixels (t-SNE has neither predict nor transform)."""
    if not (hasattr(estimator, "predict") or hasattr(estimator, "transform")):
        raise ParameterError(f"{type(estimator).__name__} has neither predict nor transform, so it cannot map "
                             "pixels it was not fitted on; t-SNE is a view of a sample: draw it with "
                             "`rastercore view STACK --method tsne` (rastercore.views.embedding_view).")


def default_n(estimator) -> int:
    """Pixels to fit ``estimator`` on when not given: :data:`KPCA_DEFAULT_N` for kernel PCA, else :data:`DEFAULT_N`."""
    from sklearn.decomposition import KernelPCA

    return KPCA_DEFAULT_N if isinstance(final_estimator(estimator), KernelPCA) else DEFAULT_N


@renamed_keywords({"sample_size": "n"})
def fit_unsupervised(
    stack: xr.DataArray,
    spec=None,
    method="kmeans",
    *,
    n_clusters: int | None = None,
    n_components: int | None = None,
    n: int | None = None,
    stream: bool = False,
    epochs: int = 1,
    seed: int = 0,
    gamma: float | None = None,
    standardize: bool = True,
    progress: ProgressMode = "auto",
):
    """Fit a clusterer or projection on the features of ``stack``, out of core.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` stack, e.g. from :func:`rastercore.open_stack`.
    spec : FeatureSpec, list of dict or dict, optional
        Features to fit on; default :data:`DEFAULT_SPEC` (each band smoothed
        at two scales).
    method : {"kmeans", "pca", "kpca"} or estimator
        A name of :data:`UNSUPERVISED_METHODS` (fitted as a standardising
        pipeline, :func:`build_unsupervised`), or an unfitted estimator
        (with ``fit``, or ``partial_fit`` when streaming), e.g.
        ``sklearn.mixture.GaussianMixture(4)``, fitted as it is.  ``"tsne"``
        and ``"umap"`` are refused: they are views
        (:func:`rastercore.views.embedding_view`).
    n_clusters : int, default 8
        Clusters (``"kmeans"``).
    n_components : int, default 8
        Components (``"pca"``, ``"kpca"``); for k-means, the old name of
        ``n_clusters`` (deprecated; it still works for one release).
    n : int, optional
        Pixels to fit on: an exact uniform random sample of the valid pixels
        (all of them if there are fewer).  Default :data:`DEFAULT_N`
        (100 000), for kernel PCA :data:`KPCA_DEFAULT_N` (5 000); kernel PCA
        takes at most :data:`KPCA_MAX_N` (20 000).  When streaming, the
        pixels the standardisation is fitted on.  The old name
        ``sample_size`` still works for one release.
    stream : bool, default False
        Fit ``partial_fit`` on every valid pixel instead, tile by tile
        (tiles in a seeded random order, rows shuffled within a tile).
    epochs : int, default 1
        Passes over the pixels when streaming.
    seed : int, default 0
        Fixes the sample, the tile order and the estimator's randomness.
    gamma : float, optional
        Kernel PCA's RBF width (see :func:`build_unsupervised`); default
        ``1 / n_features`` on the standardised features.
    standardize : bool, default True
        Standardise the features inside the model (a named ``method`` only).
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
    ParameterError
        A view method (t-SNE, UMAP); kernel PCA with ``n`` above
        :data:`KPCA_MAX_N` or streamed.
    """
    spec = FeatureSpec.coerce(DEFAULT_SPEC if spec is None else spec)
    estimator = method
    if isinstance(method, str):
        estimator = build_unsupervised(method, n_components, n_clusters=n_clusters, stream=stream, seed=seed,
                                       gamma=gamma, standardize=standardize)
    n = default_n(estimator) if n is None else n
    check_sample_size(estimator, n)
    if stream and not hasattr(final_estimator(estimator), "partial_fit"):
        raise TypeError(f"{type(final_estimator(estimator)).__name__} has no partial_fit, so it cannot stream every "
                        "pixel; fit it on a sample (stream=False)")
    plan = _plan(stack, spec, seed)
    available = int(plan.counts.sum())
    needed = _min_rows(estimator)
    if available < needed:
        raise SamplingError(f"the stack has {available} pixels with valid inputs; {_name(estimator)} needs at "
                            f"least {needed}. Check the nodata value, or ask for fewer clusters or components.")
    if stream:
        seen = _fit_streamed(estimator, plan, n=min(n, available), epochs=epochs, seed=seed, needed=needed,
                             progress=progress)
    else:
        X = _sample(plan, min(n, available))["X"]
        if len(X) < needed:
            raise SamplingError(f"only {len(X)} sampled pixels have finite features (nodata within the feature "
                                f"window); {_name(estimator)} needs at least {needed}.")
        estimator.fit(_precision_for(estimator, X))
        seen = len(X)
    estimator.n_pixels_seen_ = seen
    return estimator


def _fit_streamed(estimator, plan: PixelPlan, *, n: int, epochs: int, seed: int, needed: int,
                  progress: ProgressMode) -> int:
    """Stream every pixel through the last step; a pipeline's first steps are fitted on a sample of ``n`` first."""
    from sklearn.pipeline import Pipeline

    target = estimator
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        estimator[:-1].fit(_sample(plan, n)["X"])
        target = _ThroughFittedSteps(estimator)
    return fit_streaming(target, plan, epochs=epochs, seed=seed, labelled=False,
                         batch_rows=max(needed, _MIN_BATCH), min_rows=needed, progress=progress)


class _ThroughFittedSteps:
    """``partial_fit`` of a pipeline's last step on rows passed through its (fitted) first steps."""

    def __init__(self, pipeline):
        self.head, self.last = pipeline[:-1], pipeline.steps[-1][1]

    def partial_fit(self, X):
        self.last.partial_fit(self.head.transform(X))
        return self


def _precision_for(estimator, X: np.ndarray) -> np.ndarray:
    """Kernel PCA is fitted in double precision (its eigenvectors); other estimators keep float32 rows."""
    from sklearn.decomposition import KernelPCA

    return X.astype(np.float64) if isinstance(final_estimator(estimator), KernelPCA) else X


def _name(estimator) -> str:
    return type(final_estimator(estimator)).__name__


def sample_pixels(stack: xr.DataArray, spec=None, *, n: int = DEFAULT_N, seed: int = 0) -> dict:
    """Features and positions of an exact uniform random sample of the valid pixels of ``stack``.

    The sample :func:`fit_unsupervised` fits on: the ``n`` valid pixels with
    the smallest seeded random keys (all of them if there are fewer), the
    same for any tiling.

    Parameters
    ----------
    stack : xarray.DataArray
    spec : FeatureSpec, list of dict or dict, optional
        Default :data:`DEFAULT_SPEC`.
    n : int, default 100000
    seed : int, default 0

    Returns
    -------
    dict
        ``X`` ``(rows, n_features)`` float32, ``row`` and ``col`` (pixel
        positions), in scene order.
    """
    spec = FeatureSpec.coerce(DEFAULT_SPEC if spec is None else spec)
    plan = _plan(stack, spec, seed)
    rows = _sample(plan, min(n, int(plan.counts.sum())))
    return {k: rows[k] for k in ("X", "row", "col")}


def unsupervised_metadata(stack: xr.DataArray, spec, estimator, *, method: str, stream: bool, seed: int) -> dict:
    """What :func:`rastercore.models.save_model` keeps with an unsupervised model (for ``predict``)."""
    from rastercore.grid import grid_of
    from rastercore.stack import band_names

    spec = FeatureSpec.coerce(DEFAULT_SPEC if spec is None else spec)
    grid = grid_of(stack)
    final = final_estimator(estimator)
    record = {"method": method, "estimator": type(final).__name__, "stream": stream,
              "pixels": int(estimator.n_pixels_seen_), "seed": seed, "standardized": final is not estimator}
    if hasattr(final, "gamma_"):
        record["gamma"] = float(final.gamma_)
    return {
        "feature_spec": spec.to_dict(),
        "bands": spec.input_bands(band_names(stack)),
        "feature_names": spec.feature_names(band_names(stack)),
        "unsupervised": record,
        "training": {"crs": grid.crs.to_wkt() if grid.crs else None, "transform": list(grid.transform)[:6],
                     "shape": [grid.height, grid.width], "seed": seed},
    }


def _plan(stack: xr.DataArray, spec: FeatureSpec, seed: int) -> PixelPlan:
    """The pixel plan with one stratum: every pixel whose inputs are valid, all in training."""
    first = stack.isel(band=0, drop=True)
    everywhere = xr.zeros_like(first, dtype=np.float32)
    return plan_pixels(stack, everywhere, spec, split=SpatialSplit(validation_fraction=0.0, gap=0), seed=seed)


def _sample(plan: PixelPlan, n: int) -> dict:
    """Rows (``X``, ``row``, ``col``, ...) of the ``n`` valid pixels with the smallest random keys, in scene order."""
    quotas = np.zeros_like(plan.counts)
    quotas[0, 0] = n
    try:
        return select_pixels(plan, quotas)
    except SamplingError:  # fewer pixels with finite features than asked: take them all
        return plan.candidates(plan.cutoff_all(TRAIN))


def _min_rows(estimator) -> int:
    """Rows the estimator needs in its first fit (clusters or components)."""
    final = final_estimator(estimator)
    for name in ("n_clusters", "n_components"):
        value = getattr(final, name, None)
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
    n: int | None = None,
    stream: bool = False,
    epochs: int = 1,
    seed: int = 0,
    gamma: float | None = None,
    standardize: bool = True,
    model_path: str | os.PathLike | None = None,
    cog: str | os.PathLike | None = None,
    overwrite: bool = False,
    codec: str = DEFAULT_CODEC,
    progress: ProgressMode = "auto",
):
    """Fit (:func:`fit_unsupervised`) and write the map of every pixel: ``cluster`` or ``component[i]`` layers.

    What ``rastercore cluster`` / ``reduce`` and the pipeline's ``cluster`` /
    ``reduce`` steps run.  ``n_clusters``, ``n_components``, ``n``,
    ``stream``, ``epochs``, ``seed``, ``gamma`` and ``standardize`` are those of
    :func:`fit_unsupervised` (``sample_size``, the old name of ``n``, still
    works for one release).  ``model_path`` also saves the fitted model with
    its spec (for ``rastercore predict`` on other stacks); ``cog`` also
    writes a Cloud-Optimized GeoTIFF (a cluster map as uint8).  Every output
    is checked before any work: an existing one needs ``overwrite``.  An
    estimator with neither ``predict`` nor ``transform`` (scikit-learn's
    ``TSNE``) is refused before fitting: it cannot map pixels.

    Returns
    -------
    (xarray.DataArray, estimator)
        The mosaic (opened lazily from ``path``) and the fitted model.
    """
    from rastercore.predict import predict

    if isinstance(method, str):
        check_method(method)
    else:
        _check_maps(method)
    check_output(path, model_path, cog, overwrite=overwrite)
    spec = DEFAULT_SPEC if spec is None else spec
    fitted = fit_unsupervised(stack, spec, method, n_clusters=n_clusters, n_components=n_components, n=n,
                              stream=stream, epochs=epochs, seed=seed, gamma=gamma, standardize=standardize,
                              progress=progress)
    if model_path is not None:
        save_unsupervised(fitted, model_path, stack, spec, method=str(method), stream=stream, seed=seed,
                          overwrite=overwrite)
    mosaic = predict(fitted, stack, path, spec=spec, cog=cog, overwrite=overwrite, codec=codec, progress=progress)
    return mosaic, fitted
